// json.h: a small, strict JSON parser (RFC 8259) for safetensors headers and config.json.
// Rejects trailing garbage, duplicate keys, invalid escapes, invalid UTF-8, control
// characters in strings, leading zeros, and nesting deeper than JSON_MAX_DEPTH.
#ifndef MAVREF_JSON_H
#define MAVREF_JSON_H

#include "mavref.h"

#define JSON_MAX_DEPTH 64

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonValue {
    JsonType type;
    int boolean;               // JSON_BOOL
    double number;             // JSON_NUMBER, as strtod reads it
    char *text;                // JSON_NUMBER: the literal; JSON_STRING: decoded UTF-8, NUL-terminated
    size_t len;                // bytes in text (a string may contain \u0000)
    size_t count;              // JSON_ARRAY / JSON_OBJECT: number of items
    struct JsonValue *items;   // (count) values
    char **keys;               // (count) keys, JSON_OBJECT only, in file order
} JsonValue;

// Parse text[0..len). On error returns MV_ERR with a message giving the byte offset.
int json_parse(JsonValue *out, const char *text, size_t len);
void json_free(JsonValue *v);
// Member of an object by key, or NULL.
const JsonValue *json_get(const JsonValue *obj, const char *key);
// A non-negative integer literal (no sign, fraction or exponent) that fits in uint64.
int json_as_u64(const JsonValue *v, uint64_t *out);
const char *json_type_name(JsonType t);

#endif
