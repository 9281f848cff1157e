/* test_infer.c: the server's inference bodies (core/src/serve/infer.h).  The packed decoder the
 * server runs (infer_read + infer_decode) is held to the plain reference (infer_read_reference
 * + infer_decode: one JSON value per number) on many generated bodies, valid and broken: the
 * same status and message for each, and the same bytes when a body is accepted.  Then the
 * JSON parser's packed arrays on their own, and the messages and byte positions of errors. */
#include "check.h"
#include "json.h"
#include "serve/infer.h"

#include <float.h>
#include <stdint.h>

/* ---- models and bodies ------------------------------------------------------------------------ */

/* A model's input for one sample: (4), (2, 3) or (1), in f32 or f64. */
static infer_tensor_info model_input(int which, lunet_dtype dtype) {
    infer_tensor_info in = {.name = "input", .dtype = dtype};
    if (which == 0)
        in.ndim = 1, in.shape[0] = 4, in.count = 4;
    else if (which == 1)
        in.ndim = 2, in.shape[0] = 2, in.shape[1] = 3, in.count = 6;
    else
        in.ndim = 1, in.shape[0] = 1, in.count = 1;
    return in;
}

static const infer_tensor_info model_output = {
    .name = "output", .dtype = LUNET_DTYPE_F32, .ndim = 1, .shape = {2}, .count = 2};

static uint64_t next_random(uint64_t *x) {
    *x = *x * 6364136223846793005ull + 1442695040888963407ull;
    return *x >> 17;
}

static unsigned below(uint64_t *x, unsigned n) { return (unsigned)(next_random(x) % n); }

/* The byte position of the first needle in body. */
static size_t at(const char *body, const char *needle) {
    const char *p = strstr(body, needle);
    return p ? (size_t)(p - body) : SIZE_MAX;
}

static void put_text(lunet__json_writer *w, const char *s) { lunet__json_write_raw(w, s, strlen(s)); }

/* Whitespace between tokens: none mostly, any of JSON's four sometimes. */
static void put_blank(lunet__json_writer *w, uint64_t *x) {
    static const char *const blanks[] = {" ", "\n", "\t", "\r\n  ", "  "};
    if (below(x, 8) == 0) put_text(w, blanks[below(x, 5)]);
}

/* Literals that sit on an edge: of a datatype's range, of a double's, of the fast path's. */
static const char *const edge_values[] = {"0",
                                          "-0",
                                          "1",
                                          "-1",
                                          "0.0",
                                          "-0.0",
                                          "1.0",
                                          "1e2",
                                          "1E2",
                                          "1e+2",
                                          "1e-2",
                                          "0.5",
                                          "255",
                                          "256",
                                          "-128",
                                          "-129",
                                          "127",
                                          "128",
                                          "2147483647",
                                          "2147483648",
                                          "-2147483648",
                                          "-2147483649",
                                          "9223372036854775807",
                                          "9223372036854775808",
                                          "-9223372036854775808",
                                          "-9223372036854775809",
                                          "18446744073709551615",
                                          "18446744073709551616",
                                          "99999999999999999999",
                                          "12345678901234567890123",
                                          "0.00392156886",
                                          "0.603921592",
                                          "3.4028234663852886e38",
                                          "3.4028235e38",
                                          "3.40282357e38",
                                          "-3.4028234663852886e38",
                                          "1e38",
                                          "1e39",
                                          "1.7976931348623157e308",
                                          "1.7976931348623159e308",
                                          "1e309",
                                          "-1e400",
                                          "1e-400",
                                          "4.9e-324",
                                          "2.2250738585072014e-308",
                                          "0.000000000000000000000000000001",
                                          "1234567.125",
                                          "0.1",
                                          "100000000000000000000000.5",
                                          "9007199254740993",
                                          "9007199254740992",
                                          "9007199254740993.0",
                                          "1234567890123456789",
                                          "0.12345678901234567890123",
                                          "1e-7",
                                          "123456789",
                                          "12345678",
                                          "0.000012345678",
                                          "-0.99999999999999999999"};
enum { EDGE_VALUES = sizeof edge_values / sizeof *edge_values };

/* A literal for a body of datatype t: mostly one t holds, sometimes an edge or a random
 * decimal of any size. */
static void random_literal(char *field, size_t size, uint64_t *x, infer_datatype t) {
    unsigned pick = below(x, 100);
    if (pick < 8) {
        snprintf(field, size, "%s", edge_values[below(x, EDGE_VALUES)]);
        return;
    }
    if (pick < 14) {
        random_decimal(field, size, x, (int)below(x, 8));
        return;
    }
    if (pick < 45) {
        snprintf(field, size, "0");
        return;
    }
    switch (t) {
    case INFER_UINT8:
        snprintf(field, size, "%u", below(x, 256));
        break;
    case INFER_INT8:
        snprintf(field, size, "%d", (int)below(x, 256) - 128);
        break;
    case INFER_INT32:
        snprintf(field, size, "%d", (int32_t)(uint32_t)next_random(x));
        break;
    case INFER_INT64:
        snprintf(field, size, "%lld", (long long)(next_random(x) << 17 ^ next_random(x)));
        break;
    default:
        snprintf(field, size, "%.9g", (double)(float)((double)below(x, 256) / 255.0));
        break;
    }
}

/* The values [lo, hi) of lits as JSON arrays nested at random, empty arrays now and then. */
static void put_random_nesting(lunet__json_writer *w, uint64_t *x, char (*lits)[48], int lo, int hi,
                               int depth) {
    put_text(w, "[");
    bool first = true;
    for (int i = lo; i < hi;) {
        if (!first) put_text(w, ",");
        first = false;
        put_blank(w, x);
        int take = depth < 4 && below(x, 4) == 0 ? 1 + (int)below(x, (unsigned)(hi - i)) : 1;
        if (take > 1 || (depth < 4 && below(x, 6) == 0))
            put_random_nesting(w, x, lits, i, i + take, depth + 1);
        else
            put_text(w, lits[i]);
        i += take;
        if (below(x, 40) == 0) put_text(w, ",[]");
    }
    put_blank(w, x);
    put_text(w, "]");
}

/* The values [lo, hi) nested as shape says (dims[0..ndim)); flat when ndim is 1. */
static void put_shaped(lunet__json_writer *w, uint64_t *x, char (*lits)[48], int lo, const int64_t *dims,
                       int ndim) {
    put_text(w, "[");
    int64_t inner = 1;
    for (int d = 1; d < ndim; d++)
        inner *= dims[d];
    for (int64_t i = 0; i < dims[0]; i++) {
        if (i) put_text(w, ",");
        put_blank(w, x);
        if (ndim > 1)
            put_shaped(w, x, lits, lo + (int)(i * inner), dims + 1, ndim - 1);
        else
            put_text(w, lits[lo + i]);
    }
    put_text(w, "]");
}

/* Values [lo, hi) in one of three layouts: flat, nested by dims (when they are dims' count),
 * nested at random. */
static void put_values(lunet__json_writer *w, uint64_t *x, char (*lits)[48], int lo, int hi,
                       const int64_t *dims, int ndim, unsigned layout) {
    int64_t flat = hi - lo, count = 1;
    for (int d = 0; d < ndim; d++)
        count *= dims[d];
    if (layout == 0 || hi == lo || (layout == 1 && count != flat))
        put_shaped(w, x, lits, lo, &flat, 1);
    else if (layout == 1)
        put_shaped(w, x, lits, lo, dims, ndim);
    else
        put_random_nesting(w, x, lits, lo, hi, 0);
}

enum { MAX_LITS = 64 };

/* A body for model input in: OIP v2 (any datatype) or TF predict (rows or columns), of 1 to 4
 * samples; now and then a value too few or too many. */
static void put_random_body(lunet__json_writer *w, uint64_t *x, const infer_tensor_info *in,
                            infer_protocol *protocol) {
    static char lits[MAX_LITS][48];
    int64_t rows = 1 + below(x, 4);
    int n = (int)(rows * in->count);
    unsigned miscount = below(x, 30);
    n += miscount == 0 ? -1 : miscount == 1 ? 1 : 0;
    infer_datatype t =
        below(x, 2) ? infer_datatype_of(in->dtype) : (infer_datatype)below(x, INFER_DATATYPE_COUNT);
    *protocol = below(x, 3) ? INFER_OIP : INFER_TF_PREDICT;
    if (*protocol == INFER_TF_PREDICT) t = infer_datatype_of(in->dtype);
    for (int i = 0; i < n; i++)
        random_literal(lits[i], sizeof lits[i], x, t);
    int64_t dims[LUNET_MAX_DIMS + 1] = {rows};
    for (int d = 0; d < in->ndim; d++)
        dims[d + 1] = in->shape[d];
    unsigned layout = below(x, 3);
    if (*protocol == INFER_OIP) {
        put_text(w, "{\"inputs\":[{\"name\":\"input\",\"shape\":[");
        char num[32];
        for (int d = 0; d <= in->ndim; d++) {
            snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)dims[d]);
            put_text(w, num);
        }
        put_text(w, "],\"datatype\":\"");
        put_text(w, infer_datatype_name(t));
        put_text(w, "\",");
        put_blank(w, x);
        put_text(w, "\"data\":");
        put_blank(w, x);
        put_values(w, x, lits, 0, n, dims, in->ndim + 1, layout);
        put_text(w, "}]}");
        return;
    }
    if (below(x, 2)) { /* rows: {"instances": [sample, ...]}, a sample maybe {"input": sample} */
        bool named = below(x, 4) == 0;
        put_text(w, "{\"instances\":");
        put_blank(w, x);
        put_text(w, "[");
        for (int64_t r = 0; r < rows; r++) {
            int lo = (int)(r * in->count), hi = r == rows - 1 ? n : lo + (int)in->count;
            if (r) put_text(w, ",");
            if (named) put_text(w, "{\"input\":");
            if (in->count == 1 && hi - lo == 1 && below(x, 2))
                put_text(w, lits[lo]); /* a sample is a number */
            else
                put_values(w, x, lits, lo, hi, dims + 1, in->ndim, layout);
            if (named) put_text(w, "}");
        }
        put_text(w, "]}");
        return;
    }
    bool named = below(x, 3) == 0; /* columns: {"inputs": batch} or {"inputs": {"input": batch}} */
    put_text(w, named ? "{\"inputs\":{\"input\":" : "{\"inputs\":");
    put_values(w, x, lits, 0, n, dims, in->ndim + 1, layout);
    put_text(w, named ? "}}" : "}");
}

#define OIP_HEAD(datatype)                                                                                   \
    "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,4],\"datatype\":\"" datatype "\",\"data\":"
#define OIP_HEAD_ONE "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,1],\"datatype\":\"FP32\",\"data\":"

/* One of model_input's models in *in, and a body for it, with a NUL after it (not counted in
 * w->len) for strstr. */
static void random_body(lunet__json_writer *w, uint64_t *x, infer_tensor_info *in, infer_protocol *protocol) {
    *in = model_input((int)below(x, 3), below(x, 2) ? LUNET_DTYPE_F32 : LUNET_DTYPE_F64);
    put_random_body(w, x, in, protocol);
    lunet__json_write_raw(w, "", 1);
    w->len--;
}

/* ---- holding the packed path to the reference ------------------------------------------------- */

typedef struct tally {
    int accepted, refused_reading, refused_decoding;
    int accepted_packed; /* accepted, with the values in one packed array */
} tally;

/* Reads and decodes body both ways: the same status and message from each step, the same
 * request, and the same bytes when both accept it. */
static void check_same(const char *body, size_t len, infer_protocol protocol, const infer_tensor_info *in,
                       tally *t) {
    infer_request fast, ref;
    int fast_status = infer_read(&fast, protocol, in, &model_output, body, len, len);
    int ref_status = infer_read_reference(&ref, protocol, in, &model_output, body, len, len);
    bool same = fast_status == ref_status && strcmp(fast.error, ref.error) == 0;
    CHECK(same);
    if (!same)
        fprintf(stderr, "  reading %.*s\n  packed: %d %s\n  reference: %d %s\n", (int)(len < 600 ? len : 600),
                body, fast_status, fast.error, ref_status, ref.error);
    if (fast_status || ref_status) {
        t->refused_reading++;
        infer_request_free(&fast);
        infer_request_free(&ref);
        return;
    }
    CHECK(fast.rows == ref.rows && fast.datatype == ref.datatype &&
          fast.data_is_instances == ref.data_is_instances);
    bool packed = fast.data != LUNET__JSON_NONE && lunet__json_is_packed(fast.doc, fast.data);
    size_t bytes = (size_t)(ref.rows * in->count) * lunet_dtype_size(in->dtype);
    unsigned char *a = malloc(bytes + 1), *b = malloc(bytes + 1);
    if (a && b) {
        memset(a, 0xFF, bytes); /* NaN: no JSON number decodes to it, so a value not written shows */
        memset(b, 0xFF, bytes);
        fast_status = infer_decode(&fast, in, a);
        ref_status = infer_decode(&ref, in, b);
        same = fast_status == ref_status && strcmp(fast.error, ref.error) == 0;
        CHECK(same);
        if (!same)
            fprintf(stderr, "  decoding %.*s\n  packed: %d %s\n  reference: %d %s\n",
                    (int)(len < 600 ? len : 600), body, fast_status, fast.error, ref_status, ref.error);
        if (!fast_status && !ref_status) {
            CHECK(memcmp(a, b, bytes) == 0);
            t->accepted++;
            t->accepted_packed += packed;
        } else {
            t->refused_decoding++;
        }
    }
    CHECK(a && b);
    free(a);
    free(b);
    infer_request_free(&fast);
    infer_request_free(&ref);
}

/* Generated bodies as they are: valid ones, and ones with a wrong count or an out-of-range
 * value, both ways. */
static void test_generated_bodies(void) {
    tally t = {0};
    uint64_t x = 11;
    for (int i = 0; i < 6000; i++) {
        infer_tensor_info in;
        lunet__json_writer w = {0};
        infer_protocol protocol;
        random_body(&w, &x, &in, &protocol);
        CHECK(!w.failed);
        check_same(w.data, w.len, protocol, &in, &t);
        lunet__json_writer_free(&w);
    }
    /* The generator reaches every outcome, and the packed path is what ran. */
    CHECK(t.accepted > 1000 && t.refused_decoding > 500);
    CHECK(t.accepted_packed > t.accepted / 2);
    printf("  generated: %d accepted (%d packed whole), %d refused reading, %d refused decoding\n",
           t.accepted, t.accepted_packed, t.refused_reading, t.refused_decoding);
}

/* Tokens that break a body, or nearly do. */
static const char *const bad_tokens[] = {"NaN",
                                         "Infinity",
                                         "-Infinity",
                                         "01",
                                         "1.",
                                         ".5",
                                         "+1",
                                         "1e",
                                         "-",
                                         ",",
                                         "[",
                                         "]",
                                         "]]",
                                         "[[",
                                         "\"x\"",
                                         "null",
                                         "true",
                                         "{}",
                                         " ",
                                         "0x10",
                                         "1e999",
                                         "00",
                                         "-01",
                                         "1.e5",
                                         "1E",
                                         "--1",
                                         "\xc3\xa9",
                                         "\x01",
                                         ",]",
                                         "[,",
                                         "1,,2",
                                         "-0",
                                         "0e",
                                         "1e+",
                                         "e5",
                                         "1.5.2",
                                         "\"",
                                         "{",
                                         "}",
                                         ":",
                                         "1 2",
                                         "[[[[[[[[[[[[[[[[[[[[",
                                         "]]]]]]]]]]]]]]]]]]]]"};
enum { BAD_TOKENS = sizeof bad_tokens / sizeof *bad_tokens };

/* The same bodies broken: cut short, a byte changed, a token put in, a stretch removed or
 * repeated; mostly inside the values, where the packed path reads. */
static void test_broken_bodies(void) {
    tally t = {0};
    uint64_t x = 12;
    static const char bytes[] = "[]{},:-+.eE0123456789 \"nNaI\t\n";
    for (int i = 0; i < 12000; i++) {
        infer_tensor_info in;
        lunet__json_writer w = {0};
        infer_protocol protocol;
        random_body(&w, &x, &in, &protocol);
        if (w.failed) continue;
        /* Where the values start: after "data", "instances" or "inputs". */
        const char *keys[] = {"\"data\"", "\"instances\"", "\"inputs\""};
        size_t from = 0;
        for (int k = 0; k < 3; k++) {
            const char *at = strstr(w.data, keys[k]);
            if (at && (protocol == INFER_TF_PREDICT || k == 0)) from = (size_t)(at - w.data);
        }
        size_t at = below(&x, 4) ? from + below(&x, (unsigned)(w.len - from)) : below(&x, (unsigned)w.len);
        lunet__json_writer m = {0};
        switch (below(&x, 5)) {
        case 0: /* cut */
            lunet__json_write_raw(&m, w.data, at);
            break;
        case 1: /* a byte changed */
            lunet__json_write_raw(&m, w.data, w.len);
            m.data[at] = bytes[below(&x, sizeof bytes - 1)];
            break;
        case 2: { /* a token put in */
            const char *token = bad_tokens[below(&x, BAD_TOKENS)];
            lunet__json_write_raw(&m, w.data, at);
            put_text(&m, token);
            lunet__json_write_raw(&m, w.data + at, w.len - at);
            break;
        }
        case 3: { /* a stretch removed */
            size_t n = 1 + below(&x, 6);
            lunet__json_write_raw(&m, w.data, at);
            if (at + n < w.len) lunet__json_write_raw(&m, w.data + at + n, w.len - at - n);
            break;
        }
        default: { /* a stretch repeated */
            size_t n = 1 + below(&x, 8);
            if (at + n > w.len) n = w.len - at;
            lunet__json_write_raw(&m, w.data, at + n);
            lunet__json_write_raw(&m, w.data + at, w.len - at);
            break;
        }
        }
        CHECK(!m.failed);
        if (!m.failed) check_same(m.data ? m.data : "", m.len, protocol, &in, &t);
        lunet__json_writer_free(&m);
        lunet__json_writer_free(&w);
    }
    CHECK(t.accepted > 500 && t.refused_reading > 3000 && t.refused_decoding > 200);
    printf("  broken: %d accepted, %d refused reading, %d refused decoding\n", t.accepted, t.refused_reading,
           t.refused_decoding);
}

/* Values nested deeper than the server allows (MAX_DEPTH, 16), by a little and by 100,000:
 * refused both ways at once, and without recursing that deep. */
static void test_deep_nesting(void) {
    tally t = {0};
    infer_tensor_info in = model_input(2, LUNET_DTYPE_F32);
    static const char *const heads[] = {OIP_HEAD_ONE,
                                        "{\"instances\":", "{\"inputs\":", "{\"inputs\":{\"input\":"};
    static const char *const tails[] = {"}]}", "}", "}", "}}"};
    const int around[] = {3, 1, 1, 2}; /* the containers around the values */
    const int depths[] = {10, 12, 13, 14, 15, 16, 17, 40, 100000};
    int shallow = 0;
    for (size_t k = 0; k < sizeof depths / sizeof *depths; k++) {
        for (int form = 0; form < 4; form++) {
            lunet__json_writer w = {0};
            put_text(&w, heads[form]);
            for (int d = 0; d < depths[k]; d++)
                put_text(&w, "[");
            put_text(&w, "0");
            for (int d = 0; d < depths[k]; d++)
                put_text(&w, "]");
            put_text(&w, tails[form]);
            CHECK(!w.failed);
            int before = t.refused_reading;
            check_same(w.data, w.len, form == 0 ? INFER_OIP : INFER_TF_PREDICT, &in, &t);
            /* The innermost array has around + depth - 1 containers around it; 16 fail. */
            bool too_deep = around[form] + depths[k] - 1 >= 16;
            CHECK(too_deep == (t.refused_reading > before));
            shallow += !too_deep;
            lunet__json_writer_free(&w);
        }
    }
    CHECK(t.accepted == shallow && shallow == 17);
    /* Unclosed, too: the message names the first array too deep. */
    lunet__json_writer w = {0};
    put_text(&w, OIP_HEAD_ONE);
    for (int d = 0; d < 100000; d++)
        put_text(&w, "[");
    infer_request r;
    int status = infer_read(&r, INFER_OIP, &in, &model_output, w.data, w.len, w.len);
    char want[96];
    snprintf(want, sizeof want, "request body byte %zu: arrays and objects nested more than 16 deep",
             strlen(OIP_HEAD_ONE) + 13);
    CHECK(status == 400 && strstr(r.error, want));
    infer_request_free(&r);
    lunet__json_writer_free(&w);
}

/* One image of Fashion-MNIST's size, as bench/serve_setup.lua writes it, in every datatype
 * and nesting: the sizes the server sees. */
static void test_image_sized_bodies(void) {
    tally t = {0};
    uint64_t x = 13;
    infer_tensor_info in = {
        .name = "input", .dtype = LUNET_DTYPE_F32, .ndim = 3, .shape = {1, 28, 28}, .count = 784};
    for (int i = 0; i < 48; i++) {
        in.dtype = i % 2 ? LUNET_DTYPE_F64 : LUNET_DTYPE_F32;
        infer_datatype t_ = (infer_datatype)(i / 2 % INFER_DATATYPE_COUNT);
        lunet__json_writer w = {0};
        put_text(&w, "{\"inputs\":[{\"name\":\"input\",\"shape\":[1,1,28,28],\"datatype\":\"");
        put_text(&w, infer_datatype_name(t_));
        put_text(&w, "\",\"data\":");
        put_text(&w, i / 12 % 2 ? "[[[" : "[");
        for (int k = 0; k < 784; k++) {
            char lit[48];
            if (t_ == INFER_FP32 || t_ == INFER_FP64) {
                unsigned pixel = below(&x, 3) ? 0 : below(&x, 256);
                snprintf(lit, sizeof lit, "%.9g", (double)((float)pixel / 255.0f));
            } else {
                snprintf(lit, sizeof lit, "%u", below(&x, 100));
            }
            if (i / 12 % 2 && k)
                put_text(&w, k % 28 == 0 ? "],[" : ",");
            else if (k)
                put_text(&w, ",");
            put_text(&w, lit);
        }
        put_text(&w, i / 12 % 2 ? "]]]}]}" : "]}]}");
        check_same(w.data, w.len, INFER_OIP, &in, &t);
        lunet__json_writer_free(&w);
    }
    CHECK(t.accepted == 48 && t.accepted_packed == 48);
}

/* ---- packed arrays in the parser -------------------------------------------------------------- */

static const char *const data_key[] = {"data", NULL};

/* Parses text with "data" packed; NULL when it fails. */
static lunet__json_doc *parse_packed(const char *text) {
    lunet__json_doc *doc = NULL;
    lunet__json_limits limits = {.max_depth = 8, .max_values = 64, .pack_keys = data_key};
    return lunet__json_parse(&doc, text, strlen(text), &limits, "test") == LUNET_OK ? doc : NULL;
}

static void test_packed_arrays(void) {
    const char *text = "{\"shape\":[2,2],\"data\":[[1,-2.5],[],[3e2, 0]],\"more\":{\"data\":[\"x\",1]}}";
    lunet__json_doc *doc = parse_packed(text);
    CHECK(doc != NULL);
    if (!doc) return;
    lunet__json_ref shape = lunet__json_get(doc, 0, "shape"), data = lunet__json_get(doc, 0, "data");
    lunet__json_ref other = lunet__json_get(doc, lunet__json_get(doc, 0, "more"), "data");
    /* Only the key named packs, and only an array of numbers. */
    CHECK(!lunet__json_is_packed(doc, shape) && lunet__json_count(doc, shape) == 2);
    CHECK(!lunet__json_is_packed(doc, other) && lunet__json_count(doc, other) == 2);
    CHECK(lunet__json_type_of(doc, lunet__json_first(doc, other)) == LUNET__JSON_STRING);
    CHECK(lunet__json_is_packed(doc, data) && lunet__json_type_of(doc, data) == LUNET__JSON_ARRAY);
    CHECK(lunet__json_count(doc, data) == 3 && lunet__json_packed_numbers(doc, data) == 4);
    CHECK(lunet__json_first(doc, data) == LUNET__JSON_NONE);
    CHECK(lunet__json_pos(doc, data) == (size_t)(strstr(text, "[[") - text));
    lunet__json_numbers it = lunet__json_numbers_of(doc, data);
    lunet__json_number n;
    const double values[] = {1, -2.5, 300, 0};
    const size_t elements[] = {0, 0, 2, 2};
    const char *literals[] = {"1", "-2.5", "3e2", "0"};
    const size_t positions[] = {at(text, "[[1") + 2, at(text, "-2.5"), at(text, "3e2"), at(text, " 0]") + 1};
    int i = 0;
    for (; i < 4 && lunet__json_numbers_next(&it, &n); i++) {
        CHECK(n.value == values[i] && n.element == elements[i] && n.pos == positions[i]);
        CHECK(n.len == strlen(literals[i]) && memcmp(n.text, literals[i], n.len) == 0);
        CHECK(n.integer == (i == 0 || i == 3) && n.negative == (i == 1));
    }
    CHECK(i == 4);
    CHECK(!lunet__json_numbers_next(&it, &n)); /* and stays at the end */
    lunet__json_free(doc);

    /* Integers as written: magnitude exact to 19 digits, saturated past them. */
    doc = parse_packed("{\"data\":[9223372036854775808,-0,18446744073709551615,99999999999999999999]}");
    CHECK(doc != NULL);
    if (doc) {
        it = lunet__json_numbers_of(doc, lunet__json_get(doc, 0, "data"));
        CHECK(lunet__json_numbers_next(&it, &n) && n.magnitude == 9223372036854775808u && !n.negative);
        CHECK(lunet__json_numbers_next(&it, &n) && n.magnitude == 0 && n.negative && signbit(n.value));
        CHECK(lunet__json_numbers_next(&it, &n) && n.magnitude == UINT64_MAX &&
              n.value == 18446744073709551615.0);
        CHECK(lunet__json_numbers_next(&it, &n) && n.magnitude == UINT64_MAX && n.value == 1e20);
        lunet__json_free(doc);
    }
    /* An empty array and a non-array under the key. */
    doc = parse_packed("{\"data\":[],\"x\":{\"data\":5}}");
    CHECK(doc && lunet__json_is_packed(doc, lunet__json_get(doc, 0, "data")));
    if (doc) {
        it = lunet__json_numbers_of(doc, lunet__json_get(doc, 0, "data"));
        CHECK(!lunet__json_numbers_next(&it, &n));
        lunet__json_ref five = lunet__json_get(doc, lunet__json_get(doc, 0, "x"), "data");
        CHECK(lunet__json_type_of(doc, five) == LUNET__JSON_NUMBER && !lunet__json_is_packed(doc, five));
        it = lunet__json_numbers_of(doc, five); /* not packed: no numbers */
        CHECK(!lunet__json_numbers_next(&it, &n));
        lunet__json_free(doc);
    }
}

/* A packed array's numbers read exactly as the same numbers read as values (strtod's bits). */
static void test_packed_numbers_match_values(void) {
    uint64_t x = 14;
    lunet__json_writer w = {0};
    put_text(&w, "{\"data\":[");
    enum { count = 6000 };
    for (int i = 0; i < count; i++) {
        char field[48];
        if (i < EDGE_VALUES)
            snprintf(field, sizeof field, "%s", edge_values[i]);
        else
            random_decimal(field, sizeof field, &x, i);
        if (i) put_text(&w, i % 7 ? "," : " ,\n");
        put_text(&w, field);
    }
    put_text(&w, "]}");
    lunet__json_doc *packed = NULL, *plain = NULL;
    lunet__json_limits limits = {.max_depth = 4, .max_values = 2 * count, .pack_keys = data_key};
    CHECK_OK(lunet__json_parse(&packed, w.data, w.len, &limits, "packed"));
    limits.pack_keys = NULL;
    CHECK_OK(lunet__json_parse(&plain, w.data, w.len, &limits, "plain"));
    if (packed && plain) {
        lunet__json_numbers it = lunet__json_numbers_of(packed, lunet__json_get(packed, 0, "data"));
        lunet__json_number n;
        int i = 0, mismatches = 0;
        for (lunet__json_ref v = lunet__json_first(plain, lunet__json_get(plain, 0, "data"));
             v != LUNET__JSON_NONE; v = lunet__json_next(plain, v), i++) {
            if (!lunet__json_numbers_next(&it, &n)) break;
            const char *literal = lunet__json_number_text(plain, v);
            double d;
            if (!lunet__json_get_f64(&d, plain, v))
                d = literal[0] == '-' ? -INFINITY : INFINITY; /* overflows */
            bool differ = memcmp(&d, &n.value, sizeof d) != 0 || n.pos != lunet__json_pos(plain, v) ||
                          n.len != strlen(literal) || memcmp(n.text, literal, n.len) != 0;
            if (differ && mismatches++ < 5)
                fprintf(stderr, "  %s: value %.17g at %zu, packed %.17g at %zu (%.*s)\n", literal, d,
                        lunet__json_pos(plain, v), n.value, n.pos, (int)n.len, n.text);
        }
        CHECK(i == count && mismatches == 0);
    }
    lunet__json_free(packed);
    lunet__json_free(plain);
    lunet__json_writer_free(&w);
}

/* ---- messages --------------------------------------------------------------------------------- */

/* body read and decoded for in (the 4-value model unless given), OIP or TF, must fail with
 * want in its message, on both paths (check_same holds them to the same message). */
static void check_message(infer_protocol protocol, const char *body, const char *want) {
    infer_tensor_info in = model_input(0, LUNET_DTYPE_F32);
    tally t = {0};
    check_same(body, strlen(body), protocol, &in, &t);
    infer_request r;
    int status = infer_read(&r, protocol, &in, &model_output, body, strlen(body), strlen(body));
    float dst[64];
    if (!status && r.rows * in.count <= 64) status = infer_decode(&r, &in, dst);
    bool found = status == 400 && strstr(r.error, want) != NULL;
    CHECK(found);
    if (!found) fprintf(stderr, "  %s\n  gave %d \"%s\", expected \"%s\"\n", body, status, r.error, want);
    infer_request_free(&r);
}

/* What a bad body must say, on both paths.  Where a message names a byte, want holds "%zu"
 * for it: the position of needle in the body plus skip. */
static const struct {
    infer_protocol protocol;
    const char *body, *want, *needle;
    size_t skip;
} message_cases[] = {
    /* The grammar, in the values. */
    {INFER_OIP, OIP_HEAD("FP32") "[0,0,01,0]}]}", "request body byte %zu: a number with a leading zero", "01",
     0},
    {INFER_OIP, OIP_HEAD("FP32") "[0,NaN,0,0]}]}", "request body byte %zu: expected a value, found 'N'",
     "NaN", 0},
    {INFER_OIP, OIP_HEAD("FP32") "[0,1.,0,0]}]}",
     "request body byte %zu: expected a digit after the decimal point, found ','", "1.,", 2},
    {INFER_OIP, OIP_HEAD("FP32") "[0,0,0,0,]}]}", "request body byte %zu: expected a value, found ']'", ",]",
     1},
    {INFER_OIP, OIP_HEAD("FP32") "[0,0,0,0",
     "request body byte %zu: expected ']' or ',' in an array, found the end of the text", "0,0,0,0", 7},
    {INFER_TF_PREDICT, "{\"instances\":[[1,2,3,4],[1,2,03,4]]}",
     "request body byte %zu: a number with a leading zero", "03", 0},
    {INFER_OIP, OIP_HEAD("FP32") "[0,\"x\",0,0]}]}",
     "inputs[0].data holds a string; it must hold only numbers", NULL, 0},
    /* Values a datatype cannot hold: which value, where, and what it is. */
    {INFER_OIP, OIP_HEAD("FP32") "[0,[1,1e39],0]}]}",
     "inputs[0].data value 2 (byte %zu) is 1e39, which is out of FP32's range", "1e39", 0},
    {INFER_OIP, OIP_HEAD("FP64") "[0,0,0,-1e309]}]}",
     "inputs[0].data value 3 (byte %zu) is -1e309, which is out of FP64's range", "-1e309", 0},
    {INFER_OIP, OIP_HEAD("UINT8") "[0,255,256,0]}]}",
     "inputs[0].data value 2 (byte %zu) is 256, which is not UINT8 (whole numbers from 0 to 255)", "256", 0},
    {INFER_OIP, OIP_HEAD("INT8") "[0,1.0,0,0]}]}",
     "inputs[0].data value 1 (byte %zu) is 1.0, which is not INT8 (whole numbers from -128 to 127)", "1.0",
     0},
    {INFER_OIP, OIP_HEAD("INT64") "[0,0,0,-9223372036854775809]}]}",
     "value 3 (byte %zu) is -9223372036854775809, which is not INT64", "-9", 0},
    {INFER_OIP, OIP_HEAD("INT32") "[0,0,0,123456789012345678901234567890123456789012345678901234567890]}]}",
     "is 1234567890123456789012345678901234567890..., which is not INT32", NULL, 0},
    {INFER_TF_PREDICT, "{\"instances\":[[1,2,3,4],[1,2,1e39,4]]}",
     "instances[1] value 2 (byte %zu) is 1e39, which is out of FP32's range", "1e39", 0},
    /* Counts: of the whole, and of a row. */
    {INFER_OIP, OIP_HEAD("FP32") "[[0,0],[0]]}]}",
     "inputs[0].data has 3 values; its shape needs 4 (1 samples of 4)", NULL, 0},
    {INFER_TF_PREDICT, "{\"instances\":[[1,2,3,4],[1,2,3]]}",
     "instances[1] has 3 values; one sample of the model's input has 4", NULL, 0},
    {INFER_TF_PREDICT, "{\"instances\":[[1,2,3,4],[],[1,2,3,4]]}",
     "instances[1] has 0 values; one sample of the model's input has 4", NULL, 0},
    {INFER_TF_PREDICT, "{\"instances\":[[1,2,3,4],[1,2,3,4,5]]}",
     "instances[1] has 5 values; one sample of the model's input has 4", NULL, 0},
    {INFER_TF_PREDICT, "{\"instances\":[{\"input\":[1,2,3,4]},{\"input\":[1,2]}]}",
     "instances[1] has 2 values; one sample of the model's input has 4", NULL, 0},
    {INFER_TF_PREDICT, "{\"inputs\":{\"input\":[[1,2,3,4],[1,2,3]]}}",
     "inputs has 7 values; its shape needs 8 (2 samples of 4)", NULL, 0},
};

static void test_error_messages(void) {
    for (size_t i = 0; i < sizeof message_cases / sizeof *message_cases; i++) {
        char want[160];
        const char *needle = message_cases[i].needle;
        if (needle)
            snprintf(want, sizeof want, message_cases[i].want,
                     at(message_cases[i].body, needle) + message_cases[i].skip);
        else
            snprintf(want, sizeof want, "%s", message_cases[i].want);
        check_message(message_cases[i].protocol, message_cases[i].body, want);
    }
}

/* What the packed path gives is what the model gets: a few values checked by hand. */
static void test_decoded_values(void) {
    const char *body = OIP_HEAD("FP32") "[0.1, -0, 3.4028234663852886e38, 1e-46]}]}";
    infer_tensor_info in = model_input(0, LUNET_DTYPE_F64);
    infer_request r;
    double out[4] = {0};
    CHECK(infer_read(&r, INFER_OIP, &in, &model_output, body, strlen(body), strlen(body)) == 0);
    CHECK(lunet__json_is_packed(r.doc, r.data));
    CHECK(infer_decode(&r, &in, out) == 0);
    CHECK(out[0] == (double)0.1f && out[1] == 0 && signbit(out[1]) && out[2] == FLT_MAX && out[3] == 0);
    infer_request_free(&r);
    body = OIP_HEAD("INT64") "[-9223372036854775808, -0, 9007199254740993, 255]}]}";
    CHECK(infer_read(&r, INFER_OIP, &in, &model_output, body, strlen(body), strlen(body)) == 0);
    CHECK(infer_decode(&r, &in, out) == 0);
    CHECK(out[0] == -0x1p63 && out[1] == 0 && !signbit(out[1]) && out[2] == 9007199254740992.0 &&
          out[3] == 255);
    infer_request_free(&r);
}

int main(void) {
    RUN(test_packed_arrays);
    RUN(test_packed_numbers_match_values);
    RUN(test_decoded_values);
    RUN(test_error_messages);
    RUN(test_deep_nesting);
    RUN(test_image_sized_bodies);
    RUN(test_generated_bodies);
    RUN(test_broken_bodies);
    return check_report("test_infer");
}
