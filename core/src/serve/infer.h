/*
 * infer.h: the bodies of inference requests and their responses, apart from connections and
 * threads: the Open Inference Protocol v2 infer body (JSON, or a JSON header followed by
 * binary tensor data, Triton's binary tensor extension) and TF Serving's predict body (row
 * "instances" or column "inputs").
 *
 * An inference worker reads each request (infer_read: parse, check, count its rows), decodes
 * its values straight into the batch's input buffer (infer_decode), runs the batch, and
 * writes each response from the batch's output rows (infer_write).  The decoder's libFuzzer
 * target calls the same three functions.
 *
 * Every failure is an HTTP status (400 for anything the client sent, 500 for memory) with a
 * message in the request's `error`, which says what was wrong and where ("inputs[0].shape[1]
 * is -3; dims must not be negative").
 */
#ifndef LUNET_SERVE_INFER_H
#define LUNET_SERVE_INFER_H

#include "../json.h"

/* The datatypes a request may send, with OIP's names. */
typedef enum infer_datatype {
    INFER_UINT8,
    INFER_INT8,
    INFER_INT32,
    INFER_INT64,
    INFER_FP32,
    INFER_FP64,
    INFER_DATATYPE_COUNT
} infer_datatype;

/* "FP32", ... */
const char *infer_datatype_name(infer_datatype t);
/* The datatype of a graph's dtype (f32 or f64). */
infer_datatype infer_datatype_of(lunet_dtype dtype);

/* A model's input or output for one sample: the batch dim is not in shape. */
typedef struct infer_tensor_info {
    const char *name;
    lunet_dtype dtype; /* f32 or f64, the graph's */
    int ndim;
    int64_t shape[LUNET_MAX_DIMS];
    int64_t count; /* elements per sample */
} infer_tensor_info;

typedef enum infer_protocol { INFER_OIP, INFER_TF_PREDICT } infer_protocol;

typedef struct infer_request {
    infer_protocol protocol;
    lunet__json_doc *doc;
    lunet__json_ref id;          /* OIP "id" (a string), or LUNET__JSON_NONE */
    int64_t rows;                /* samples in the request */
    infer_datatype datatype;     /* of the input's values */
    lunet__json_ref data;        /* the values, nested or flat; NONE when they are binary */
    bool data_is_instances;      /* TF rows: data lists the samples, each checked on its own */
    const unsigned char *binary; /* the input's bytes (binary tensor data), borrowed from the body */
    bool send_output;            /* the response lists the output ("outputs" may leave it out) */
    bool binary_output;          /* ... as binary tensor data */
    int64_t timeout_ms;          /* parameters.timeout_ms; 0 for none */
    char error[256];
} infer_request;

/* Reads a request body for a model with input `in` and output `out`.  json_len is the
 * Inference-Header-Content-Length (the JSON part of a binary body), or len when the body is
 * all JSON.  The body must outlive the request (binary data is borrowed).  Returns 0, or a
 * status with r->error set; either way free r with infer_request_free. */
int infer_read(infer_request *r, infer_protocol protocol, const infer_tensor_info *in, const infer_tensor_info *out,
               const char *body, size_t len, size_t json_len);

/* infer_read without packing the body's numbers: every number is a value of r->doc, and
 * infer_decode on r runs the plain reference decoder.  For tests, which hold the packed path
 * to it; the server does not call it. */
int infer_read_reference(infer_request *r, infer_protocol protocol, const infer_tensor_info *in,
                         const infer_tensor_info *out, const char *body, size_t len, size_t json_len);

/* Writes the request's rows * in->count values, converted to in->dtype, to dst.  Returns 0,
 * or 400 with r->error set (a value the datatype cannot hold, a count that differs). */
int infer_decode(infer_request *r, const infer_tensor_info *in, void *dst);

/* The response for the request's rows of output (rows * out->count values in out->dtype):
 * *body (malloc'd, *body_len bytes) and, for binary tensor data, *json_len, the length of its
 * JSON header (else *json_len == *body_len).  model and version name the model that ran.
 * Returns 0 or 500 (memory). */
int infer_write(const infer_request *r, const char *model, const char *version, const infer_tensor_info *out,
                const void *output, char **body, size_t *body_len, size_t *json_len);

void infer_request_free(infer_request *r);

#endif /* LUNET_SERVE_INFER_H */
