/*
 * serve.h: the HTTP model server's parts, private to core/src/serve.
 *
 *   server.c   the lunet_server of lunet.h: the libuv loop, the listener, signals, the log
 *   conn.c     one client connection: http-parser with the limits and timeouts, keep-alive,
 *              pipelining (one request at a time, in order), the response queue
 *   routes.c   which handler answers a request: the paths of DESIGN.md's HTTP API
 *   models.c   the models served: adding, finding by name and version, their metadata
 *   workers.c  the inference workers: per-model queues, batching, running, answering back
 *   infer.c    request and response bodies (infer.h)
 *   metrics.c  the counters and histograms, and /metrics in Prometheus' text format
 *
 * Threads: the loop's thread does all the networking, parsing of HTTP and routing; it hands
 * an inference request to its model's queue as a job (the body moves with it).  A worker
 * takes the jobs queued for a model, decodes them into one batch, runs it, writes each job's
 * response body, and hands the jobs back to the loop (uv_async), which sends them.  A job
 * whose client has gone is still run (it is part of a batch) and then dropped.
 *
 * A request is handed to the server once its whole body has arrived; the server answers it
 * with conn_respond, now or later, and the connection goes on parsing whatever the client
 * pipelined after it only then, so responses leave in the order the requests came.
 */
#ifndef LUNET_SERVE_H
#define LUNET_SERVE_H

/* libuv's header needs POSIX's threads types; every file here includes this header first. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "../internal.h"
#include "infer.h"

#include <http_parser.h>
#include <uv.h>

typedef struct lunet_server serve_server;
typedef struct serve_conn serve_conn;
typedef struct serve_job serve_job;
typedef struct serve_stats serve_stats;

/* A growable byte buffer. */
typedef struct serve_buf {
    char *data;
    size_t len, cap;
} serve_buf;

bool serve_buf_append(serve_buf *b, const void *data, size_t n);
bool serve_buf_printf(serve_buf *b, const char *fmt, ...) LUNET_PRINTF(2, 3);
void serve_buf_free(serve_buf *b);

/* One parsed request.  Header values the server uses are kept; the others are only counted
 * against the header limit. */
typedef struct serve_request {
    enum http_method method;
    serve_buf url, body;
    char request_id[65];          /* X-Request-Id, if the client sent one (truncated) */
    uint64_t started_ns;          /* when its first byte arrived */
    bool has_json_len;            /* Inference-Header-Content-Length was sent: */
    bool json_len_invalid;        /*   not a number */
    size_t json_len;              /*   its value */
    serve_stats *stats;           /* whose metrics it counts in (routing sets a model's) */
} serve_request;

/* The limits and timeouts a connection works under (lunet_server_config's, resolved). */
typedef struct serve_limits {
    size_t max_header_bytes, max_body_bytes, max_write_queue_bytes;
    uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms;
} serve_limits;

/* ---- connections (conn.c) ------------------------------------------------------------------- */

/* Accepts a waiting client of listener into a new connection that reports each request to
 * serve_handle (server.c).  Returns false (and leaves the client to the listener) on failure. */
bool conn_accept(serve_server *server, uv_stream_t *listener, const serve_limits *limits);
/* Sends the response to the connection's current request: status, body (JSON unless
 * content_type says otherwise), extra header lines (each ending in \r\n, may be NULL).  Then
 * reads on, or closes the connection when the request or the status asked for that. */
void conn_respond(serve_conn *c, int status, const char *content_type, const char *extra_headers, const char *body,
                  size_t body_len);
/* conn_respond with {"error": message} (message JSON-escaped). */
void conn_respond_error(serve_conn *c, int status, const char *extra_headers, const char *message);
/* Moves the current request's body out to *body (the connection does not read meanwhile). */
void conn_take_body(serve_conn *c, serve_buf *body);
/* The job answering the connection's request: a closing connection tells it (job->conn). */
void conn_set_job(serve_conn *c, serve_job *job);
/* Closes a connection at once (server shutdown). */
void conn_close(serve_conn *c);
/* The request a connection is answering. */
serve_request *conn_request(serve_conn *c);

/* ---- metrics (metrics.c) ------------------------------------------------------------------- */

#define SERVE_TIME_BUCKETS 16  /* 100 us .. 10 s, then +Inf */
#define SERVE_BATCH_BUCKETS 11 /* 1 .. 1024 rows, then +Inf */
#define SERVE_STATUS_SLOTS 16  /* distinct statuses counted per model */

typedef struct serve_histogram {
    uint64_t counts[SERVE_TIME_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
} serve_histogram;

/* What one model name (all its versions), the unknown names, or the other paths count.  The
 * loop's thread alone writes requests, by_status, request_duration, in_flight; workers write
 * the rest under the server's metrics_lock. */
struct serve_stats {
    serve_stats *next;
    char label[72];               /* the model label value: its name, "_unknown", or "" */
    struct {
        int status;
        uint64_t count;
    } by_status[SERVE_STATUS_SLOTS];
    serve_histogram request_duration;
    int64_t in_flight;
    serve_histogram queue_duration, compute_duration, batch_size;
    uint64_t inferences, batches, rejected_full, rejected_deadline;
};

/* The stats of label, made on first use (NULL when out of memory). */
serve_stats *serve_stats_for(serve_server *s, const char *label);
/* An answered request (loop thread). */
void serve_stats_request(serve_stats *st, int status, double seconds);
/* A batch a worker ran: rows, compute time, each job's time in the queue, and how many of
 * its jobs were too late (504). */
void serve_stats_batch(serve_server *s, serve_stats *st, int64_t rows, double compute_s, const double *queue_s,
                       int jobs, int late);
/* The /metrics text. */
bool serve_metrics_write(serve_server *s, serve_buf *out);
void serve_stats_free(serve_server *s);

/* ---- models (models.c) ---------------------------------------------------------------------- */

typedef struct serve_model {
    struct serve_model *next;     /* the server's list, in the order added */
    char name[64];
    int64_t version;
    char version_text[24];
    infer_tensor_info input, output;
    char input_name[64], output_name[64];
    lunet_model **graphs;         /* one per worker */
    int max_batch_size, max_queue_size;
    int64_t max_queue_delay_us;
    serve_stats *stats;
    /* the queue: the server's queue_lock guards these */
    serve_job *head, *tail;
    int queued;
} serve_model;

/* The model of that name and version (version 0: the newest), or NULL. */
serve_model *serve_model_find(serve_server *s, const char *name, size_t name_len, int64_t version);
/* Whether any version of the name is served. */
bool serve_model_known(serve_server *s, const char *name, size_t name_len);
/* OIP model metadata, and TF Serving's model status (version 0: every version). */
bool serve_model_metadata(serve_server *s, const serve_model *m, serve_buf *out);
bool serve_model_status(serve_server *s, const char *name, size_t name_len, int64_t version, serve_buf *out);
void serve_models_free(serve_server *s);

/* ---- workers (workers.c) -------------------------------------------------------------------- */

struct serve_job {
    serve_job *next;
    serve_conn *conn;             /* NULL once its client has gone (the loop's thread only) */
    serve_model *model;
    infer_protocol protocol;
    serve_buf body;               /* the request's, moved here */
    size_t json_len;              /* the JSON part of the body */
    uint64_t queued_ns;
    /* the worker's answer */
    int status;
    char *response;               /* malloc'd */
    size_t response_len, response_json_len;
    char error[256];
};

/* Starts the workers (false, with lunet_last_error set, if it cannot). */
bool serve_workers_start(serve_server *s);
/* Queues an inference request of connection c for model m, or answers 503 when the queue is
 * full. */
void serve_workers_submit(serve_server *s, serve_conn *c, serve_model *m, infer_protocol protocol);
/* Stops and joins the workers; jobs not run are freed. */
void serve_workers_stop(serve_server *s);

/* ---- routes (routes.c) ---------------------------------------------------------------------- */

/* Called for each whole request; must end in conn_respond (now or later). */
void serve_handle(serve_server *server, serve_conn *c);

/* ---- the server (server.c) ------------------------------------------------------------------ */

struct lunet_server {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_signal_t sigterm, sigint;
    uv_async_t stop;              /* lunet_server_stop from any thread */
    serve_limits limits;
    int max_connections, connections;
    serve_conn *conns;            /* every open connection, linked through serve_conn.next */
    bool stopping, quiet;
    int port;
    uint64_t requests;            /* answered so far */
    serve_model *models;
    serve_stats *stats, *other_stats, *unknown_stats;
    uv_mutex_t metrics_lock;
    /* the workers (workers.c) */
    int threads;
    uv_thread_t *workers;
    struct serve_worker *worker_state;
    int workers_started;
    uv_mutex_t queue_lock;        /* the models' queues and workers_stop */
    uv_cond_t queue_wake;
    bool workers_stop;
    uv_mutex_t done_lock;         /* jobs answered, for the loop to send */
    serve_job *done_head, *done_tail;
    uv_async_t done;
};

/* An answered request: its metrics, and a JSON access-log line on stdout. */
void serve_answered(serve_server *server, const serve_request *r, int status);
/* The reason phrase of an HTTP status. */
const char *serve_status_text(int status);

#endif /* LUNET_SERVE_H */
