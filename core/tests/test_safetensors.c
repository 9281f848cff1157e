/* test_safetensors.c: the JSON parser, and safetensors files written and read back, built byte
 * by byte, hostile, truncated and corrupted. */
#define _GNU_SOURCE /* memmem, strndup, mkdtemp */
#include "check.h"
#include "json.h"

#include <dirent.h>
#include <float.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- files ------------------------------------------------------------------------------ */

static char temp_dir[64];

/* A path in this run's scratch directory (one of two static buffers, used alternately). */
static const char *temp_path(const char *name) {
    static char paths[2][400];
    static int turn;
    char *path = paths[turn ^= 1];
    snprintf(path, sizeof paths[0], "%s/%s", temp_dir, name);
    return path;
}

static const char *write_bytes(const char *name, const void *bytes, size_t n) {
    const char *path = temp_path(name);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return path;
    CHECK(n == 0 || fwrite(bytes, 1, n, f) == n);
    CHECK(fclose(f) == 0);
    return path;
}

/* The bytes of a whole file (malloc'd), or NULL. */
static unsigned char *slurp(const char *path, size_t *n) {
    *n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(size > 0 ? (size_t)size : 1);
    if (bytes && size > 0 && fread(bytes, 1, (size_t)size, f) == (size_t)size) *n = (size_t)size;
    fclose(f);
    return bytes;
}

static bool contains(const unsigned char *bytes, size_t n, const char *text) {
    return bytes && memmem(bytes, n, text, strlen(text)) != NULL;
}

/* How many entries of the scratch directory contain text in their name. */
static int count_entries(const char *text) {
    DIR *d = opendir(temp_dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, text)) n++;
    if (d) closedir(d);
    return n;
}

/* A safetensors file: the length field, the header as given (padding included) and data_len
 * bytes of data (0, 1, 2, ...).  Returns a malloc'd buffer of *n bytes. */
static unsigned char *st_bytes(size_t *n, uint64_t length_field, const char *header, size_t data_len) {
    size_t h = strlen(header);
    *n = 8 + h + data_len;
    unsigned char *b = malloc(*n);
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(length_field >> (8 * i));
    memcpy(b + 8, header, h);
    for (size_t i = 0; i < data_len; i++)
        b[8 + h + i] = (unsigned char)i;
    return b;
}

/* Writes a file whose length field is the header's true length. */
static const char *st_file(const char *name, const char *header, size_t data_len) {
    size_t n;
    unsigned char *b = st_bytes(&n, strlen(header), header, data_len);
    const char *path = write_bytes(name, b, n);
    free(b);
    return path;
}

/* Reading path must fail with status; the message must start "safetensors: <path>: " and
 * contain text; nothing may be handed back. */
static void check_read_fails(const char *path, lunet_status status, const char *text) {
    char saved[200], prefix[220];
    snprintf(saved, sizeof saved, "%s", path);
    snprintf(prefix, sizeof prefix, "safetensors: %s: ", saved);
    lunet_safetensors *f = (lunet_safetensors *)&f; /* must be reset to NULL */
    CHECK_FAILS(lunet_safetensors_read(&f, saved), status, text);
    CHECK(f == NULL);
    if (strncmp(lunet_last_error(), prefix, strlen(prefix)) != 0)
        fprintf(stderr, "  message \"%s\" does not start with \"%s\"\n", lunet_last_error(), prefix);
    CHECK(strncmp(lunet_last_error(), prefix, strlen(prefix)) == 0);
}

/* The same for a header (true length) and data_len bytes of data. */
static void check_header_fails(const char *header, size_t data_len, const char *text) {
    check_read_fails(st_file("hostile.safetensors", header, data_len), LUNET_ERR_FORMAT, text);
}

/* ---- JSON ------------------------------------------------------------------------------- */

static const lunet__json_limits json_limits = {.max_depth = 64, .max_values = 1 << 16};

static lunet__json_doc *parse_ok(const char *text) {
    lunet__json_doc *doc = NULL;
    CHECK_OK(lunet__json_parse(&doc, text, strlen(text), &json_limits, "test"));
    return doc;
}

static void check_json_fails(const char *text, const char *message) {
    lunet__json_doc *doc = (lunet__json_doc *)&doc;
    CHECK_FAILS(lunet__json_parse(&doc, text, strlen(text), &json_limits, "test"), LUNET_ERR_FORMAT, message);
    CHECK(doc == NULL);
}

static void test_json_document(void) {
    const char *text =
        " {\"a\": [1, -2.5e3, true, false, null], \"b\": {\"c\": \"x\\ty\"}, \"e\": {}, \"f\": []} ";
    lunet__json_doc *doc = parse_ok(text);
    if (!doc) return;
    CHECK(lunet__json_type_of(doc, 0) == LUNET__JSON_OBJECT);
    CHECK(lunet__json_count(doc, 0) == 4);
    CHECK(lunet__json_pos(doc, 0) == 1);
    lunet__json_ref a = lunet__json_get(doc, 0, "a");
    CHECK(a != LUNET__JSON_NONE && lunet__json_type_of(doc, a) == LUNET__JSON_ARRAY &&
          lunet__json_count(doc, a) == 5);
    const lunet__json_type want[5] = {LUNET__JSON_NUMBER, LUNET__JSON_NUMBER, LUNET__JSON_TRUE,
                                      LUNET__JSON_FALSE, LUNET__JSON_NULL};
    int i = 0;
    for (lunet__json_ref v = lunet__json_first(doc, a); v != LUNET__JSON_NONE;
         v = lunet__json_next(doc, v), i++)
        CHECK(i < 5 && lunet__json_type_of(doc, v) == want[i]);
    CHECK(i == 5);
    lunet__json_ref second = lunet__json_next(doc, lunet__json_first(doc, a));
    CHECK(strcmp(lunet__json_number_text(doc, second), "-2.5e3") == 0);
    double d = 0;
    CHECK(lunet__json_get_f64(&d, doc, second) && d == -2500.0);
    /* Iterating an object: key, value, key, value; nested containers are skipped whole. */
    const char *keys[4] = {"a", "b", "e", "f"};
    i = 0;
    for (lunet__json_ref k = lunet__json_first(doc, 0); k != LUNET__JSON_NONE;
         k = lunet__json_next(doc, lunet__json_next(doc, k)), i++)
        CHECK(i < 4 && strcmp(lunet__json_string(doc, k, NULL), keys[i]) == 0);
    CHECK(i == 4);
    lunet__json_ref c = lunet__json_get(doc, lunet__json_get(doc, 0, "b"), "c");
    size_t len = 0;
    CHECK(c != LUNET__JSON_NONE && strcmp(lunet__json_string(doc, c, &len), "x\ty") == 0 && len == 3);
    CHECK(lunet__json_first(doc, lunet__json_get(doc, 0, "e")) == LUNET__JSON_NONE);
    CHECK(lunet__json_first(doc, lunet__json_get(doc, 0, "f")) == LUNET__JSON_NONE);
    CHECK(lunet__json_get(doc, 0, "missing") == LUNET__JSON_NONE);
    CHECK(lunet__json_get(doc, a, "a") == LUNET__JSON_NONE); /* not an object */
    CHECK(lunet__json_string(doc, a, NULL) == NULL);
    CHECK(lunet__json_next(doc, 0) == LUNET__JSON_NONE);
    lunet__json_free(doc);

    /* A bare scalar is a document too. */
    doc = parse_ok("7");
    CHECK(doc && lunet__json_type_of(doc, 0) == LUNET__JSON_NUMBER && lunet__json_count(doc, 0) == 0);
    lunet__json_free(doc);
}

static void test_json_strings(void) {
    /* Every escape, a BMP code point, a surrogate pair and raw UTF-8, decoded to UTF-8. */
    lunet__json_doc *doc = parse_ok(
        "[\"\\\"\\\\\\/\\b\\f\\n\\r\\t\", \"\\u00e9\\u20AC\\uD834\\uDD1E\", \"\xc3\xa9\xf0\x9d\x84\x9e\", "
        "\"a\\u0000b\"]");
    if (!doc) return;
    lunet__json_ref v = lunet__json_first(doc, 0);
    size_t len;
    CHECK(strcmp(lunet__json_string(doc, v, &len), "\"\\/\b\f\n\r\t") == 0 && len == 8);
    v = lunet__json_next(doc, v);
    CHECK(strcmp(lunet__json_string(doc, v, &len), "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e") == 0 && len == 9);
    v = lunet__json_next(doc, v);
    CHECK(strcmp(lunet__json_string(doc, v, &len), "\xc3\xa9\xf0\x9d\x84\x9e") == 0 && len == 6);
    v = lunet__json_next(doc, v);
    CHECK(memcmp(lunet__json_string(doc, v, &len), "a\0b", 4) == 0 && len == 3); /* the length tells */
    lunet__json_free(doc);

    check_json_fails("\"abc", "test byte 0: unterminated string");
    check_json_fails("\"a\\", "unterminated string");
    check_json_fails("\"a\\q\"", "test byte 2: invalid escape: a backslash followed by 'q'");
    check_json_fails("\"\\u12g4\"", "test byte 1: \\u must be followed by four hex digits");
    check_json_fails("\"\\u12", "\\u must be followed by four hex digits");
    check_json_fails("\"\\uDC00\"", "is a low surrogate without a high surrogate");
    check_json_fails("\"\\uD800\"", "is a high surrogate without a low surrogate");
    check_json_fails("\"\\uD800\\u0041\"", "followed by \\u0041, not a low surrogate");
    check_json_fails("\"a\nb\"", "test byte 2: control character 0x0a in a string");
    check_json_fails("\"\x01\"", "control character 0x01");
    check_json_fails("\"\xff\"", "test byte 1: invalid UTF-8 (byte 0xff)");
    check_json_fails("\"\xc0\xaf\"", "invalid UTF-8 (byte 0xc0)");         /* overlong '/' */
    check_json_fails("\"\xe0\x80\xaf\"", "invalid UTF-8 (byte 0xe0)");     /* overlong, 3 bytes */
    check_json_fails("\"\xed\xa0\x80\"", "invalid UTF-8 (byte 0xed)");     /* an encoded surrogate */
    check_json_fails("\"\xf4\x90\x80\x80\"", "invalid UTF-8 (byte 0xf4)"); /* above U+10FFFF */
    check_json_fails("\"\xc3\"", "invalid UTF-8 (byte 0xc3)");             /* cut short */
    check_json_fails("\"\xe2\x82\"", "invalid UTF-8 (byte 0xe2)");
    check_json_fails("\"\x80\"", "invalid UTF-8 (byte 0x80)"); /* a lone continuation */
}

static void test_json_numbers(void) {
    lunet__json_doc *doc =
        parse_ok("[0, 9007199254740992, 18446744073709551615, 18446744073709551616, -0, 1.0, "
                 "1e2, -3, 12, 1e400, 1e-400]");
    if (!doc) return;
    lunet__json_ref v[11];
    v[0] = lunet__json_first(doc, 0);
    for (int i = 1; i < 11; i++)
        v[i] = lunet__json_next(doc, v[i - 1]);
    uint64_t u = 99;
    CHECK(lunet__json_get_uint(&u, doc, v[0], 10) == LUNET__JSON_UINT_OK && u == 0);
    CHECK(lunet__json_get_uint(&u, doc, v[1], (uint64_t)1 << 53) == LUNET__JSON_UINT_OK && u == (uint64_t)1
                                                                                                    << 53);
    CHECK(lunet__json_get_uint(&u, doc, v[1], ((uint64_t)1 << 53) - 1) == LUNET__JSON_UINT_TOO_LARGE);
    CHECK(lunet__json_get_uint(&u, doc, v[2], UINT64_MAX) == LUNET__JSON_UINT_OK && u == UINT64_MAX);
    CHECK(lunet__json_get_uint(&u, doc, v[3], UINT64_MAX) == LUNET__JSON_UINT_TOO_LARGE);
    CHECK(lunet__json_get_uint(&u, doc, v[4], 10) == LUNET__JSON_UINT_NEGATIVE);
    CHECK(lunet__json_get_uint(&u, doc, v[5], 10) == LUNET__JSON_UINT_NOT_INTEGER);
    CHECK(lunet__json_get_uint(&u, doc, v[6], 1000) == LUNET__JSON_UINT_NOT_INTEGER);
    CHECK(lunet__json_get_uint(&u, doc, v[7], 10) == LUNET__JSON_UINT_NEGATIVE);
    CHECK(lunet__json_get_uint(&u, doc, v[8], 11) == LUNET__JSON_UINT_TOO_LARGE);
    CHECK(lunet__json_get_uint(&u, doc, 0, 10) == LUNET__JSON_UINT_NOT_NUMBER);
    CHECK(strcmp(lunet__json_uint_result_str(LUNET__JSON_UINT_NEGATIVE), "is negative") == 0);
    double d = 0;
    CHECK(!lunet__json_get_f64(&d, doc, v[9]));             /* overflows a double */
    CHECK(lunet__json_get_f64(&d, doc, v[10]) && d == 0.0); /* underflow rounds to 0 */
    CHECK(lunet__json_get_f64(&d, doc, v[2]) && d == 18446744073709551616.0);
    CHECK(!lunet__json_get_f64(&d, doc, 0));
    lunet__json_free(doc);

    check_json_fails("[01]", "test byte 1: a number with a leading zero");
    check_json_fails("[-]", "test byte 2: expected a digit, found ']'");
    check_json_fails("[1.]", "expected a digit after the decimal point");
    check_json_fails("[.5]", "test byte 1: expected a value, found '.'");
    check_json_fails("[1e]", "expected a digit in the exponent");
    check_json_fails("[+1]", "expected a value, found '+'");
    check_json_fails("[NaN]", "expected a value, found 'N'");
    check_json_fails("[Infinity]", "expected a value");
    check_json_fails("[0x10]", "test byte 2: expected ']' or ',' in an array, found 'x'");
}

/* Numbers read while parsing must be exactly strtod's, on the fast path or past it. */
static void test_json_numbers_round_like_strtod(void) {
    enum { count = 4000 };
    static const char *tail[] = {"1e308", "-1e-308", "1e-320", "123456789012345678901234", "0.1e23",
                                 "9007199254740993", "-0", "0.000000000000000000000000000001", "1E22", "1e23",
                                 "1234567890123456789", "12345678901234567890", "0e999"};
    enum { extra = sizeof tail / sizeof *tail };
    char *text = malloc(count * 40 + 512);
    double *expected = malloc((count + extra) * sizeof *expected);
    if (!text || !expected) {
        CHECK(!"out of memory");
        free(text);
        free(expected);
        return;
    }
    size_t used = 0;
    text[used++] = '[';
    uint64_t x = 7;
    for (int i = 0; i < count + extra; i++) {
        char field[40];
        if (i < count) random_decimal(field, sizeof field, &x, i);
        else snprintf(field, sizeof field, "%s", tail[i - count]);
        expected[i] = strtod(field, NULL);
        used += (size_t)snprintf(text + used, 42, "%s%s", i ? "," : "", field);
    }
    text[used++] = ']';
    lunet__json_doc *doc = NULL;
    lunet__json_limits limits = {.max_depth = 4, .max_values = count + extra + 1};
    CHECK_OK(lunet__json_parse(&doc, text, used, &limits, "numbers"));
    free(text);
    if (doc) {
        int i = 0, mismatches = 0;
        for (lunet__json_ref v = lunet__json_first(doc, 0); v != LUNET__JSON_NONE; v = lunet__json_next(doc, v), i++) {
            double d = 1;
            bool ok = lunet__json_get_f64(&d, doc, v);
            mismatches += !ok || memcmp(&d, &expected[i], sizeof d) != 0; /* bits: -0 is not 0 */
        }
        CHECK(i == count + extra);
        CHECK(mismatches == 0);
        lunet__json_free(doc);
    }
    free(expected);
}

static void test_json_structure(void) {
    check_json_fails("", "test byte 0: expected a value, found the end of the text");
    check_json_fails("   ", "test byte 3: expected a value");
    check_json_fails("{\"a\" 1}", "test byte 5: expected ':' after an object key, found '1'");
    check_json_fails("{\"a\":}", "test byte 5: expected a value, found '}'");
    check_json_fails("{,}", "test byte 1: expected a string key in an object, found ','");
    check_json_fails("{\"a\":1,}", "test byte 7: expected a string key");
    check_json_fails("[1,]", "test byte 3: expected a value, found ']'");
    check_json_fails("{'a':1}", "expected a string key in an object, found '''");
    check_json_fails("{a:1}", "expected a string key");
    check_json_fails("[1 2]", "test byte 3: expected ']' or ',' in an array, found '2'");
    check_json_fails("{\"a\":1 \"b\":2}", "expected '}' or ',' in an object, found '\"'");
    check_json_fails("[1", "expected ']' or ',' in an array, found the end of the text");
    check_json_fails("{\"a\":1", "expected '}' or ',' in an object");
    check_json_fails("tru", "expected a value, found 't'");
    check_json_fails("nul", "expected a value");
    check_json_fails("{} x", "test byte 3: 'x' after the end of the JSON value");
    check_json_fails("{}{}", "'{' after the end of the JSON value");
    check_json_fails("[] \x01", "byte 0x01 after the end");
    check_json_fails("[/* no */]", "expected a value, found '/'");
    check_json_fails("{\"a\":1,\"b\":2,\"a\":3}", "test byte 13: duplicate key \"a\" (first at byte 1)");
    /* Keys that differ only after a NUL, or only in length, are different keys. */
    lunet__json_doc *doc = parse_ok("{\"a\\u0000b\":1, \"a\\u0000c\":2, \"a\":3, \"ab\":4}");
    lunet__json_free(doc);
    /* The same key in two different objects is fine. */
    doc = parse_ok("{\"x\":{\"a\":1}, \"y\":{\"a\":2}}");
    lunet__json_free(doc);
}

static void test_json_limits(void) {
    lunet__json_limits limits = {.max_depth = 3, .max_values = 8};
    lunet__json_doc *doc = NULL;
    CHECK_OK(lunet__json_parse(&doc, "[[[]]]", 6, &limits, "deep"));
    lunet__json_free(doc);
    doc = (lunet__json_doc *)&doc;
    CHECK_FAILS(lunet__json_parse(&doc, "[[[[]]]]", 8, &limits, "deep"), LUNET_ERR_FORMAT,
                "deep byte 3: arrays and objects nested more than 3 deep");
    CHECK(doc == NULL);
    CHECK_OK(lunet__json_parse(&doc, "[1,2,3,4,5,6,7]", 15, &limits, "many"));
    lunet__json_free(doc);
    CHECK_FAILS(lunet__json_parse(&doc, "[1,2,3,4,5,6,7,8]", 17, &limits, "many"), LUNET_ERR_FORMAT,
                "many byte 15: more than 8 values");
    /* Far deeper than the limit: refused at the limit, without recursing further. */
    size_t n = 200000;
    char *deep = malloc(2 * n);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    lunet__json_limits normal = {.max_depth = 64, .max_values = 1 << 20};
    CHECK_FAILS(lunet__json_parse(&doc, deep, 2 * n, &normal, "deep"), LUNET_ERR_FORMAT,
                "nested more than 64 deep");
    free(deep);
}

static void test_json_writer_and_quote(void) {
    /* Every byte 1..127, then multi-byte characters: written, parsed back, unchanged. */
    char all[200];
    size_t n = 0;
    for (int c = 1; c < 128; c++)
        all[n++] = (char)c;
    const char *wide = "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e";
    memcpy(all + n, wide, strlen(wide));
    n += strlen(wide);
    lunet__json_writer w = {0};
    lunet__json_write_raw(&w, "[", 1);
    lunet__json_write_string(&w, all, n);
    lunet__json_write_raw(&w, ",", 1);
    lunet__json_write_string(&w, "", 0);
    lunet__json_write_raw(&w, ",", 1);
    lunet__json_write_uint(&w, UINT64_MAX);
    lunet__json_write_raw(&w, "]", 1);
    CHECK(!w.failed);
    CHECK(memmem(w.data, w.len, "\\n", 2) && memmem(w.data, w.len, "\\u0001", 6) &&
          memmem(w.data, w.len, "\\\"", 2));
    lunet__json_doc *doc = NULL;
    CHECK_OK(lunet__json_parse(&doc, w.data, w.len, &json_limits, "round trip"));
    if (doc) {
        size_t len;
        lunet__json_ref v = lunet__json_first(doc, 0);
        const char *s = lunet__json_string(doc, v, &len);
        CHECK(s && len == n && memcmp(s, all, n) == 0);
        v = lunet__json_next(doc, v);
        CHECK(strcmp(lunet__json_string(doc, v, &len), "") == 0 && len == 0);
        v = lunet__json_next(doc, v);
        CHECK(strcmp(lunet__json_number_text(doc, v), "18446744073709551615") == 0);
    }
    lunet__json_free(doc);
    lunet__json_writer_free(&w);

    CHECK(lunet__json_utf8_check("abc\xc3\xa9", 5) == 5);
    CHECK(lunet__json_utf8_check("ab\xff", 3) == 2);
    CHECK(lunet__json_utf8_check("a\xed\xbf\xbf", 4) == 1);
    CHECK(lunet__json_utf8_check("\xf0\x9d\x84", 3) == 0);

    char q[LUNET__JSON_QUOTE_BUF];
    CHECK(strcmp(lunet__json_quote(q, sizeof q, "a\nb\"\x1b[31m", 9), "\"a\\nb\\\"\\u001b[31m\"") == 0);
    CHECK(strcmp(lunet__json_quote(q, sizeof q, "x\xff\xc3\xa9", 4), "\"x\\xff\xc3\xa9\"") == 0);
    char long_name[300];
    memset(long_name, 'n', sizeof long_name);
    lunet__json_quote(q, sizeof q, long_name, sizeof long_name);
    CHECK(strlen(q) < sizeof q && strcmp(q + strlen(q) - 4, "\"...") == 0);
    char small[12];
    lunet__json_quote(small, sizeof small, "abcdefghijklmnop", 16);
    CHECK(strcmp(small, "\"abcdef\"...") == 0);
}

/* ---- round trips ------------------------------------------------------------------------- */

/* Reads path and checks that tensor i is names[i] with the bytes of expect[i] (any strides). */
static lunet_safetensors *check_read(const char *path, size_t n, const char *const *names,
                                     const lunet_tensor *const *expect) {
    lunet_safetensors *f = NULL;
    CHECK_OK(lunet_safetensors_read(&f, path));
    if (!f) return NULL;
    CHECK(lunet_safetensors_count(f) == n);
    for (size_t i = 0; i < n && i < lunet_safetensors_count(f); i++) {
        const lunet_tensor *got = lunet_safetensors_tensor(f, i);
        CHECK(strcmp(lunet_safetensors_name(f, i), names[i]) == 0);
        CHECK(lunet_tensor_dtype(got) == lunet_tensor_dtype(expect[i]));
        CHECK(lunet__same_shape(lunet_tensor_ndim(got), lunet_tensor_shape(got), lunet_tensor_ndim(expect[i]),
                                lunet_tensor_shape(expect[i])));
        CHECK(lunet_tensor_is_contiguous(got));
        lunet_tensor *c = NULL;
        CHECK_OK(lunet__contiguous_nograd(&c, expect[i]));
        size_t nbytes = (size_t)lunet_tensor_numel(got) * lunet_dtype_size(lunet_tensor_dtype(got));
        CHECK(c && (nbytes == 0 || memcmp(lunet_tensor_data(got), lunet_tensor_data(c), nbytes) == 0));
        lunet_tensor_release(c);
    }
    CHECK(lunet_safetensors_name(f, n) == NULL && lunet_safetensors_tensor(f, n) == NULL);
    return f;
}

static void test_every_dtype(void) {
    const float f32[6] = {1.5f, -0.0f, FLT_MAX, 1e-45f, NAN, -INFINITY};
    const double f64[6] = {0.1, -2.5e300, 5e-324, 3.141592653589793, NAN, INFINITY};
    const int64_t i64[6] = {INT64_MIN, -1, 0, 1, 0x0102030405060708, INT64_MAX};
    const int32_t i32[6] = {INT32_MIN, -1, 0, 1, 0x01020304, INT32_MAX};
    const int8_t i8[6] = {-128, -1, 0, 1, 2, 127};
    const uint8_t u8[6] = {0, 1, 127, 128, 254, 255};
    const void *data[6] = {f32, f64, i64, i32, i8, u8};
    const lunet_dtype dtypes[6] = {LUNET_DTYPE_F32, LUNET_DTYPE_F64, LUNET_DTYPE_I64,
                                   LUNET_DTYPE_I32, LUNET_DTYPE_I8,  LUNET_DTYPE_U8};
    const char *names[6] = {"f32", "f64", "i64", "i32", "i8", "u8"};
    int64_t shape[2] = {2, 3};
    lunet_tensor *t[6] = {0};
    lunet_named_tensor named[6];
    for (int i = 0; i < 6; i++) {
        CHECK_OK(lunet_tensor_from_data(&t[i], dtypes[i], 2, shape, data[i]));
        named[i] = (lunet_named_tensor){names[i], t[i]};
    }
    const char *path = temp_path("dtypes.safetensors");
    CHECK_OK(lunet_safetensors_write(path, named, 6, NULL, 0));
    lunet_safetensors_free(check_read(path, 6, names, (const lunet_tensor *const *)t));

    /* The header names the format's dtype strings and lays the tensors out in the given order. */
    size_t n;
    unsigned char *bytes = slurp(path, &n);
    CHECK(bytes && n > 8);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--)
        h = h << 8 | bytes[i];
    CHECK(h % 8 == 0 && 8 + h + 6 * (4 + 8 + 8 + 4 + 1 + 1) == n);
    char *header = strndup((const char *)bytes + 8, (size_t)h);
    CHECK(strstr(header, "\"f32\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]}"));
    CHECK(strstr(header, "\"f64\":{\"dtype\":\"F64\",\"shape\":[2,3],\"data_offsets\":[24,72]}"));
    CHECK(strstr(header, "\"u8\":{\"dtype\":\"U8\",\"shape\":[2,3],\"data_offsets\":[150,156]}"));
    CHECK(strstr(header, "__metadata__") == NULL);
    CHECK(memcmp(bytes + 8 + h, f32, 24) == 0); /* little-endian, as the host has it */
    free(header);
    free(bytes);
    for (int i = 0; i < 6; i++)
        lunet_tensor_release(t[i]);
}

/* The exact bytes of a small file: the format, pinned. */
static void test_exact_bytes(void) {
    const float w[2] = {1.0f, -2.0f};
    int64_t shape[1] = {2};
    lunet_tensor *t = NULL;
    CHECK_OK(lunet_tensor_from_data(&t, LUNET_DTYPE_F32, 1, shape, w));
    lunet_named_tensor named[1] = {{"w", t}};
    lunet_string_pair meta[1] = {{"format", "pt"}};
    const char *path = temp_path("exact.safetensors");
    CHECK_OK(lunet_safetensors_write(path, named, 1, meta, 1));
    const char *json = "{\"__metadata__\":{\"format\":\"pt\"},\"w\":{\"dtype\":\"F32\",\"shape\":[2],"
                       "\"data_offsets\":[0,8]}}";
    size_t padded = (strlen(json) + 7) / 8 * 8, n;
    unsigned char expected[256] = {0};
    expected[0] = (unsigned char)padded;
    memset(expected + 8, ' ', padded);
    memcpy(expected + 8, json, strlen(json));
    memcpy(expected + 8 + padded, w, 8);
    unsigned char *bytes = slurp(path, &n);
    CHECK(bytes && n == 8 + padded + 8 && memcmp(bytes, expected, n) == 0);
    free(bytes);
    lunet_tensor_release(t);
}

static void test_shapes(void) {
    const double v[24] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12,
                          13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24};
    int64_t s0[1] = {0}, empty[2] = {0, 3}, one[1] = {1}, eight[8] = {1, 2, 1, 3, 1, 1, 2, 2}, after[1] = {2};
    lunet_tensor *t[5] = {
        tensor_of(LUNET_DTYPE_F64, 0, s0, v),    /* 0-d: one element, "shape": [] */
        tensor_of(LUNET_DTYPE_F32, 2, empty, v), /* no elements: data_offsets [k, k] */
        tensor_of(LUNET_DTYPE_I32, 1, one, v),   tensor_of(LUNET_DTYPE_F32, 8, eight, v),
        tensor_of(LUNET_DTYPE_I8, 1, after, v), /* after the empty one, at the same offset */
    };
    const char *names[5] = {"scalar", "empty", "one", "eight", "after"};
    lunet_named_tensor named[5];
    for (int i = 0; i < 5; i++)
        named[i] = (lunet_named_tensor){names[i], t[i]};
    const char *path = temp_path("shapes.safetensors");
    CHECK_OK(lunet_safetensors_write(path, named, 5, NULL, 0));
    lunet_safetensors *f = check_read(path, 5, names, (const lunet_tensor *const *)t);
    if (f) {
        CHECK(lunet_tensor_ndim(lunet_safetensors_tensor(f, 0)) == 0);
        double x = 0;
        CHECK_OK(lunet_tensor_item_f64(&x, lunet_safetensors_tensor(f, 0)));
        CHECK(x == 1);
        CHECK(lunet_tensor_numel(lunet_safetensors_tensor(f, 1)) == 0);
        CHECK(lunet_safetensors_metadata_count(f) == 0);
        CHECK(lunet_safetensors_metadata_get(f, "x") == NULL);
    }
    lunet_safetensors_free(f);
    size_t n;
    unsigned char *bytes = slurp(path, &n);
    CHECK(contains(bytes, n, "\"scalar\":{\"dtype\":\"F64\",\"shape\":[],\"data_offsets\":[0,8]}"));
    CHECK(contains(bytes, n, "\"empty\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[8,8]}"));
    CHECK(contains(bytes, n, "\"after\":{\"dtype\":\"I8\",\"shape\":[2],\"data_offsets\":[108,110]}"));
    free(bytes);
    for (int i = 0; i < 5; i++)
        lunet_tensor_release(t[i]);

    /* No tensors at all: "{}" padded, and an empty data section. */
    path = temp_path("nothing.safetensors");
    CHECK_OK(lunet_safetensors_write(path, NULL, 0, NULL, 0));
    bytes = slurp(path, &n);
    CHECK(bytes && n == 16 && bytes[0] == 8 && memcmp(bytes + 8, "{}      ", 8) == 0);
    free(bytes);
    f = check_read(path, 0, NULL, NULL);
    lunet_safetensors_free(f);
}

static void test_views_are_stored_contiguous(void) {
    const double v[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3}, row[2] = {1, 3}, wide[2] = {4, 3};
    lunet_tensor *base = tensor_of(LUNET_DTYPE_F32, 2, shape, v), *tr = NULL, *narrow = NULL, *r = NULL,
                 *ex = NULL;
    CHECK_OK(lunet_tensor_transpose(&tr, base, 0, 1)); /* (3, 2), strides (1, 3) */
    CHECK(!lunet_tensor_is_contiguous(tr));
    CHECK_OK(lunet_tensor_narrow(&narrow, base, 1, 1, 2)); /* (2, 2), offset 1 */
    r = tensor_of(LUNET_DTYPE_I64, 2, row, v);
    CHECK_OK(lunet_tensor_expand(&ex, r, 2, wide)); /* stride 0 on dim 0 */
    lunet_named_tensor named[3] = {{"transposed", tr}, {"narrowed", narrow}, {"expanded", ex}};
    const char *path = temp_path("views.safetensors");
    CHECK_OK(lunet_safetensors_write(path, named, 3, NULL, 0));
    const char *names[3] = {"transposed", "narrowed", "expanded"};
    const lunet_tensor *expect[3] = {tr, narrow, ex};
    lunet_safetensors *f = check_read(path, 3, names, expect);
    if (f) {
        const lunet_tensor *got = lunet_safetensors_tensor(f, 0);
        const float want[6] = {1, 4, 2, 5, 3, 6};
        CHECK(memcmp(lunet_tensor_data(got), want, sizeof want) == 0);
        CHECK(max_abs_diff(lunet_safetensors_tensor(f, 2), ex) == 0);
    }
    lunet_safetensors_free(f);
    lunet_tensor_release(ex);
    lunet_tensor_release(r);
    lunet_tensor_release(narrow);
    lunet_tensor_release(tr);
    lunet_tensor_release(base);
}

static void test_metadata(void) {
    const double v[1] = {3};
    int64_t one[1] = {1};
    lunet_tensor *t = tensor_of(LUNET_DTYPE_F32, 1, one, v);
    lunet_named_tensor named[1] = {{"layer \"1\"\n\\weight\t\xc3\xa9", t}};
    lunet_string_pair meta[5] = {
        {"lunet.format", "1"},
        {"quote\"back\\slash", "line\nbreak\ttab\rcr\x01\x1f\x7f end"},
        {"unicode", "\xc3\xa9\xe2\x82\xac\xf0\x9d\x84\x9e"},
        {"empty", ""},
        {"", "empty key"},
    };
    const char *path = temp_path("metadata.safetensors");
    CHECK_OK(lunet_safetensors_write(path, named, 1, meta, 5));
    const char *names[1] = {named[0].name};
    const lunet_tensor *expect[1] = {t};
    lunet_safetensors *f = check_read(path, 1, names, expect);
    if (f) {
        CHECK(lunet_safetensors_metadata_count(f) == 5);
        for (size_t i = 0; i < 5; i++) { /* in the order given */
            CHECK(strcmp(lunet_safetensors_metadata_key(f, i), meta[i].key) == 0);
            CHECK(strcmp(lunet_safetensors_metadata_value(f, i), meta[i].value) == 0);
            CHECK(strcmp(lunet_safetensors_metadata_get(f, meta[i].key), meta[i].value) == 0);
        }
        CHECK(lunet_safetensors_metadata_key(f, 5) == NULL && lunet_safetensors_metadata_value(f, 5) == NULL);
    }
    lunet_safetensors_free(f);
    lunet_tensor_release(t);
}

/* Many tensors (the reader's entry array grows) and a large one (reads of megabytes). */
static void test_many_and_large(void) {
    enum { N = 300 };
    lunet_tensor *t[N + 1] = {0};
    lunet_named_tensor named[N + 1];
    char names[N][16];
    const char *name_ptrs[N + 1];
    for (int i = 0; i < N; i++) {
        double v[2] = {i, -i};
        int64_t shape[1] = {1 + i % 2};
        t[i] = tensor_of(i % 3 ? LUNET_DTYPE_I32 : LUNET_DTYPE_F64, 1, shape, v);
        snprintf(names[i], sizeof names[i], "t%03d", N - i); /* given in reverse name order */
        named[i] = (lunet_named_tensor){names[i], t[i]};
        name_ptrs[i] = names[i];
    }
    int64_t big_shape[2] = {1024, 1024};
    CHECK_OK(lunet_tensor_randn(&t[N], LUNET_DTYPE_F32, 2, big_shape));
    named[N] = (lunet_named_tensor){"big", t[N]};
    name_ptrs[N] = "big";
    const char *path = temp_path("many.safetensors");
    CHECK_OK(lunet_safetensors_write(path, named, N + 1, NULL, 0));
    lunet_safetensors_free(check_read(path, N + 1, name_ptrs, (const lunet_tensor *const *)t));
    for (int i = 0; i <= N; i++)
        lunet_tensor_release(t[i]);
}

/* A header as another writer might produce it: entries out of data order, whitespace, an
 * unknown field, a null __metadata__, escapes in names; read in header order. */
static void test_foreign_header(void) {
    const char *header =
        "{ \"b\\u00e9\" : {\"data_offsets\": [8, 12], \"shape\": [1], \"dtype\": \"I32\", \"x\": [{}]},\n"
        "  \"__metadata__\": null,\n"
        "  \"a\": {\"dtype\": \"U8\", \"shape\": [2, 4], \"data_offsets\": [0, 8]},\r\n"
        "  \"z\": {\"dtype\": \"F64\", \"shape\": [0], \"data_offsets\": [12, 12]} }\t  ";
    const char *path = st_file("foreign.safetensors", header, 12);
    lunet_safetensors *f = NULL;
    CHECK_OK(lunet_safetensors_read(&f, path));
    if (!f) return;
    CHECK(lunet_safetensors_count(f) == 3 && lunet_safetensors_metadata_count(f) == 0);
    CHECK(strcmp(lunet_safetensors_name(f, 0), "b\xc3\xa9") == 0);
    CHECK(strcmp(lunet_safetensors_name(f, 1), "a") == 0);
    CHECK(strcmp(lunet_safetensors_name(f, 2), "z") == 0);
    const unsigned char *a = lunet_tensor_data(lunet_safetensors_tensor(f, 1));
    for (int i = 0; i < 8; i++)
        CHECK(a[i] == i);
    int32_t b;
    memcpy(&b, lunet_tensor_data(lunet_safetensors_tensor(f, 0)), 4);
    CHECK(b == 0x0b0a0908);
    lunet_safetensors_free(f);

    /* The same bytes from memory: the fuzzer's entry point agrees with the file reader. */
    size_t n;
    unsigned char *bytes = slurp(path, &n);
    CHECK_OK(lunet__safetensors_read_memory(&f, bytes, n, "memory"));
    CHECK(f && lunet_safetensors_count(f) == 3);
    lunet_safetensors_free(f);
    bytes[n - 13] = '!'; /* inside the header's closing whitespace */
    f = (lunet_safetensors *)&f;
    CHECK_FAILS(lunet__safetensors_read_memory(&f, bytes, n, "memory"), LUNET_ERR_FORMAT,
                "safetensors: memory: header byte");
    CHECK(f == NULL);
    free(bytes);
}

/* ---- writing: refusals and atomicity -------------------------------------------------------- */

static void check_write_fails(const char *path, const lunet_named_tensor *t, size_t n,
                              const lunet_string_pair *m, size_t nm, lunet_status status, const char *text) {
    CHECK_FAILS(lunet_safetensors_write(path, t, n, m, nm), status, text);
    CHECK(strncmp(lunet_last_error(), "safetensors: ", 13) == 0);
    CHECK(count_entries(".tmp.") == 0);
}

static void test_write_refusals(void) {
    const double v[1] = {1};
    int64_t one[1] = {1};
    lunet_tensor *t = tensor_of(LUNET_DTYPE_F32, 1, one, v);
    const char *path = temp_path("refused.safetensors");
    lunet_named_tensor dup[3] = {{"a", t}, {"b", t}, {"a", t}};
    check_write_fails(path, dup, 3, NULL, 0, LUNET_ERR_ARG,
                      "tensor name \"a\" is given twice (entries 1 and 3)");
    lunet_named_tensor empty[1] = {{"", t}};
    check_write_fails(path, empty, 1, NULL, 0, LUNET_ERR_ARG, "tensor 1 has an empty name");
    lunet_named_tensor null_name[2] = {{"a", t}, {NULL, t}};
    check_write_fails(path, null_name, 2, NULL, 0, LUNET_ERR_ARG, "tensor 2 has a NULL name");
    lunet_named_tensor reserved[1] = {{"__metadata__", t}};
    check_write_fails(path, reserved, 1, NULL, 0, LUNET_ERR_ARG, "the name __metadata__ is reserved");
    lunet_named_tensor null_tensor[1] = {{"a", NULL}};
    check_write_fails(path, null_tensor, 1, NULL, 0, LUNET_ERR_ARG, "tensor 1 (a) is NULL");
    lunet_named_tensor bad_utf8[1] = {{"a\xff", t}};
    check_write_fails(path, bad_utf8, 1, NULL, 0, LUNET_ERR_ARG,
                      "tensor name 1 (\"a\\xff\") is not valid UTF-8 (byte 1)");
    lunet_named_tensor ok[1] = {{"a", t}};
    lunet_string_pair dup_keys[2] = {{"k", "1"}, {"k", "2"}};
    check_write_fails(path, ok, 1, dup_keys, 2, LUNET_ERR_ARG, "metadata key \"k\" is given twice");
    lunet_string_pair bad_value[1] = {{"k", "\xc0\x80"}};
    check_write_fails(path, ok, 1, bad_value, 1, LUNET_ERR_ARG,
                      "metadata value 1 (\"\\xc0\\x80\") is not valid UTF-8");
    lunet_string_pair null_value[1] = {{"k", NULL}};
    check_write_fails(path, ok, 1, null_value, 1, LUNET_ERR_ARG, "metadata entry 1 has a NULL value");
    check_write_fails(path, NULL, 1, NULL, 0, LUNET_ERR_ARG, "tensors is NULL but its count is not 0");
    CHECK_FAILS(lunet_safetensors_write(NULL, ok, 1, NULL, 0), LUNET_ERR_ARG,
                "safetensors: the path is NULL");
    CHECK_FAILS(lunet_safetensors_write("", ok, 1, NULL, 0), LUNET_ERR_ARG, "safetensors: the path is empty");
    CHECK(access(path, F_OK) != 0); /* nothing was written */
    lunet_tensor_release(t);
}

static void test_atomic_write(void) {
    const double v[4] = {1, 2, 3, 4};
    int64_t four[1] = {4};
    lunet_tensor *t = tensor_of(LUNET_DTYPE_F64, 1, four, v);
    lunet_named_tensor named[1] = {{"w", t}};
    char path[200], dir[200];
    snprintf(path, sizeof path, "%s", temp_path("atomic.safetensors"));
    snprintf(dir, sizeof dir, "%s", temp_path("a_directory"));
    CHECK_OK(lunet_safetensors_write(path, named, 1, NULL, 0));
    size_t old_n;
    unsigned char *old = slurp(path, &old_n);

    /* Overwriting works and leaves no temporary file. */
    lunet_string_pair meta[1] = {{"v", "2"}};
    CHECK_OK(lunet_safetensors_write(path, named, 1, meta, 1));
    CHECK(count_entries(".tmp.") == 0);
    size_t n;
    unsigned char *now = slurp(path, &n);
    CHECK(now && n > old_n);
    free(now);
    CHECK_OK(lunet_safetensors_write(path, named, 1, NULL, 0)); /* back to the old bytes */

    /* A write that fails half-way (the file size limit stops it in the data): an error, the old
     * file untouched, the temporary file gone. */
    int64_t big_shape[1] = {1 << 16};
    lunet_tensor *big = NULL;
    CHECK_OK(lunet_tensor_zeros(&big, LUNET_DTYPE_F64, 1, big_shape));
    lunet_named_tensor big_named[1] = {{"big", big}};
    struct rlimit saved, small = {4096, 0};
    getrlimit(RLIMIT_FSIZE, &saved);
    small.rlim_max = saved.rlim_max;
    void (*previous)(int) = signal(SIGXFSZ, SIG_IGN); /* get EFBIG instead of a signal */
    CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
    lunet_status s = lunet_safetensors_write(path, big_named, 1, NULL, 0);
    setrlimit(RLIMIT_FSIZE, &saved);
    signal(SIGXFSZ, previous);
    CHECK(s == LUNET_ERR_IO);
    CHECK(strstr(lunet_last_error(), "writing ") && strstr(lunet_last_error(), ".tmp.") &&
          strstr(lunet_last_error(), "File too large"));
    CHECK(count_entries(".tmp.") == 0);
    now = slurp(path, &n);
    CHECK(now && old && n == old_n && memcmp(now, old, n) == 0);
    free(now);
    lunet_tensor_release(big);

    /* The target is a directory: the rename fails, the directory stays as it was. */
    CHECK(mkdir(dir, 0700) == 0);
    CHECK_FAILS(lunet_safetensors_write(dir, named, 1, NULL, 0), LUNET_ERR_IO, "cannot rename");
    struct stat st;
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode));
    CHECK(count_entries(".tmp.") == 0);
    CHECK(rmdir(dir) == 0);

    /* A directory that does not exist: the temporary file cannot be created. */
    CHECK_FAILS(lunet_safetensors_write(temp_path("missing/x.safetensors"), named, 1, NULL, 0), LUNET_ERR_IO,
                "cannot create the temporary file");

    /* A relative path: the directory synced is ".". */
    char cwd[512];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(temp_dir) == 0);
    CHECK_OK(lunet_safetensors_write("relative.safetensors", named, 1, NULL, 0));
    CHECK(chdir(cwd) == 0);
    CHECK(access(temp_path("relative.safetensors"), F_OK) == 0);
    free(old);
    lunet_tensor_release(t);
}

/* ---- reading: hostile files ------------------------------------------------------------------ */

static void test_read_environment(void) {
    check_read_fails(temp_path("does_not_exist.safetensors"), LUNET_ERR_IO, "No such file or directory");
    check_read_fails(temp_dir, LUNET_ERR_IO, "not a regular file");
    lunet_safetensors *f = (lunet_safetensors *)&f;
    CHECK_FAILS(lunet_safetensors_read(&f, NULL), LUNET_ERR_ARG, "safetensors: path is NULL");
    CHECK(f == NULL);
    lunet_safetensors_free(NULL);
}

static void test_length_field(void) {
    size_t n;
    unsigned char *b;
    check_read_fails(write_bytes("empty.safetensors", "", 0), LUNET_ERR_FORMAT,
                     "the file holds 0 bytes, too few for the 8-byte header length");
    check_read_fails(write_bytes("five.safetensors", "\x02\0\0\0\0", 5), LUNET_ERR_FORMAT,
                     "the file holds 5 bytes");
    const uint64_t tiny[2] = {0, 1};
    for (int i = 0; i < 2; i++) {
        b = st_bytes(&n, tiny[i], "{}      ", 0);
        check_read_fails(write_bytes("tiny.safetensors", b, n), LUNET_ERR_FORMAT,
                         "the smallest header, {}, is 2");
        free(b);
    }
    b = st_bytes(&n, 100000001, "{}      ", 0);
    check_read_fails(write_bytes("huge.safetensors", b, n), LUNET_ERR_FORMAT,
                     "the header length 100000001 is above the limit of 100000000 bytes");
    free(b);
    b = st_bytes(&n, UINT64_MAX, "{}      ", 0);
    check_read_fails(write_bytes("max.safetensors", b, n), LUNET_ERR_FORMAT,
                     "18446744073709551615 is above the limit");
    free(b);
    b = st_bytes(&n, 9, "{}      ", 0);
    check_read_fails(write_bytes("past.safetensors", b, n), LUNET_ERR_FORMAT,
                     "the header length 9 runs past the end of the file (8 bytes after the length)");
    free(b);
    /* A header of exactly "{}" with no padding is valid. */
    lunet_safetensors *f = NULL;
    CHECK_OK(lunet_safetensors_read(&f, st_file("bare.safetensors", "{}", 0)));
    CHECK(f && lunet_safetensors_count(f) == 0);
    lunet_safetensors_free(f);
}

/* Every prefix of a valid file is refused (never read as valid, never a crash); the message
 * says where the file was cut. */
static void test_truncated(void) {
    const double v[6] = {1, 2, 3, 4, 5, 6};
    int64_t shape[2] = {2, 3};
    lunet_tensor *t = tensor_of(LUNET_DTYPE_F32, 2, shape, v);
    lunet_named_tensor named[2] = {{"a", t}, {"b", t}};
    const char *path = temp_path("whole.safetensors");
    CHECK_OK(lunet_safetensors_write(path, named, 2, NULL, 0));
    size_t n;
    unsigned char *bytes = slurp(path, &n);
    if (!bytes) return;
    size_t header_end = 8 + bytes[0];
    int refused = 0;
    for (size_t cut = 0; cut < n; cut++) {
        lunet_safetensors *f = NULL;
        lunet_status s = lunet__safetensors_read_memory(&f, bytes, cut, "cut");
        refused += s == LUNET_ERR_FORMAT && f == NULL;
        lunet_safetensors_free(f);
    }
    CHECK(refused == (int)n);
    check_read_fails(write_bytes("cut_in_length.safetensors", bytes, 7), LUNET_ERR_FORMAT,
                     "the file holds 7 bytes");
    check_read_fails(write_bytes("cut_in_header.safetensors", bytes, header_end - 5), LUNET_ERR_FORMAT,
                     "runs past the end of the file");
    check_read_fails(
        write_bytes("cut_after_header.safetensors", bytes, header_end), LUNET_ERR_FORMAT,
        "tensor \"a\": data_offsets [0, 24] run past the end of the data section, which holds 0 bytes "
        "(is the file truncated?)");
    check_read_fails(
        write_bytes("cut_in_data.safetensors", bytes, n - 1), LUNET_ERR_FORMAT,
        "tensor \"b\": data_offsets [24, 48] run past the end of the data section, which holds 47 bytes");
    free(bytes);
    lunet_tensor_release(t);
}

static void test_bad_json(void) {
    check_header_fails("[{}]    ", 0, "the header does not start with '{' (its first byte is 0x5b)");
    check_header_fails(" {}     ", 0, "the header does not start with '{' (its first byte is 0x20)");
    check_header_fails("{\"a\":}  ", 0, "header byte 5: expected a value, found '}'");
    check_header_fails("{\"a\"    ", 0,
                       "header byte 8: expected ':' after an object key, found the end of the text");
    check_header_fails("{}x     ", 0, "header byte 2: 'x' after the end of the JSON value");
    check_header_fails("{} {}   ", 0, "header byte 3: '{' after the end of the JSON value");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",}}", 0, "header byte 20: expected a string key");
    check_header_fails("{\"a\xff\":1}", 0, "header byte 3: invalid UTF-8 (byte 0xff) in a string");
    check_header_fails("{\"a\\ud800\":1}", 0,
                       "header byte 3: \\uD800 is a high surrogate without a low surrogate");
    check_header_fails("{\"a\tb\":1}", 0, "header byte 3: control character 0x09");
    /* Deep nesting in a field the reader would otherwise ignore. */
    char deep[400];
    int at =
        snprintf(deep, sizeof deep, "{\"a\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1],\"x\":");
    for (int i = 0; i < 100; i++)
        deep[at++] = '[';
    for (int i = 0; i < 100; i++)
        deep[at++] = ']';
    strcpy(deep + at, "}}");
    check_header_fails(deep, 1, "nested more than 64 deep");
}

static void test_bad_entries(void) {
    check_header_fails("{\"a\":1}", 0, "tensor \"a\": the entry is a number, it must be an object");
    check_header_fails("{\"a\":[]}", 0, "tensor \"a\": the entry is an array");
    check_header_fails("{\"a\":{\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                       "tensor \"a\": no \"dtype\" field");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
                       "tensor \"a\": no \"shape\" field");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[]}}", 4,
                       "tensor \"a\": no \"data_offsets\" field");
    check_header_fails("{\"a\":{\"dtype\":5,\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                       "tensor \"a\": \"dtype\" is a number, it must be a string");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":\"[]\",\"data_offsets\":[0,4]}}", 4,
                       "tensor \"a\": \"shape\" is a string, it must be an array");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":{}}}", 4,
                       "\"data_offsets\" is an object, it must be an array");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0]}}", 4,
                       "tensor \"a\": data_offsets has 1 entries, it must be [begin, end]");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,4,8]}}", 8,
                       "data_offsets has 3 entries");
    check_header_fails("{\"a\\u0000b\":{\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}", 1,
                       "tensor name \"a\\u0000b\" contains a NUL character");
    /* Names that would forge a second line or a terminal escape are shown escaped. */
    check_header_fails("{\"x\\n\\u001b[2J\":1}", 0, "tensor \"x\\n\\u001b[2J\": the entry is a number");
}

static void test_bad_dtypes(void) {
    const char *unsupported[] = {"F16", "BF16", "BOOL", "I16", "U16", "U32", "U64", "F8_E4M3", "F8_E5M2"};
    for (size_t i = 0; i < sizeof unsupported / sizeof unsupported[0]; i++) {
        char header[200], want[120];
        snprintf(header, sizeof header, "{\"w.%s\":{\"dtype\":\"%s\",\"shape\":[2],\"data_offsets\":[0,4]}}",
                 unsupported[i], unsupported[i]);
        snprintf(want, sizeof want,
                 "tensor \"w.%s\": dtype %s is not supported (lunet reads F32, F64, I64, I32, I8 and U8)",
                 unsupported[i], unsupported[i]);
        check_header_fails(header, 4, want);
    }
    check_header_fails("{\"w\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       "tensor \"w\": unknown dtype \"f32\"");
    check_header_fails("{\"w\":{\"dtype\":\"\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       "tensor \"w\": unknown dtype \"\"");
    check_header_fails("{\"w\":{\"dtype\":\"F32 \",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
                       "unknown dtype \"F32 \"");
}

static void test_bad_shapes(void) {
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4,
                       "tensor \"w\": shape entry 0 (-1) is negative");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2,1.5],\"data_offsets\":[0,4]}}", 4,
                       "tensor \"w\": shape entry 1 (1.5) is not an integer");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4,
                       "shape entry 0 (1e0) is not an integer");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[\"2\"],\"data_offsets\":[0,4]}}", 4,
                       "shape entry 0 (a string) is not a number");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[null],\"data_offsets\":[0,4]}}", 4,
                       "shape entry 0 (null) is not a number");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[9007199254740993],\"data_offsets\":[0,4]}}", 4,
                       "shape entry 0 (9007199254740993) is too large (above 2^53)");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[123456789012345678901234567890123456789],"
                       "\"data_offsets\":[0,4]}}",
                       4, "shape entry 0 (12345678901234567890123456789012...) is too large");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
                       "tensor \"w\": shape has 9 dims, lunet supports at most 8");
    check_header_fails("{\"w\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,4]}}",
                       4, "tensor \"w\": shape [4294967296, 4294967296] overflows a 64-bit element count");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[9007199254740992,1024],\"data_offsets\":[0,4]}}",
                       4, "tensor \"w\": F32 [9007199254740992, 1024] overflows a 64-bit byte count");
    /* A zero anywhere makes an empty tensor, however large the other entries. */
    lunet_safetensors *f = NULL;
    CHECK_OK(lunet_safetensors_read(
        &f, st_file("zero.safetensors",
                    "{\"w\":{\"dtype\":\"F32\",\"shape\":[9007199254740992,0],\"data_offsets\":[0,0]}}", 0)));
    lunet_safetensors_free(f);
}

static void test_bad_offsets(void) {
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8,
                       "tensor \"w\": data_offsets begin (-8) is negative");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", 8,
                       "tensor \"w\": data_offsets end (8.0) is not an integer");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551624]}}",
                       8, "data_offsets end (18446744073709551624) is too large (above 2^53)");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8,
                       "tensor \"w\": data_offsets [8, 0] end before they begin");
    check_header_fails(
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,100]}}", 8,
        "tensor \"w\": data_offsets [0, 100] run past the end of the data section, which holds 8 bytes");
    check_header_fails("{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[100,108]}}", 8,
                       "data_offsets [100, 108] run past the end");
    /* The message the brief of this format gave as its example. */
    check_header_fails(
        "{\"fc.weight\":{\"dtype\":\"F32\",\"shape\":[10,20],\"data_offsets\":[0,400]}}", 400,
        "tensor \"fc.weight\": data_offsets [0, 400] hold 400 bytes but F32 [10, 20] needs 800");
    check_header_fails("{\"w\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[0,4]}}", 4,
                       "data_offsets [0, 4] hold 4 bytes but I64 [] needs 8");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                       12, "tensor \"b\": data_offsets [4, 12] overlap tensor \"a\" [0, 8]");
    check_header_fails("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                       8, "tensor \"a\": data_offsets [0, 8] overlap tensor \"b\" [0, 8]");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                       20,
                       "bytes [8, 12) of the data section belong to no tensor (a hole before tensor \"b\")");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                       "bytes [0, 4) of the data section belong to no tensor");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 9,
                       "the data section holds 9 bytes but the tensors end at byte 8 (trailing bytes)");
    check_header_fails("{}", 1, "the data section holds 1 bytes but the tensors end at byte 0");
    check_header_fails("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}", 4,
                       "bytes [0, 4) of the data section belong to no tensor");
}

static void test_bad_names_and_metadata(void) {
    check_header_fails("{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                       "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                       2, "header byte 53: duplicate key \"a\" (first at byte 1)");
    check_header_fails("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key \"__metadata__\"");
    check_header_fails("{\"__metadata__\":{\"k\":1}}", 0,
                       "__metadata__ value of \"k\" is a number, it must be a string");
    check_header_fails("{\"__metadata__\":{\"k\":\"v\",\"j\":{}}}", 0,
                       "__metadata__ value of \"j\" is an object");
    check_header_fails("{\"__metadata__\":{\"k\":null}}", 0, "__metadata__ value of \"k\" is null");
    check_header_fails("{\"__metadata__\":[\"k\",\"v\"]}", 0,
                       "__metadata__ is an array, it must be an object of strings");
    check_header_fails("{\"__metadata__\":\"k=v\"}", 0, "__metadata__ is a string");
    check_header_fails("{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0,
                       "__metadata__ value \"a\\u0000b\" contains a NUL");
    check_header_fails("{\"__metadata__\":{\"a\\u0000\":\"v\"}}", 0,
                       "__metadata__ key \"a\\u0000\" contains a NUL");
    /* "__metadata__x" and "__metadata" are ordinary tensor names. */
    check_header_fails("{\"__metadata__x\":{}}", 0, "tensor \"__metadata__x\": no \"dtype\" field");
}

/* Every byte of a valid file replaced by a few values: the reader accepts or refuses, never
 * more (the sanitizer build checks the "never crashes" part). */
static void test_corrupted_bytes(void) {
    const double v[4] = {1, 2, 3, 4};
    int64_t shape[2] = {2, 2};
    lunet_tensor *t = tensor_of(LUNET_DTYPE_I32, 2, shape, v);
    lunet_named_tensor named[2] = {{"a", t}, {"b\xc3\xa9", t}};
    lunet_string_pair meta[1] = {{"k", "v\\u"}};
    const char *path = temp_path("corrupt_me.safetensors");
    CHECK_OK(lunet_safetensors_write(path, named, 2, meta, 1));
    size_t n;
    unsigned char *bytes = slurp(path, &n);
    if (!bytes) return;
    const unsigned char values[] = {0x00, 0x01, 0x22, 0x2c, 0x30, 0x5b, 0x5c,
                                    0x7b, 0x7d, 0x80, 0xff, '9',  '-',  'e'};
    int ok = 0, refused = 0, other = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char saved = bytes[i];
        for (size_t k = 0; k < sizeof values; k++) {
            bytes[i] = values[k];
            lunet_safetensors *f = NULL;
            lunet_status s = lunet__safetensors_read_memory(&f, bytes, n, "corrupt");
            if (s == LUNET_OK && f)
                ok++;
            else if (s == LUNET_ERR_FORMAT && !f &&
                     strncmp(lunet_last_error(), "safetensors: corrupt: ", 22) == 0)
                refused++;
            else
                other++;
            lunet_safetensors_free(f);
        }
        bytes[i] = saved;
    }
    CHECK(other == 0);
    CHECK(ok > 0 && refused > 0); /* data bytes may be anything; header bytes mostly may not */
    free(bytes);
    lunet_tensor_release(t);
}

/* ---- main ------------------------------------------------------------------------------------ */

static void remove_temp_dir(void) {
    DIR *d = opendir(temp_dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) unlink(temp_path(e->d_name));
    if (d) closedir(d);
    if (rmdir(temp_dir) != 0) fprintf(stderr, "test_safetensors: could not remove %s\n", temp_dir);
}

int main(void) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/lunet_test_safetensors_XXXXXX");
    if (!mkdtemp(temp_dir)) {
        perror(temp_dir);
        return 1;
    }
    RUN(test_json_document);
    RUN(test_json_strings);
    RUN(test_json_numbers);
    RUN(test_json_numbers_round_like_strtod);
    RUN(test_json_structure);
    RUN(test_json_limits);
    RUN(test_json_writer_and_quote);
    RUN(test_every_dtype);
    RUN(test_exact_bytes);
    RUN(test_shapes);
    RUN(test_views_are_stored_contiguous);
    RUN(test_metadata);
    RUN(test_many_and_large);
    RUN(test_foreign_header);
    RUN(test_write_refusals);
    RUN(test_atomic_write);
    RUN(test_read_environment);
    RUN(test_length_field);
    RUN(test_truncated);
    RUN(test_bad_json);
    RUN(test_bad_entries);
    RUN(test_bad_dtypes);
    RUN(test_bad_shapes);
    RUN(test_bad_offsets);
    RUN(test_bad_names_and_metadata);
    RUN(test_corrupted_bytes);
    remove_temp_dir();
    return check_report("test_safetensors");
}
