// json.c: recursive-descent JSON parser. Every error names the byte offset where it is.
#include "json.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *s;
    size_t len, pos;
    int depth;
} Parser;

static int perr(const Parser *p, const char *what) {
    return mv_fail("invalid JSON at byte %lu: %s", (unsigned long)p->pos, what);
}

static void skip_ws(Parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') p->pos++;
        else break;
    }
}

static int parse_value(Parser *p, JsonValue *v);

// Append a code point as UTF-8.
static size_t put_utf8(char *o, unsigned long cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F)); return 4;
}

static int hex4(Parser *p, unsigned long *out) {
    unsigned long v = 0;
    int i;
    if (p->len - p->pos < 4) return perr(p, "truncated \\u escape");
    for (i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned long)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned long)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned long)(c - 'A' + 10);
        else return perr(p, "bad hex digit in \\u escape");
    }
    *out = v;
    return MV_OK;
}

// Length of a valid UTF-8 sequence starting at s (at most n bytes), or 0 if invalid.
static size_t utf8_valid_len(const unsigned char *s, size_t n) {
    unsigned long cp;
    size_t k, i;
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) { k = 2; cp = s[0] & 0x1F; }
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) { k = 3; cp = s[0] & 0x0F; }
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) { k = 4; cp = s[0] & 0x07; }
    else return 0;
    if (n < k) return 0;
    for (i = 1; i < k; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10FFFF))) return 0;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    return k;
}

static int parse_string(Parser *p, char **out, size_t *outlen) {
    size_t start, cap, n = 0;
    char *buf;
    p->pos++; // opening quote
    start = p->pos;
    // The decoded string is never longer than the raw text.
    cap = 1;
    while (p->pos < p->len && p->s[p->pos] != '"') {
        if (p->s[p->pos] == '\\') p->pos++;
        p->pos++;
    }
    if (p->pos >= p->len) { p->pos = start; return perr(p, "unterminated string"); }
    cap += p->pos - start;
    p->pos = start;
    buf = (char *)mv_malloc(cap, "JSON string");
    if (!buf) return MV_ERR;
    while (p->s[p->pos] != '"') {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) { free(buf); return perr(p, "control character in string"); }
        if (c == '\\') {
            char e;
            p->pos++;
            e = p->s[p->pos++];
            switch (e) {
            case '"': buf[n++] = '"'; break;
            case '\\': buf[n++] = '\\'; break;
            case '/': buf[n++] = '/'; break;
            case 'b': buf[n++] = '\b'; break;
            case 'f': buf[n++] = '\f'; break;
            case 'n': buf[n++] = '\n'; break;
            case 'r': buf[n++] = '\r'; break;
            case 't': buf[n++] = '\t'; break;
            case 'u': {
                unsigned long cp, lo;
                if (hex4(p, &cp)) { free(buf); return MV_ERR; }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p->len - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                        free(buf); return perr(p, "unpaired surrogate in \\u escape");
                    }
                    p->pos += 2;
                    if (hex4(p, &lo)) { free(buf); return MV_ERR; }
                    if (lo < 0xDC00 || lo > 0xDFFF) { free(buf); return perr(p, "bad low surrogate"); }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    free(buf); return perr(p, "unpaired low surrogate");
                }
                // A \u escape never decodes to more bytes than its 6 (or 12) source bytes.
                n += put_utf8(buf + n, cp);
                break;
            }
            default: free(buf); p->pos--; return perr(p, "invalid escape");
            }
        } else {
            size_t k = utf8_valid_len((const unsigned char *)p->s + p->pos, p->len - p->pos);
            if (!k) { free(buf); return perr(p, "invalid UTF-8 in string"); }
            memcpy(buf + n, p->s + p->pos, k);
            n += k;
            p->pos += k;
        }
    }
    p->pos++; // closing quote
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return MV_OK;
}

static int parse_number(Parser *p, JsonValue *v) {
    size_t start = p->pos;
    const char *s = p->s;
    if (p->pos < p->len && s[p->pos] == '-') p->pos++;
    if (p->pos >= p->len) return perr(p, "truncated number");
    if (s[p->pos] == '0') p->pos++;
    else if (s[p->pos] >= '1' && s[p->pos] <= '9')
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    else return perr(p, "bad number");
    if (p->pos < p->len && s[p->pos] == '.') {
        p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return perr(p, "bad fraction");
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    if (p->pos < p->len && (s[p->pos] == 'e' || s[p->pos] == 'E')) {
        p->pos++;
        if (p->pos < p->len && (s[p->pos] == '+' || s[p->pos] == '-')) p->pos++;
        if (p->pos >= p->len || s[p->pos] < '0' || s[p->pos] > '9') return perr(p, "bad exponent");
        while (p->pos < p->len && s[p->pos] >= '0' && s[p->pos] <= '9') p->pos++;
    }
    v->type = JSON_NUMBER;
    v->len = p->pos - start;
    v->text = (char *)mv_malloc(v->len + 1, "JSON number");
    if (!v->text) return MV_ERR;
    memcpy(v->text, s + start, v->len);
    v->text[v->len] = '\0';
    v->number = strtod(v->text, NULL);
    return MV_OK;
}

static int literal(Parser *p, const char *word) {
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return perr(p, "unexpected token");
    p->pos += n;
    return MV_OK;
}

static int grow(JsonValue *v, size_t *cap, int with_keys) {
    size_t ncap = *cap ? *cap * 2 : 4;
    JsonValue *items;
    if (ncap > ((size_t)-1) / sizeof(JsonValue)) return mv_fail("JSON container too large");
    items = (JsonValue *)realloc(v->items, ncap * sizeof(JsonValue));
    if (!items) return mv_fail_oom("out of memory parsing JSON");
    v->items = items;
    if (with_keys) {
        char **keys = (char **)realloc(v->keys, ncap * sizeof(char *));
        if (!keys) return mv_fail_oom("out of memory parsing JSON");
        v->keys = keys;
    }
    *cap = ncap;
    return MV_OK;
}

static int parse_container(Parser *p, JsonValue *v, int is_object) {
    size_t cap = 0;
    char close = is_object ? '}' : ']';
    v->type = is_object ? JSON_OBJECT : JSON_ARRAY;
    if (++p->depth > JSON_MAX_DEPTH) return perr(p, "nesting too deep");
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == close) { p->pos++; p->depth--; return MV_OK; }
    for (;;) {
        char *key = NULL;
        size_t keylen;
        if (v->count == cap && grow(v, &cap, is_object)) return MV_ERR;
        if (is_object) {
            size_t i;
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != '"') return perr(p, "expected a string key");
            if (parse_string(p, &key, &keylen)) return MV_ERR;
            if (strlen(key) != keylen) { free(key); return perr(p, "NUL in object key"); }
            for (i = 0; i < v->count; i++)
                if (strcmp(v->keys[i], key) == 0) { free(key); return perr(p, "duplicate key"); }
            skip_ws(p);
            if (p->pos >= p->len || p->s[p->pos] != ':') { free(key); return perr(p, "expected ':'"); }
            p->pos++;
            v->keys[v->count] = key;
        }
        memset(&v->items[v->count], 0, sizeof(JsonValue));
        v->count++; // counted before parsing so json_free releases a half-built member
        if (parse_value(p, &v->items[v->count - 1])) return MV_ERR;
        skip_ws(p);
        if (p->pos >= p->len) return perr(p, "unterminated container");
        if (p->s[p->pos] == ',') { p->pos++; continue; }
        if (p->s[p->pos] == close) { p->pos++; break; }
        return perr(p, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    p->depth--;
    return MV_OK;
}

static int parse_value(Parser *p, JsonValue *v) {
    char c;
    skip_ws(p);
    if (p->pos >= p->len) return perr(p, "unexpected end of input");
    c = p->s[p->pos];
    if (c == '{') return parse_container(p, v, 1);
    if (c == '[') return parse_container(p, v, 0);
    if (c == '"') { v->type = JSON_STRING; return parse_string(p, &v->text, &v->len); }
    if (c == 't') { v->type = JSON_BOOL; v->boolean = 1; return literal(p, "true"); }
    if (c == 'f') { v->type = JSON_BOOL; v->boolean = 0; return literal(p, "false"); }
    if (c == 'n') { v->type = JSON_NULL; return literal(p, "null"); }
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
    return perr(p, "unexpected character");
}

int json_parse(JsonValue *out, const char *text, size_t len) {
    Parser p;
    p.s = text; p.len = len; p.pos = 0; p.depth = 0;
    memset(out, 0, sizeof *out);
    if (parse_value(&p, out)) { json_free(out); return MV_ERR; }
    skip_ws(&p);
    if (p.pos != len) { json_free(out); return perr(&p, "trailing characters after the value"); }
    return MV_OK;
}

void json_free(JsonValue *v) {
    size_t i;
    if (!v) return;
    for (i = 0; i < v->count; i++) {
        json_free(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->text);
    memset(v, 0, sizeof *v);
}

const JsonValue *json_get(const JsonValue *obj, const char *key) {
    size_t i;
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (i = 0; i < obj->count; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

int json_as_u64(const JsonValue *v, uint64_t *out) {
    uint64_t x = 0;
    size_t i;
    if (!v || v->type != JSON_NUMBER) return mv_fail("expected a number");
    for (i = 0; i < v->len; i++) {
        unsigned d;
        char c = v->text[i];
        if (c < '0' || c > '9') return mv_fail("expected a non-negative integer, got %s", v->text);
        d = (unsigned)(c - '0');
        if (x > (UINT64_MAX - d) / 10) return mv_fail("integer %s is too large", v->text);
        x = x * 10 + d;
    }
    *out = x;
    return MV_OK;
}

const char *json_type_name(JsonType t) {
    switch (t) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "boolean";
    case JSON_NUMBER: return "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "?";
}
