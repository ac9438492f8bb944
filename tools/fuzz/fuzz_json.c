// fuzz_json.c: libFuzzer harness for the JSON parser (ref/json.c) on arbitrary bytes.
// Checks: no crash, leak or UB; a failure has a message naming the byte offset; an accepted
// document's strings are NUL-terminated at their length and its containers are consistent.
#include "fuzz_util.h"
#include "../../ref/json.h"

static void check(const JsonValue *v, int depth) {
    size_t i;
    if (depth > JSON_MAX_DEPTH + 1) abort();
    switch (v->type) {
    case JSON_STRING:
    case JSON_NUMBER:
        if (!v->text || v->text[v->len] != '\0') abort();
        break;
    case JSON_OBJECT:
        for (i = 0; i < v->count; i++) {
            if (!v->keys[i] || json_get(v, v->keys[i]) != &v->items[i]) abort(); // keys are unique
            check(&v->items[i], depth + 1);
        }
        break;
    case JSON_ARRAY:
        for (i = 0; i < v->count; i++) check(&v->items[i], depth + 1);
        break;
    default:
        break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    JsonValue v;
    uint64_t u;
    mv_clear_error();
    if (json_parse(&v, (const char *)data, size) != MV_OK) {
        fuzz_expect_message("json_parse");
        if (!strstr(mv_error(), "invalid JSON at byte") && !strstr(mv_error(), "memory")) abort();
        return 0;
    }
    check(&v, 0);
    (void)json_as_u64(&v, &u);
    if (v.type == JSON_ARRAY || v.type == JSON_OBJECT) {
        size_t i;
        for (i = 0; i < v.count; i++) (void)json_as_u64(&v.items[i], &u);
    }
    json_free(&v);
    return 0;
}
