/*
 * json.h: a small strict JSON parser and a JSON string writer, for the headers of the files
 * lunet reads and writes (safetensors today, the model graph's description next).
 *
 * The parser takes RFC 8259 JSON and nothing else: no comments, no trailing commas, no
 * NaN, no leading zeros, no unescaped control characters, no invalid UTF-8 (overlong forms,
 * surrogates, code points above U+10FFFF), no lone \u surrogates, no duplicate keys in an
 * object, no bytes after the root value but whitespace.  Every failure is LUNET_ERR_FORMAT
 * with a message "<context> byte <n>: <problem>", n counting bytes of the text from 0.
 *
 * It is built for input nobody vouches for: nesting is limited (the parser recurses once per
 * level), the number of values is limited (each costs 32 bytes), and every other allocation
 * is at most the size of the text, which the caller has already checked.
 *
 * Numbers are converted while they are read, to the nearest double as strtod gives it (short
 * decimals without strtod, see lunet__decimal_compose), so reading one back costs nothing.
 *
 * The parse gives a document: an array of values in text order, each container followed by
 * its elements (an object's members as key, value, key, value, ...).  Values are named by
 * their index (lunet__json_ref); the root is 0.  Strings are decoded (escapes resolved) and
 * NUL-terminated, but may hold a NUL of their own from \u0000: callers that hand them on as
 * C strings check the length.
 *
 *     lunet__json_doc *doc;
 *     lunet__json_limits limits = {.max_depth = 64, .max_values = 1 << 20};
 *     LUNET_TRY(lunet__json_parse(&doc, text, len, &limits, "config.json"));
 *     for (lunet__json_ref k = lunet__json_first(doc, 0); k != LUNET__JSON_NONE;
 *          k = lunet__json_next(doc, lunet__json_next(doc, k)))
 *         printf("%s\n", lunet__json_string(doc, k, NULL));   // the value is next(k)
 *     lunet__json_free(doc);
 */
#ifndef LUNET_JSON_H
#define LUNET_JSON_H

#include "internal.h"

typedef enum lunet__json_type {
    LUNET__JSON_NULL = 0,
    LUNET__JSON_FALSE,
    LUNET__JSON_TRUE,
    LUNET__JSON_NUMBER,
    LUNET__JSON_STRING,
    LUNET__JSON_ARRAY,
    LUNET__JSON_OBJECT
} lunet__json_type;

/* A value of a document: its index.  LUNET__JSON_NONE stands for "no such value". */
typedef uint32_t lunet__json_ref;
#define LUNET__JSON_NONE UINT32_MAX

typedef struct lunet__json_limits {
    int max_depth;     /* arrays and objects nested deeper fail; the root is depth 1 */
    size_t max_values; /* every value counts one, keys included */
} lunet__json_limits;

typedef struct lunet__json_doc lunet__json_doc;

/* Parses len bytes of text (which need no terminating NUL and may be freed afterwards) into a
 * new document (*out, freed with lunet__json_free).  context starts every error message.
 * Texts of 4 GiB or more are refused. */
lunet_status lunet__json_parse(lunet__json_doc **out, const char *text, size_t len,
                               const lunet__json_limits *limits, const char *context);
void lunet__json_free(lunet__json_doc *doc);

lunet__json_type lunet__json_type_of(const lunet__json_doc *doc, lunet__json_ref v);
/* "null", "false", "true", "a number", "a string", "an array", "an object": for messages. */
const char *lunet__json_type_name(lunet__json_type type);
/* The byte position of v's first character in the text. */
size_t lunet__json_pos(const lunet__json_doc *doc, lunet__json_ref v);
/* Elements of an array, members (key-value pairs) of an object; 0 for anything else. */
size_t lunet__json_count(const lunet__json_doc *doc, lunet__json_ref v);
/* The first element of an array or the first key of an object, or NONE. */
lunet__json_ref lunet__json_first(const lunet__json_doc *doc, lunet__json_ref v);
/* The value after v in its container, or NONE: in an object, a key's next is its value and a
 * value's next is the following key. */
lunet__json_ref lunet__json_next(const lunet__json_doc *doc, lunet__json_ref v);
/* The value of key in object obj, or NONE (a linear scan: meant for small objects). */
lunet__json_ref lunet__json_get(const lunet__json_doc *doc, lunet__json_ref obj, const char *key);

/* A string's decoded bytes, NUL-terminated (borrowed), and their count in *len (may be NULL);
 * NULL when v is not a string. */
const char *lunet__json_string(const lunet__json_doc *doc, lunet__json_ref v, size_t *len);
/* A number's literal as written in the text (borrowed); NULL when v is not a number. */
const char *lunet__json_number_text(const lunet__json_doc *doc, lunet__json_ref v);

typedef enum lunet__json_uint_result {
    LUNET__JSON_UINT_OK = 0,
    LUNET__JSON_UINT_NOT_NUMBER,
    LUNET__JSON_UINT_NEGATIVE,
    LUNET__JSON_UINT_NOT_INTEGER, /* a fraction or an exponent, even "1.0" or "1e2" */
    LUNET__JSON_UINT_TOO_LARGE
} lunet__json_uint_result;

/* v as an integer in [0, max], exactly as written. */
lunet__json_uint_result lunet__json_get_uint(uint64_t *out, const lunet__json_doc *doc, lunet__json_ref v,
                                             uint64_t max);
/* "is not a number", "is negative", "is not an integer", "is too large". */
const char *lunet__json_uint_result_str(lunet__json_uint_result result);
/* v as the nearest double (read in the C locale whatever the program's locale is); false when
 * v is not a number or its magnitude overflows a double. */
bool lunet__json_get_f64(double *out, const lunet__json_doc *doc, lunet__json_ref v);

/* ---- text helpers --------------------------------------------------------------------------- */

/* The offset of the first byte of s[0..n) that is not part of valid UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or n when all of it is valid. */
size_t lunet__json_utf8_check(const char *s, size_t n);

/* Writes s[0..n) into buf as a quoted JSON string for an error message: escaped, so that a
 * hostile name cannot forge lines or terminal escapes, and cut with "..." to fit size (at
 * least 8).  Returns buf. */
const char *lunet__json_quote(char *buf, size_t size, const char *s, size_t n);
#define LUNET__JSON_QUOTE_BUF 80

/* ---- writing -------------------------------------------------------------------------------- */

/* A growing text buffer.  Zero-initialise it; appends after an allocation failure do nothing
 * and leave failed set, so a writer checks once at the end. */
typedef struct lunet__json_writer {
    char *data;
    size_t len, cap;
    bool failed;
} lunet__json_writer;

void lunet__json_write_raw(lunet__json_writer *w, const char *s, size_t n);
/* s[0..n) as a quoted JSON string: '"', '\\' and control characters escaped, other bytes as
 * they are (so s must be valid UTF-8; check it with lunet__json_utf8_check). */
void lunet__json_write_string(lunet__json_writer *w, const char *s, size_t n);
void lunet__json_write_uint(lunet__json_writer *w, uint64_t v);
void lunet__json_writer_free(lunet__json_writer *w);

#endif /* LUNET_JSON_H */
