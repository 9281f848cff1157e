/*
 * fuzz_infer.c: a libFuzzer target for the model server's inference bodies (core/src/serve/
 * infer.h): infer_read, infer_decode and infer_write, called as a worker calls them, with no
 * sockets or threads in between.
 *
 * An input is three bytes of settings and then the body:
 *
 *     byte 0     bit 0: TF Serving predict (else OIP v2 infer); bit 1: the model is f64 (else
 *                f32); bit 2: the model takes (1, 28, 28) and gives (10) (else (4) and (2, 3));
 *                bit 3: the body has a binary part (Triton's binary tensor data)
 *     bytes 1-2  with bit 3, the JSON part's length (Inference-Header-Content-Length), little
 *                endian; it may be more than the body, which infer_read must refuse
 *     bytes 3-   the body
 *
 * Beyond "no crash, no sanitizer report", it checks what the server relies on.  The packed
 * decoder the server runs gives what the plain reference gives (infer_read_reference, one
 * JSON value per number): the same status and message from reading and from decoding, and the
 * same bytes.  A failure is
 * 400 or 500 with a message.  A request read holds at least one row, and no more values than
 * its body can carry: binary data is exactly rows * count values of its datatype, and JSON
 * data needs at least a byte per value beyond the first row, so (rows - 1) * count <= the
 * JSON's length (one sample of a model is allowed whatever the body: an MNIST image has 784
 * values, more than "[0]" has bytes).  The server sizes its batch buffer from rows * count
 * before decoding, so that bound is what keeps a small body from making it allocate
 * gigabytes.  Decoded values are numbers (no NaN from JSON).  A response's JSON part parses
 * back as JSON, has the request's rows, echoes its id byte for byte, and its binary part is
 * the output's size.
 *
 *     make build/fuzz/fuzz_infer            (clang with libFuzzer, ASan and UBSan: the Makefile says how)
 *     build/fuzz/fuzz_infer -max_total_time=120 -max_len=65536 -artifact_prefix=build/fuzz/artifacts/ \
 *           build/fuzz/corpus/infer
 */
#include "serve/infer.h"

#include <stdlib.h>
#include <string.h>

/* A broken promise: stop so that libFuzzer saves the input. */
#define FUZZ_REQUIRE(cond, r)                                                                                \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_infer: %s failed (request error: \"%s\")\n", #cond, (r)->error);           \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static const size_t datatype_size[INFER_DATATYPE_COUNT] = {
    [INFER_UINT8] = 1, [INFER_INT8] = 1, [INFER_INT32] = 4,
    [INFER_INT64] = 8, [INFER_FP32] = 4, [INFER_FP64] = 8,
};

/* The model's input and output for one sample. */
static void model_info(infer_tensor_info *in, infer_tensor_info *out, bool mnist, lunet_dtype dtype) {
    memset(in, 0, sizeof *in);
    memset(out, 0, sizeof *out);
    in->name = "input", out->name = "output";
    in->dtype = out->dtype = dtype;
    if (mnist) {
        in->ndim = 3, in->shape[0] = 1, in->shape[1] = 28, in->shape[2] = 28, in->count = 784;
        out->ndim = 1, out->shape[0] = 10, out->count = 10;
    } else {
        in->ndim = 1, in->shape[0] = 4, in->count = 4;
        out->ndim = 2, out->shape[0] = 2, out->shape[1] = 3, out->count = 6;
    }
}

/* A status and its message as infer.h promises them. */
static void check_failure(const infer_request *r, int status) {
    FUZZ_REQUIRE(status == 400 || status == 500, r);
    FUZZ_REQUIRE(memchr(r->error, '\0', sizeof r->error) != NULL, r);
    FUZZ_REQUIRE(r->error[0] != '\0', r);
}

/* Output values a model might give, NaN and infinities included (JSON writes them as null). */
static void fill_output(void *output, int64_t n, lunet_dtype dtype) {
    static const double special[] = {0.0,   -0.0, 1.0,      -1.5,      1e-310, 3.4028234663852886e38,
                                     1e300, NAN,  INFINITY, -INFINITY, 0.1,    123456789.0};
    enum { NSPECIAL = sizeof special / sizeof special[0] };
    for (int64_t i = 0; i < n; i++) {
        double v = special[i % NSPECIAL];
        if (dtype == LUNET_DTYPE_F64)
            ((double *)output)[i] = v;
        else
            ((float *)output)[i] = (float)v;
    }
}

/* Checks a response body: its JSON part parses, and says what the request asked for. */
static void check_response(const infer_request *r, const infer_tensor_info *out, const char *body,
                           size_t body_len, size_t json_len) {
    FUZZ_REQUIRE(json_len <= body_len, r);
    lunet__json_doc *doc = NULL;
    lunet__json_limits limits = {.max_depth = 64, .max_values = json_len + 16};
    lunet_status s = lunet__json_parse(&doc, body, json_len, &limits, "response");
    if (s != LUNET_OK)
        fprintf(stderr, "fuzz_infer: the response does not parse: %s\n%.*s\n", lunet_last_error(),
                (int)(json_len < 2000 ? json_len : 2000), body);
    FUZZ_REQUIRE(s == LUNET_OK, r);
    FUZZ_REQUIRE(lunet__json_type_of(doc, 0) == LUNET__JSON_OBJECT, r);
    size_t output_bytes = (size_t)(r->rows * out->count) * lunet_dtype_size(out->dtype);
    if (r->protocol == INFER_TF_PREDICT) {
        lunet__json_ref rows = lunet__json_get(doc, 0, r->data_is_instances ? "predictions" : "outputs");
        FUZZ_REQUIRE(lunet__json_type_of(doc, rows) == LUNET__JSON_ARRAY, r);
        FUZZ_REQUIRE(lunet__json_count(doc, rows) == (size_t)r->rows, r);
        FUZZ_REQUIRE(body_len == json_len, r);
    } else {
        size_t n;
        const char *name = lunet__json_string(doc, lunet__json_get(doc, 0, "model_name"), &n);
        FUZZ_REQUIRE(name && n == 1 && name[0] == 'm', r);
        lunet__json_ref id = lunet__json_get(doc, 0, "id");
        FUZZ_REQUIRE((id == LUNET__JSON_NONE) == (r->id == LUNET__JSON_NONE), r);
        if (id != LUNET__JSON_NONE) { /* the id comes back byte for byte, whatever escapes it needed */
            size_t want_len;
            const char *want = lunet__json_string(r->doc, r->id, &want_len);
            const char *got = lunet__json_string(doc, id, &n);
            FUZZ_REQUIRE(got && n == want_len && memcmp(got, want, n) == 0, r);
        }
        lunet__json_ref outputs = lunet__json_get(doc, 0, "outputs");
        FUZZ_REQUIRE(lunet__json_count(doc, outputs) == (r->send_output ? 1u : 0u), r);
        if (r->send_output) {
            lunet__json_ref o = lunet__json_first(doc, outputs);
            lunet__json_ref shape = lunet__json_get(doc, o, "shape");
            uint64_t rows = 0;
            lunet__json_uint_result res =
                lunet__json_get_uint(&rows, doc, lunet__json_first(doc, shape), UINT64_MAX);
            FUZZ_REQUIRE(res == LUNET__JSON_UINT_OK && rows == (uint64_t)r->rows, r);
            lunet__json_ref data = lunet__json_get(doc, o, "data");
            if (r->binary_output) {
                FUZZ_REQUIRE(data == LUNET__JSON_NONE, r);
                FUZZ_REQUIRE(body_len - json_len == output_bytes, r);
            } else {
                FUZZ_REQUIRE(lunet__json_count(doc, data) == (size_t)(r->rows * out->count), r);
                FUZZ_REQUIRE(body_len == json_len, r);
            }
        } else {
            FUZZ_REQUIRE(body_len == json_len, r);
        }
    }
    lunet__json_free(doc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 3) return 0;
    unsigned flags = data[0];
    infer_protocol protocol = flags & 1 ? INFER_TF_PREDICT : INFER_OIP;
    lunet_dtype dtype = flags & 2 ? LUNET_DTYPE_F64 : LUNET_DTYPE_F32;
    infer_tensor_info in, out;
    model_info(&in, &out, (flags & 4) != 0, dtype);
    const char *body = (const char *)data + 3;
    size_t len = size - 3;
    size_t json_len = flags & 8 ? (size_t)data[1] | (size_t)data[2] << 8 : len;

    infer_request r, ref;
    int status = infer_read(&r, protocol, &in, &out, body, len, json_len);
    int ref_status = infer_read_reference(&ref, protocol, &in, &out, body, len, json_len);
    FUZZ_REQUIRE(status == ref_status && strcmp(r.error, ref.error) == 0, &r);
    if (status) {
        check_failure(&r, status);
        infer_request_free(&r);
        infer_request_free(&ref);
        return 0;
    }
    FUZZ_REQUIRE(
        r.rows == ref.rows && r.datatype == ref.datatype && r.data_is_instances == ref.data_is_instances, &r);
    FUZZ_REQUIRE(json_len <= len, &r);
    FUZZ_REQUIRE(r.rows >= 1, &r);
    FUZZ_REQUIRE(r.datatype < INFER_DATATYPE_COUNT, &r);
    uint64_t values = (uint64_t)r.rows * (uint64_t)in.count; /* read_shape bounds rows * count * 8 */
    if (r.data == LUNET__JSON_NONE) {
        FUZZ_REQUIRE(protocol == INFER_OIP && r.binary == (const unsigned char *)body + json_len, &r);
        FUZZ_REQUIRE(values * datatype_size[r.datatype] == len - json_len, &r);
    } else {
        FUZZ_REQUIRE(json_len == len, &r);
        bool bounded = values - (uint64_t)in.count <= json_len;
        if (!bounded) {
            fprintf(stderr,
                    "fuzz_infer: a %zu-byte JSON body declares %lld rows of %lld values: the server "
                    "would allocate %llu bytes for it before decoding\n",
                    json_len, (long long)r.rows, (long long)in.count,
                    (unsigned long long)(values * lunet_dtype_size(dtype)));
        }
        FUZZ_REQUIRE(bounded, &r);
    }

    size_t elem = lunet_dtype_size(dtype), bytes = (size_t)values * elem;
    void *batch = malloc(bytes + 1), *ref_batch = malloc(bytes + 1); /* + 1: malloc(0) may give NULL */
    if (!batch || !ref_batch) abort();
    memset(batch, 0xFF, bytes); /* NaN, which no JSON number decodes to: a value not written shows */
    memset(ref_batch, 0xFF, bytes);
    status = infer_decode(&r, &in, batch);
    ref_status = infer_decode(&ref, &in, ref_batch);
    FUZZ_REQUIRE(status == ref_status && strcmp(r.error, ref.error) == 0, &r);
    FUZZ_REQUIRE(status || memcmp(batch, ref_batch, bytes) == 0, &r);
    free(ref_batch);
    infer_request_free(&ref);
    if (status) {
        FUZZ_REQUIRE(status == 400, &r);
        check_failure(&r, status);
        free(batch);
        infer_request_free(&r);
        return 0;
    }
    /* Every value was written: the batch was NaN before, and JSON has no NaN (the decoder
     * refuses overflows), so a value left unwritten shows as one. */
    for (uint64_t i = 0; i < values && r.data != LUNET__JSON_NONE; i++) {
        double v = dtype == LUNET_DTYPE_F64 ? ((double *)batch)[i] : ((float *)batch)[i];
        FUZZ_REQUIRE(!isnan(v), &r);
    }
    free(batch);

    int64_t out_values = r.rows * out.count;
    void *output = malloc((size_t)out_values * elem + 1);
    if (!output) abort();
    fill_output(output, out_values, dtype);
    char *response = NULL;
    size_t response_len = 0, response_json_len = 0;
    status = infer_write(&r, "m", "1", &out, output, &response, &response_len, &response_json_len);
    FUZZ_REQUIRE(status == 0 || status == 500, &r);
    if (status == 0) check_response(&r, &out, response, response_len, response_json_len);
    free(response);
    free(output);
    infer_request_free(&r);
    return 0;
}
