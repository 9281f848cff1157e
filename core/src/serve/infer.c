/*
 * infer.c: reading inference request bodies and writing their responses (infer.h).
 *
 * The body is parsed once with the strict JSON parser (json.h) under limits that keep a
 * hostile body cheap: nesting deeper than MAX_DEPTH fails at once (a 100,000-deep array costs
 * nothing), and every value the parser can store is bounded by the body's size, which the
 * connection has already bounded.  The grammar, the envelope and the shape are checked
 * before a value is decoded; what is left for decoding is what each value holds (a datatype's
 * range) and the count of values, both found while the values are written.
 *
 * The tensor's numbers are most of a body (784 of them for one Fashion-MNIST image), so the
 * parser packs them (json.h's packed arrays): the arrays under the keys that carry values
 * ("data"; TF's "instances", "inputs" and the input's name) are checked but not made into a
 * value per number, and decoding reads each number once, straight into the batch.  Without
 * packing (infer_read_reference) every number is a value and flatten walks them: the plain
 * reference that test_infer.c holds the packed path to, status, message and bytes.
 *
 * Binary tensor data is taken as little-endian, which is what x86-64 and arm64 are.
 */
#define _POSIX_C_SOURCE 200809L
#include "infer.h"

#include <float.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* The deepest nesting a request needs is the root, "inputs", one input and data of 8 dims. */
#define MAX_DEPTH 16

static const struct {
    const char *name;
    size_t size;
} datatypes[INFER_DATATYPE_COUNT] = {
    [INFER_UINT8] = {"UINT8", 1}, [INFER_INT8] = {"INT8", 1}, [INFER_INT32] = {"INT32", 4},
    [INFER_INT64] = {"INT64", 8}, [INFER_FP32] = {"FP32", 4}, [INFER_FP64] = {"FP64", 8},
};

const char *infer_datatype_name(infer_datatype t) { return t < INFER_DATATYPE_COUNT ? datatypes[t].name : "?"; }

infer_datatype infer_datatype_of(lunet_dtype dtype) { return dtype == LUNET_DTYPE_F64 ? INFER_FP64 : INFER_FP32; }

static int fail(infer_request *r, int status, const char *fmt, ...) LUNET_PRINTF(3, 4);
static int fail(infer_request *r, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof r->error, fmt, ap);
    va_end(ap);
    return status;
}

/* ---- reading ---------------------------------------------------------------------------------- */

static lunet__json_type type_of(const infer_request *r, lunet__json_ref v) { return lunet__json_type_of(r->doc, v); }

static const char *type_name(const infer_request *r, lunet__json_ref v) {
    return lunet__json_type_name(type_of(r, v));
}

/* The member key of object obj if it is there and of type want (else a 400 in *status). */
static lunet__json_ref member(infer_request *r, lunet__json_ref obj, const char *key, lunet__json_type want,
                              const char *where, int *status) {
    lunet__json_ref v = lunet__json_get(r->doc, obj, key);
    if (v == LUNET__JSON_NONE || *status) return LUNET__JSON_NONE;
    if (type_of(r, v) != want) {
        *status = fail(r, 400, "%s%s%s is %s; it must be %s", where, *where ? "." : "", key, type_name(r, v),
                       lunet__json_type_name(want));
        return LUNET__JSON_NONE;
    }
    return v;
}

/* Parses the body, packing the arrays under pack_keys (NULL for none). */
static int parse(infer_request *r, const char *json, size_t len, const char *const *pack_keys) {
    /* Every value takes at least one byte of text, so this bound is never what stops a body. */
    lunet__json_limits limits = {.max_depth = MAX_DEPTH, .max_values = len + 16, .pack_keys = pack_keys};
    lunet_status s = lunet__json_parse(&r->doc, json, len, &limits, "request body");
    if (s != LUNET_OK) return fail(r, s == LUNET_ERR_NOMEM ? 500 : 400, "%s", lunet_last_error());
    if (type_of(r, 0) != LUNET__JSON_OBJECT) return fail(r, 400, "the request body is %s; it must be a JSON object",
                                                         type_name(r, 0));
    return 0;
}

/* A bool parameter: false when absent. */
static bool flag(infer_request *r, lunet__json_ref params, const char *key, const char *where, int *status) {
    lunet__json_ref v = params == LUNET__JSON_NONE ? LUNET__JSON_NONE : lunet__json_get(r->doc, params, key);
    if (v == LUNET__JSON_NONE || *status) return false;
    lunet__json_type t = type_of(r, v);
    if (t != LUNET__JSON_TRUE && t != LUNET__JSON_FALSE)
        *status = fail(r, 400, "%s.%s is %s; it must be true or false", where, key, type_name(r, v));
    return t == LUNET__JSON_TRUE;
}

/* A count parameter: -1 when absent. */
static int64_t count_param(infer_request *r, lunet__json_ref params, const char *key, const char *where, int *status) {
    if (params == LUNET__JSON_NONE) return -1;
    lunet__json_ref v = member(r, params, key, LUNET__JSON_NUMBER, where, status);
    if (v == LUNET__JSON_NONE) return -1;
    uint64_t n;
    lunet__json_uint_result res = lunet__json_get_uint(&n, r->doc, v, (uint64_t)INT64_MAX);
    if (res != LUNET__JSON_UINT_OK) {
        *status = fail(r, 400, "%s.%s %s; it must be a whole number of at least 0", where, key,
                       lunet__json_uint_result_str(res));
        return -1;
    }
    return (int64_t)n;
}

/* The input's shape: [rows, dims whose product is one sample's count]. */
static int read_shape(infer_request *r, lunet__json_ref shape, const infer_tensor_info *in) {
    size_t ndim = lunet__json_count(r->doc, shape);
    if (ndim < 2 || ndim > LUNET_MAX_DIMS)
        return fail(r, 400, "inputs[0].shape has %zu dims; it must be [batch, ...] with one sample's %lld values "
                            "after the batch dim", ndim, (long long)in->count);
    int64_t dims[LUNET_MAX_DIMS], sample = 1;
    size_t i = 0;
    bool overflow = false;
    for (lunet__json_ref d = lunet__json_first(r->doc, shape); d != LUNET__JSON_NONE; d = lunet__json_next(r->doc, d), i++) {
        const char *text = lunet__json_number_text(r->doc, d);
        if (text && text[0] == '-' && strpbrk(text, ".eE") == NULL)
            return fail(r, 400, "inputs[0].shape[%zu] is %s; dims must not be negative", i, text);
        uint64_t n;
        lunet__json_uint_result res = lunet__json_get_uint(&n, r->doc, d, (uint64_t)INT64_MAX);
        if (res != LUNET__JSON_UINT_OK)
            return fail(r, 400, "inputs[0].shape[%zu] %s; dims are whole numbers", i, lunet__json_uint_result_str(res));
        dims[i] = (int64_t)n;
        if (i > 0) overflow |= __builtin_mul_overflow(sample, dims[i], &sample);
    }
    if (overflow || sample != in->count) {
        char want[96];
        int k = snprintf(want, sizeof want, "[batch");
        for (int d = 0; d < in->ndim && k < (int)sizeof want; d++)
            k += snprintf(want + k, sizeof want - (size_t)k, ", %lld", (long long)in->shape[d]);
        snprintf(want + k, k < (int)sizeof want ? sizeof want - (size_t)k : 0, "]");
        return fail(r, 400, "inputs[0].shape holds %s values per sample; the model's input is %s (%lld values)",
                    overflow ? "more than 2^63" : "a different number of", want, (long long)in->count);
    }
    if (dims[0] == 0) return fail(r, 400, "inputs[0].shape[0] is 0; a request needs at least one sample");
    /* The whole tensor must be addressable in bytes; its values' count is checked later. */
    int64_t bytes;
    if (__builtin_mul_overflow(dims[0], in->count, &bytes) || __builtin_mul_overflow(bytes, (int64_t)8, &bytes))
        return fail(r, 400, "inputs[0].shape's size overflows: %lld samples of %lld values", (long long)dims[0],
                    (long long)in->count);
    r->rows = dims[0];
    return 0;
}

static int read_datatype(infer_request *r, lunet__json_ref v) {
    size_t n;
    const char *name = lunet__json_string(r->doc, v, &n);
    for (int t = 0; t < INFER_DATATYPE_COUNT; t++) {
        if (strlen(datatypes[t].name) == n && memcmp(datatypes[t].name, name, n) == 0) {
            r->datatype = (infer_datatype)t;
            return 0;
        }
    }
    char quoted[LUNET__JSON_QUOTE_BUF];
    return fail(r, 400, "inputs[0].datatype %s is not one of FP32, FP64, INT8, INT32, INT64, UINT8",
                lunet__json_quote(quoted, sizeof quoted, name, n));
}

static bool name_is(const infer_request *r, lunet__json_ref v, const char *want) {
    size_t n;
    const char *s = lunet__json_string(r->doc, v, &n);
    return s && n == strlen(want) && memcmp(s, want, n) == 0;
}

static int read_input(infer_request *r, lunet__json_ref input, const infer_tensor_info *in, size_t binary_len) {
    int status = 0;
    if (type_of(r, input) != LUNET__JSON_OBJECT)
        return fail(r, 400, "inputs[0] is %s; it must be an object", type_name(r, input));
    lunet__json_ref name = member(r, input, "name", LUNET__JSON_STRING, "inputs[0]", &status);
    lunet__json_ref shape = member(r, input, "shape", LUNET__JSON_ARRAY, "inputs[0]", &status);
    lunet__json_ref datatype = member(r, input, "datatype", LUNET__JSON_STRING, "inputs[0]", &status);
    lunet__json_ref params = member(r, input, "parameters", LUNET__JSON_OBJECT, "inputs[0]", &status);
    int64_t binary_size = count_param(r, params, "binary_data_size", "inputs[0].parameters", &status);
    if (status) return status;
    if (name == LUNET__JSON_NONE || shape == LUNET__JSON_NONE || datatype == LUNET__JSON_NONE)
        return fail(r, 400, "inputs[0] needs a name, a shape and a datatype");
    if (!name_is(r, name, in->name)) {
        char quoted[LUNET__JSON_QUOTE_BUF];
        size_t n;
        const char *s = lunet__json_string(r->doc, name, &n);
        return fail(r, 400, "inputs[0].name %s is not the model's input; its input is \"%s\"",
                    lunet__json_quote(quoted, sizeof quoted, s, n), in->name);
    }
    if ((status = read_datatype(r, datatype)) || (status = read_shape(r, shape, in))) return status;
    r->data = lunet__json_get(r->doc, input, "data");
    if (binary_size < 0) {
        if (r->data == LUNET__JSON_NONE) return fail(r, 400, "inputs[0] has neither data nor binary_data_size");
        if (binary_len) return fail(r, 400, "the body has %zu bytes after its JSON header, but no input has "
                                            "binary_data_size", binary_len);
        return 0;
    }
    if (r->data != LUNET__JSON_NONE) return fail(r, 400, "inputs[0] has both data and binary_data_size");
    if ((uint64_t)binary_size != binary_len)
        return fail(r, 400, "inputs[0].parameters.binary_data_size is %lld, but the body has %zu bytes after its "
                            "JSON header (Inference-Header-Content-Length)", (long long)binary_size, binary_len);
    uint64_t want = (uint64_t)r->rows * (uint64_t)in->count * datatypes[r->datatype].size;
    if ((uint64_t)binary_size != want)
        return fail(r, 400, "inputs[0].parameters.binary_data_size is %lld; shape and datatype %s need %llu bytes",
                    (long long)binary_size, datatypes[r->datatype].name, (unsigned long long)want);
    return 0;
}

/* "outputs": which outputs to send and how (absent: all, as binary_data_output says). */
static int read_outputs(infer_request *r, lunet__json_ref outputs, const infer_tensor_info *out) {
    int status = 0;
    r->send_output = false;
    size_t i = 0;
    for (lunet__json_ref o = lunet__json_first(r->doc, outputs); o != LUNET__JSON_NONE; o = lunet__json_next(r->doc, o), i++) {
        char where[32];
        snprintf(where, sizeof where, "outputs[%zu]", i);
        if (type_of(r, o) != LUNET__JSON_OBJECT) return fail(r, 400, "%s is %s; it must be an object", where, type_name(r, o));
        lunet__json_ref name = member(r, o, "name", LUNET__JSON_STRING, where, &status);
        lunet__json_ref params = member(r, o, "parameters", LUNET__JSON_OBJECT, where, &status);
        if (status) return status;
        if (name == LUNET__JSON_NONE) return fail(r, 400, "%s needs a name", where);
        if (!name_is(r, name, out->name)) {
            char quoted[LUNET__JSON_QUOTE_BUF];
            size_t n;
            const char *s = lunet__json_string(r->doc, name, &n);
            return fail(r, 400, "%s.name %s is not an output of the model; its output is \"%s\"", where,
                        lunet__json_quote(quoted, sizeof quoted, s, n), out->name);
        }
        r->send_output = true;
        char pwhere[48];
        snprintf(pwhere, sizeof pwhere, "%s.parameters", where);
        if (params != LUNET__JSON_NONE && lunet__json_get(r->doc, params, "binary_data") != LUNET__JSON_NONE)
            r->binary_output = flag(r, params, "binary_data", pwhere, &status);
    }
    return status;
}

static int read_oip(infer_request *r, const infer_tensor_info *in, const infer_tensor_info *out, size_t binary_len) {
    int status = 0;
    r->id = member(r, 0, "id", LUNET__JSON_STRING, "", &status);
    lunet__json_ref params = member(r, 0, "parameters", LUNET__JSON_OBJECT, "", &status);
    lunet__json_ref inputs = member(r, 0, "inputs", LUNET__JSON_ARRAY, "", &status);
    lunet__json_ref outputs = member(r, 0, "outputs", LUNET__JSON_ARRAY, "", &status);
    r->binary_output = flag(r, params, "binary_data_output", "parameters", &status);
    int64_t timeout = count_param(r, params, "timeout_ms", "parameters", &status);
    if (status) return status;
    r->timeout_ms = timeout > 0 ? timeout : 0;
    if (inputs == LUNET__JSON_NONE) return fail(r, 400, "the request has no \"inputs\"");
    size_t n = lunet__json_count(r->doc, inputs);
    if (n != 1) return fail(r, 400, "the request has %zu inputs; the model takes 1, \"%s\"", n, in->name);
    if ((status = read_input(r, lunet__json_first(r->doc, inputs), in, binary_len))) return status;
    r->send_output = true;
    return outputs == LUNET__JSON_NONE ? 0 : read_outputs(r, outputs, out);
}

/* TF Serving's predict: {"instances": [sample, ...]} or {"inputs": batch}, where a sample or
 * the batch may also be an object naming the input. */
static int read_tf(infer_request *r, const infer_tensor_info *in) {
    int status = 0;
    lunet__json_ref instances = member(r, 0, "instances", LUNET__JSON_ARRAY, "", &status);
    lunet__json_ref inputs = lunet__json_get(r->doc, 0, "inputs");
    if (status) return status;
    r->datatype = infer_datatype_of(in->dtype);
    r->send_output = true;
    if ((instances == LUNET__JSON_NONE) == (inputs == LUNET__JSON_NONE))
        return fail(r, 400, "a predict request has either \"instances\" (rows) or \"inputs\" (columns)");
    if (instances != LUNET__JSON_NONE) {
        r->rows = (int64_t)lunet__json_count(r->doc, instances);
        r->data = instances;
        r->data_is_instances = true;
    } else {
        if (type_of(r, inputs) == LUNET__JSON_OBJECT) {
            lunet__json_ref named = lunet__json_get(r->doc, inputs, in->name);
            if (named == LUNET__JSON_NONE || lunet__json_count(r->doc, inputs) != 1)
                return fail(r, 400, "\"inputs\" names inputs other than the model's one, \"%s\"", in->name);
            inputs = named;
        }
        if (type_of(r, inputs) != LUNET__JSON_ARRAY)
            return fail(r, 400, "\"inputs\" is %s; it must be the batch as a list of samples", type_name(r, inputs));
        r->rows = (int64_t)lunet__json_count(r->doc, inputs);
        r->data = inputs;
    }
    if (r->rows == 0) return fail(r, 400, "the request has no samples");
    return 0;
}

/* infer_read, with the arrays that carry values packed or not. */
static int read_request(infer_request *r, infer_protocol protocol, const infer_tensor_info *in,
                        const infer_tensor_info *out, const char *body, size_t len, size_t json_len,
                        bool pack) {
    memset(r, 0, sizeof *r);
    r->protocol = protocol;
    r->id = r->data = LUNET__JSON_NONE;
    if (json_len > len)
        return fail(r, 400, "Inference-Header-Content-Length is %zu, more than the body's %zu bytes", json_len, len);
    /* Keys by protocol: an OIP input named "shape" must not pack OIP's shape. */
    const char *const oip_keys[] = {"data", NULL}, *const tf_keys[] = {"instances", "inputs", in->name, NULL};
    int status = parse(r, body, json_len, !pack ? NULL : protocol == INFER_OIP ? oip_keys : tf_keys);
    if (status) return status;
    if (protocol == INFER_TF_PREDICT) {
        if (json_len != len) return fail(r, 400, "predict takes a JSON body only");
        status = read_tf(r, in);
    } else {
        status = read_oip(r, in, out, len - json_len);
        if (!status && r->data == LUNET__JSON_NONE) r->binary = (const unsigned char *)body + json_len;
    }
    if (status || r->data == LUNET__JSON_NONE) return status;
    /* The batch is sized from the rows before a value is read, so the rows must be ones the
     * body can hold: every value after the first sample's takes at least one byte of text. */
    if ((uint64_t)(r->rows - 1) * (uint64_t)in->count > json_len)
        return fail(r, 400, "the request declares %lld samples of %lld values, more than its %zu bytes of JSON "
                            "can hold", (long long)r->rows, (long long)in->count, json_len);
    return 0;
}

int infer_read(infer_request *r, infer_protocol protocol, const infer_tensor_info *in,
               const infer_tensor_info *out, const char *body, size_t len, size_t json_len) {
    return read_request(r, protocol, in, out, body, len, json_len, true);
}

int infer_read_reference(infer_request *r, infer_protocol protocol, const infer_tensor_info *in,
                         const infer_tensor_info *out, const char *body, size_t len, size_t json_len) {
    return read_request(r, protocol, in, out, body, len, json_len, false);
}

void infer_request_free(infer_request *r) {
    lunet__json_free(r->doc);
    r->doc = NULL;
}

/* ---- decoding --------------------------------------------------------------------------------- */

/* Where values go: the next index and the end of the slice they fill. */
typedef struct sink {
    void *dst;
    lunet_dtype dtype;
    int64_t next, end;
    const char *where;
} sink;

static void put(sink *s, double v) {
    if (s->next < s->end) {
        if (s->dtype == LUNET_DTYPE_F64) ((double *)s->dst)[s->next] = v;
        else ((float *)s->dst)[s->next] = (float)v;
    }
    s->next++;
}

/* The whole numbers each integer datatype holds. */
static const struct {
    int64_t lo, hi;
} int_ranges[] = {[INFER_UINT8] = {0, 255},
                  [INFER_INT8] = {-128, 127},
                  [INFER_INT32] = {INT32_MIN, INT32_MAX},
                  [INFER_INT64] = {INT64_MIN, INT64_MAX}};

/* The 400 for value index of where, the literal text (len bytes, at byte pos of the body),
 * which the request's datatype cannot hold.  A literal of thousands of digits is cut to fit. */
static int bad_value(infer_request *r, const char *where, int64_t index, const char *text, size_t len,
                     size_t pos) {
    char shown[48];
    bool cut = len > 40;
    snprintf(shown, sizeof shown, "%.*s%s", (int)(cut ? 40 : len), text, cut ? "..." : "");
    infer_datatype t = r->datatype;
    if (t == INFER_FP32 || t == INFER_FP64)
        return fail(r, 400, "%s value %lld (byte %zu) is %s, which is out of %s's range", where,
                    (long long)index, pos, shown, datatypes[t].name);
    return fail(r, 400, "%s value %lld (byte %zu) is %s, which is not %s (whole numbers from %lld to %lld)",
                where, (long long)index, pos, shown, datatypes[t].name, (long long)int_ranges[t].lo,
                (long long)int_ranges[t].hi);
}

/* A JSON number as a value of the request's datatype. */
static int number_value(infer_request *r, lunet__json_ref v, const sink *s, double *out) {
    const char *text = lunet__json_number_text(r->doc, v);
    if (r->datatype == INFER_FP32 || r->datatype == INFER_FP64) {
        double d;
        if (!lunet__json_get_f64(&d, r->doc, v) || (r->datatype == INFER_FP32 && fabs(d) > FLT_MAX))
            return bad_value(r, s->where, s->next, text, strlen(text), lunet__json_pos(r->doc, v));
        *out = r->datatype == INFER_FP32 ? (double)(float)d : d;
        return 0;
    }
    /* The parser has checked the grammar: an integer is an optional '-' and digits. */
    bool negative = text[0] == '-', integer = strpbrk(text, ".eE") == NULL;
    uint64_t magnitude = 0;
    bool overflow = false;
    for (const char *p = text + negative; integer && *p; p++)
        overflow |= __builtin_mul_overflow(magnitude, 10, &magnitude) ||
                    __builtin_add_overflow(magnitude, (uint64_t)(*p - '0'), &magnitude);
    overflow |= magnitude > (negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX);
    int64_t value = !negative ? (int64_t)magnitude : magnitude == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)magnitude;
    if (!integer || overflow || value < int_ranges[r->datatype].lo || value > int_ranges[r->datatype].hi)
        return bad_value(r, s->where, s->next, text, strlen(text), lunet__json_pos(r->doc, v));
    *out = (double)value;
    return 0;
}

/* The numbers of v, nested arrays flattened in order, into s: the reference decoder, one
 * document value per number. */
static int flatten(infer_request *r, lunet__json_ref v, sink *s) {
    lunet__json_type t = type_of(r, v);
    if (t == LUNET__JSON_NUMBER) {
        double d = 0;
        int status = number_value(r, v, s, &d);
        if (status) return status;
        put(s, d);
        return 0;
    }
    if (t != LUNET__JSON_ARRAY)
        return fail(r, 400, "%s holds %s; it must hold only numbers (in nested lists or flat)", s->where, type_name(r, v));
    for (lunet__json_ref e = lunet__json_first(r->doc, v); e != LUNET__JSON_NONE; e = lunet__json_next(r->doc, e)) {
        int status = flatten(r, e, s);
        if (status) return status;
    }
    return 0;
}

/* A packed array's number as a value of datatype t: number_value's rules, on what the parser
 * read once; false when t cannot hold it. */
static inline bool packed_value(infer_datatype t, const lunet__json_number *n, double *out) {
    if (t == INFER_FP32) {
        *out = (double)(float)n->value;
        return fabs(n->value) <= FLT_MAX; /* infinite too: it overflowed a double */
    }
    if (t == INFER_FP64) {
        *out = n->value;
        return !isinf(n->value);
    }
    /* -lo as a magnitude (0 for UINT8, 2^63 for INT64), in unsigned arithmetic. */
    uint64_t most = n->negative ? (uint64_t) - (int_ranges[t].lo + 1) + 1 : (uint64_t)int_ranges[t].hi;
    /* "-0" is the whole number 0, +0.0 as number_value gives it. */
    *out = n->negative && n->magnitude ? -(double)n->magnitude : (double)n->magnitude;
    return n->integer && n->magnitude <= most;
}

/* decode_packed's loop for datatype t into dtype: inlined for each pair that decode_packed
 * names, so that neither is tested again for every number. */
static inline __attribute__((always_inline)) int
decode_packed_as(infer_request *r, lunet__json_ref v, sink *s, infer_datatype t, lunet_dtype dtype) {
    lunet__json_numbers it = lunet__json_numbers_of(r->doc, v);
    lunet__json_number n;
    sink local = *s; /* in registers: s's fields would be reloaded after every store to the batch */
    local.dtype = dtype;
    for (;;) {
        unsigned digits[4];
        if (lunet__json_numbers_four_digits(&it, digits)) {
            for (int j = 0; j < 4; j++)
                put(&local, digits[j]); /* every datatype holds 0 to 9 */
            continue;
        }
        if (!lunet__json_numbers_next(&it, &n)) break;
        double d;
        if (!packed_value(t, &n, &d)) return bad_value(r, local.where, local.next, n.text, n.len, n.pos);
        put(&local, d);
    }
    *s = local;
    return 0;
}

/* The numbers of packed array v into s, in order: flatten's work without a value per number. */
static int decode_packed(infer_request *r, lunet__json_ref v, sink *s) {
    bool f64 = s->dtype == LUNET_DTYPE_F64;
    switch (r->datatype) {
    case INFER_FP32:
        return f64 ? decode_packed_as(r, v, s, INFER_FP32, LUNET_DTYPE_F64)
                   : decode_packed_as(r, v, s, INFER_FP32, LUNET_DTYPE_F32);
    case INFER_FP64:
        return f64 ? decode_packed_as(r, v, s, INFER_FP64, LUNET_DTYPE_F64)
                   : decode_packed_as(r, v, s, INFER_FP64, LUNET_DTYPE_F32);
    default: /* the integers share a loop: their ranges come from a table */
        return f64 ? decode_packed_as(r, v, s, r->datatype, LUNET_DTYPE_F64)
                   : decode_packed_as(r, v, s, r->datatype, LUNET_DTYPE_F32);
    }
}

/* The numbers of v into s, whichever way the parser stored them. */
static int decode_values(infer_request *r, lunet__json_ref v, sink *s) {
    return lunet__json_is_packed(r->doc, v) ? decode_packed(r, v, s) : flatten(r, v, s);
}

/* The sink for TF row i: one sample's slice of dst, named "instances[i]" in where. */
static sink row_sink(const infer_tensor_info *in, void *dst, size_t i, char *where, size_t size) {
    snprintf(where, size, "instances[%zu]", i);
    size_t offset = i * (size_t)in->count * lunet_dtype_size(in->dtype);
    return (sink){(char *)dst + offset, in->dtype, 0, in->count, where};
}

/* A row must hold one sample. */
static int check_row(infer_request *r, sink s, const infer_tensor_info *in) {
    if (s.next == in->count) return 0;
    return fail(r, 400, "%s has %lld values; one sample of the model's input has %lld", s.where,
                (long long)s.next, (long long)in->count);
}

/* TF rows packed whole ([[...], [...]]): element i of the array fills sample i. */
static int decode_packed_rows(infer_request *r, const infer_tensor_info *in, void *dst) {
    lunet__json_numbers it = lunet__json_numbers_of(r->doc, r->data);
    lunet__json_number n;
    bool more = lunet__json_numbers_next(&it, &n);
    for (size_t i = 0; i < (size_t)r->rows; i++) {
        char where[40];
        sink s = row_sink(in, dst, i, where, sizeof where);
        for (; more && n.element == i; more = lunet__json_numbers_next(&it, &n)) {
            double d;
            if (!packed_value(r->datatype, &n, &d))
                return bad_value(r, s.where, s.next, n.text, n.len, n.pos);
            put(&s, d);
        }
        int status = check_row(r, s, in);
        if (status) return status;
    }
    return 0;
}

/* Binary values of the request's datatype, converted. */
static void convert_binary(const infer_request *r, int64_t n, lunet_dtype dtype, void *dst) {
    const unsigned char *src = r->binary;
    size_t size = datatypes[r->datatype].size;
    if ((r->datatype == INFER_FP32 && dtype == LUNET_DTYPE_F32) || (r->datatype == INFER_FP64 && dtype == LUNET_DTYPE_F64)) {
        memcpy(dst, src, (size_t)n * size);
        return;
    }
    for (int64_t i = 0; i < n; i++, src += size) {
        double v;
        switch (r->datatype) {
        case INFER_UINT8: v = *src; break;
        case INFER_INT8: v = (int8_t)*src; break;
        case INFER_INT32: { int32_t x; memcpy(&x, src, 4); v = x; break; }
        case INFER_INT64: { int64_t x; memcpy(&x, src, 8); v = (double)x; break; }
        case INFER_FP32: { float x; memcpy(&x, src, 4); v = x; break; }
        default: { double x; memcpy(&x, src, 8); v = x; break; }
        }
        if (dtype == LUNET_DTYPE_F64) ((double *)dst)[i] = v;
        else ((float *)dst)[i] = (float)v;
    }
}

int infer_decode(infer_request *r, const infer_tensor_info *in, void *dst) {
    int64_t total = r->rows * in->count;
    if (r->data == LUNET__JSON_NONE) {
        convert_binary(r, total, in->dtype, dst);
        return 0;
    }
    if (!r->data_is_instances) {
        sink s = {dst, in->dtype, 0, total, r->protocol == INFER_OIP ? "inputs[0].data" : "inputs"};
        int status = decode_values(r, r->data, &s);
        if (status) return status;
        if (s.next != total)
            return fail(r, 400, "%s has %lld values; its shape needs %lld (%lld samples of %lld)", s.where,
                        (long long)s.next, (long long)total, (long long)r->rows, (long long)in->count);
        return 0;
    }
    if (lunet__json_is_packed(r->doc, r->data)) return decode_packed_rows(r, in, dst);
    size_t i = 0;
    for (lunet__json_ref e = lunet__json_first(r->doc, r->data); e != LUNET__JSON_NONE; e = lunet__json_next(r->doc, e), i++) {
        char where[40];
        sink s = row_sink(in, dst, i, where, sizeof where);
        lunet__json_ref sample = e; /* not e itself: the loop goes on from e to the next row */
        if (type_of(r, e) == LUNET__JSON_OBJECT) {
            sample = lunet__json_get(r->doc, e, in->name);
            if (sample == LUNET__JSON_NONE || lunet__json_count(r->doc, e) != 1)
                return fail(r, 400, "%s names inputs other than the model's one, \"%s\"", where, in->name);
        }
        int status = decode_values(r, sample, &s);
        if (status) return status;
        if ((status = check_row(r, s, in))) return status;
    }
    return 0;
}

/* ---- writing ---------------------------------------------------------------------------------- */

static void write_str(lunet__json_writer *w, const char *s) { lunet__json_write_raw(w, s, strlen(s)); }

static void write_value(lunet__json_writer *w, const infer_tensor_info *out, const void *values, int64_t i) {
    char buf[LUNET__F32_TEXT_MAX];
    double v = out->dtype == LUNET_DTYPE_F64 ? ((const double *)values)[i] : ((const float *)values)[i];
    size_t n = !isfinite(v) ? (size_t)snprintf(buf, sizeof buf, "null") /* JSON has no NaN or infinity */
               : out->dtype == LUNET_DTYPE_F64 ? (size_t)snprintf(buf, sizeof buf, "%.17g", v)
                                               : lunet__f32_text(buf, (float)v); /* "%.9g", without printf */
    lunet__json_write_raw(w, buf, n);
}

/* values[first, first + count) as a list, nested by shape[0..ndim) (flat when ndim is 0 or 1). */
static void write_nested(lunet__json_writer *w, const infer_tensor_info *out, const void *values, int64_t first,
                         const int64_t *shape, int ndim) {
    lunet__json_write_raw(w, "[", 1);
    int64_t inner = 1;
    for (int d = 1; d < ndim; d++) inner *= shape[d];
    for (int64_t i = 0; i < (ndim ? shape[0] : 1); i++) {
        if (i) lunet__json_write_raw(w, ",", 1);
        if (ndim > 1) write_nested(w, out, values, first + i * inner, shape + 1, ndim - 1);
        else write_value(w, out, values, first + i);
    }
    lunet__json_write_raw(w, "]", 1);
}

static void write_oip(lunet__json_writer *w, const infer_request *r, const char *model, const char *version,
                      const infer_tensor_info *out, const void *output) {
    write_str(w, "{\"model_name\":");
    lunet__json_write_string(w, model, strlen(model));
    write_str(w, ",\"model_version\":");
    lunet__json_write_string(w, version, strlen(version));
    if (r->id != LUNET__JSON_NONE) {
        size_t n;
        const char *id = lunet__json_string(r->doc, r->id, &n);
        write_str(w, ",\"id\":");
        lunet__json_write_string(w, id, n);
    }
    write_str(w, ",\"outputs\":[");
    if (r->send_output) {
        write_str(w, "{\"name\":");
        lunet__json_write_string(w, out->name, strlen(out->name));
        write_str(w, ",\"datatype\":\"");
        write_str(w, infer_datatype_name(infer_datatype_of(out->dtype)));
        write_str(w, "\",\"shape\":[");
        lunet__json_write_uint(w, (uint64_t)r->rows);
        for (int d = 0; d < out->ndim; d++) {
            lunet__json_write_raw(w, ",", 1);
            lunet__json_write_uint(w, (uint64_t)out->shape[d]);
        }
        int64_t total = r->rows * out->count;
        if (r->binary_output) {
            write_str(w, "],\"parameters\":{\"binary_data_size\":");
            lunet__json_write_uint(w, (uint64_t)total * lunet_dtype_size(out->dtype));
            write_str(w, "}}");
        } else {
            write_str(w, "],\"data\":");
            write_nested(w, out, output, 0, &total, 1);
            write_str(w, "}");
        }
    }
    write_str(w, "]}");
}

static void write_tf(lunet__json_writer *w, const infer_request *r, const infer_tensor_info *out, const void *output) {
    write_str(w, r->data_is_instances ? "{\"predictions\":[" : "{\"outputs\":[");
    for (int64_t i = 0; i < r->rows; i++) {
        if (i) lunet__json_write_raw(w, ",", 1);
        if (out->ndim == 0) write_value(w, out, output, i);
        else write_nested(w, out, output, i * out->count, out->shape, out->ndim);
    }
    write_str(w, "]}");
}

int infer_write(const infer_request *r, const char *model, const char *version, const infer_tensor_info *out,
                const void *output, char **body, size_t *body_len, size_t *json_len) {
    lunet__json_writer w = {0};
    if (r->protocol == INFER_TF_PREDICT) write_tf(&w, r, out, output);
    else write_oip(&w, r, model, version, out, output);
    *json_len = w.len;
    if (r->protocol == INFER_OIP && r->send_output && r->binary_output)
        lunet__json_write_raw(&w, output, (size_t)(r->rows * out->count) * lunet_dtype_size(out->dtype));
    if (w.failed) {
        lunet__json_writer_free(&w);
        return 500;
    }
    *body = w.data;
    *body_len = w.len;
    return 0;
}
