/*
 * serve.h: the HTTP model server's parts, private to core/src/serve.
 *
 *   server.c   the lunet_server of lunet.h: the listener, handing connections out, signals, the log
 *   control.c  the thread that drives the server (lunet_server_start/wait): watching files, SIGHUP
 *   loops.c    the event loops, one per thread: starting, taking connections, stopping
 *   conn.c     one client connection: http-parser with the limits and timeouts, keep-alive,
 *              pipelining (one request at a time, in order), the response queue
 *   routes.c   which handler answers a request: the paths of DESIGN.md's HTTP API
 *   models.c   the models served: the published tables, adding and removing, finding, metadata
 *   auth.c     bearer tokens and their scopes
 *   batches.c  batching: decoding requests into a model's batch, running it, answering
 *   infer.c    request and response bodies (infer.h)
 *   metrics.c  the counters and histograms, and /metrics in Prometheus' text format
 *
 * Threads: the server runs `threads` event loops, each on its own thread, and each does all the
 * work of the connections it was given: reading, HTTP, routing, decoding bodies into its own
 * batch buffers, running the model on its own graph, writing the answers.  Loop 0 also accepts
 * connections and deals them out in turn.  So a
 * request never changes threads: a handoff per request between a network thread and a worker
 * cost more CPU than the small models served here take to run (measured: bench/serve.sh).
 *
 * A batch is what one pass of a loop read: requests decoded during the poll phase wait in
 * their model's batch, and a check callback (right after the poll) runs every batch that holds
 * any.  So nothing waits for a batch to fill, and requests that arrive while a batch runs make
 * the next one.  max_queue_delay_us holds a batch back (a timer) for more rows.
 *
 * What is served (models, tokens) changes while the loops run: the control thread (the one that
 * called lunet_server_start) publishes a new serve_table, never changing a published one, and
 * each loop moves to it through every table in between when its inbox says so.  A model that a
 * table leaves out is retired loop by loop: a loop frees its part (graph and batch) once the
 * requests waiting in that batch are answered, and the last loop to do so frees the model.  So
 * a request finishes on the version it was routed to, and nothing takes a lock per request.
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
typedef struct serve_loop serve_loop;
typedef struct serve_conn serve_conn;
typedef struct serve_batch serve_batch;
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
    char request_id[65];          /* X-Request-Id: the client's (if it is 1 to 64 visible ASCII
                                     characters), else one made up; sent back and logged */
    uint64_t started_ns;          /* when its first byte arrived */
    bool has_json_len;            /* Inference-Header-Content-Length was sent: */
    bool json_len_invalid;        /*   not a number */
    size_t json_len;              /*   its value */
    bool has_authorization;       /* Authorization was sent: */
    char bearer[257];             /*   the token of "Bearer <token>" (not NUL-terminated), */
    size_t bearer_len;            /*   0 for any other value */
    serve_stats *stats;           /* whose metrics it counts in (routing sets a model's) */
} serve_request;

/* The limits and timeouts a connection works under (lunet_server_config's, resolved). */
typedef struct serve_limits {
    size_t max_header_bytes, max_body_bytes, max_write_queue_bytes;
    uint64_t header_timeout_ms, body_timeout_ms, idle_timeout_ms;
} serve_limits;

/* ---- connections (conn.c) ------------------------------------------------------------------- */

/* Opens a connection on loop l for the accepted socket fd (which it then owns, closing it on
 * failure); it reports each request to serve_handle (routes.c).  False when it could not. */
bool conn_open(serve_loop *l, uv_os_sock_t fd);
/* Sends the response to the connection's current request: status, body (JSON unless
 * content_type says otherwise), extra header lines (each ending in \r\n, may be NULL).  Then
 * reads on, or closes the connection when the request or the status asked for that.  Does
 * nothing on a connection that is closing. */
void conn_respond(serve_conn *c, int status, const char *content_type, const char *extra_headers, const char *body,
                  size_t body_len);
/* conn_respond with {"error": message} (message JSON-escaped). */
void conn_respond_error(serve_conn *c, int status, const char *extra_headers, const char *message);
/* The current request's body, swapped with *spare (an empty buffer, whose memory the
 * connection reuses): a batch keeps the body while it waits, without copying or allocating. */
void conn_swap_body(serve_conn *c, serve_buf *spare);
/* A batch holding the connection keeps its memory alive (even if it closes meanwhile) until
 * conn_release; respond before releasing. */
void conn_hold(serve_conn *c);
void conn_release(serve_conn *c);
/* Closes a connection at once (server shutdown). */
void conn_close(serve_conn *c);
/* Draining: an idle connection (between requests) closes within ms unless a request comes. */
void conn_wind_down(serve_conn *c, uint64_t ms);
/* Takes the first connection off l->to_feed (answered while l answered a batch) and parses
 * on with it. */
void conn_feed_later(serve_loop *l);
/* v in base 10 or 16 at out, NUL-terminated (room for 21 bytes); returns the digit count. */
size_t serve_digits(char *out, uint64_t v, unsigned base);
/* ns as milliseconds with three decimals ("12.345"), NUL-terminated; returns its length. */
size_t serve_millis(char *out, uint64_t ns);
/* The next connection of its loop's list. */
serve_conn *conn_next(serve_conn *c);
/* The request a connection is answering, and the loop it lives on. */
serve_request *conn_request(serve_conn *c);
serve_loop *conn_loop(serve_conn *c);

/* ---- metrics (metrics.c) ------------------------------------------------------------------- */

#define SERVE_TIME_BUCKETS 16  /* 100 us .. 10 s, then +Inf */
#define SERVE_BATCH_BUCKETS 11 /* 1 .. 1024 rows, then +Inf */
#define SERVE_STATUS_SLOTS 16  /* distinct statuses counted per model */

typedef struct serve_histogram {
    uint64_t counts[SERVE_TIME_BUCKETS + 1]; /* per bucket, not cumulative */
    uint64_t count;
    double sum;
} serve_histogram;

/* What one model name (all its versions), the unknown names, or the other paths count.  Every
 * loop writes them: the gauges are atomics, the rest is guarded by the server's metrics_lock. */
struct serve_stats {
    serve_stats *next;
    char label[72];               /* the model label value: its name, "_unknown", or "" */
    struct {
        int status;
        uint64_t count;
    } by_status[SERVE_STATUS_SLOTS];
    serve_histogram request_duration;
    atomic_llong waiting;         /* in a batch (its loop runs it, then answers): both gauges */
    serve_histogram queue_duration, compute_duration, batch_size;
    uint64_t inferences, batches, rejected_full, rejected_deadline;
    uint64_t loads_ok, loads_error; /* versions of this model loaded, or that failed to (lunet_server_count_load) */
};

/* The stats of label, made on first use (NULL when out of memory); from any thread. */
serve_stats *serve_stats_for(serve_server *s, const char *label);
/* An answered request. */
void serve_stats_request(serve_server *s, serve_stats *st, int status, double seconds);
/* A batch that ran: rows, compute time, each request's time in the batch, and how many of its
 * requests were too late (504). */
void serve_stats_batch(serve_server *s, serve_stats *st, int64_t rows, double compute_s, const double *queue_s,
                       int requests, int late);
/* The /metrics text. */
bool serve_metrics_write(serve_server *s, serve_buf *out);
void serve_stats_free(serve_server *s);

/* ---- models (models.c) ---------------------------------------------------------------------- */

#define SERVE_MAX_LABELS 8

typedef struct serve_model {
    char name[64];
    int64_t version;
    char version_text[24];
    char labels[SERVE_MAX_LABELS][64]; /* other names of this version ("stable") */
    int n_labels;
    infer_tensor_info input, output;
    char input_name[64], output_name[64];
    lunet_model **graphs;         /* one per loop */
    serve_batch *batches;         /* one per loop: the batch being made there */
    int max_batch_size, max_queue_size;
    int64_t max_queue_delay_us;
    serve_stats *stats;
    atomic_int parts_alive;       /* loops whose graph and batch are not freed yet */
} serve_model;

/* A bearer token and its scopes (LUNET_SCOPE_*). */
typedef struct serve_token {
    char *secret;
    size_t len;
    unsigned scopes;
} serve_token;

/* What the server serves, as one value: published whole by the control thread, never changed
 * after, read by the loops without a lock (see the top of this file). */
typedef struct serve_table {
    serve_model **models;         /* in the order added */
    int n;
    bool auth;                    /* tokens are required (lunet_server_set_tokens) */
    serve_token *tokens;          /* owned by the table */
    int n_tokens;
    struct serve_table *next;     /* the table published after this one */
    atomic_int holders;           /* loops that have not moved past it */
} serve_table;

/* The model of that name and version (version 0 and no label: the newest) in t, or NULL; a
 * version may be given by one of its labels instead. */
serve_model *serve_model_find(const serve_table *t, const char *name, size_t name_len, int64_t version,
                              const char *label, size_t label_len);
/* OIP model metadata, and TF Serving's model status (version 0: every version). */
bool serve_model_metadata(const serve_table *t, const serve_model *m, serve_buf *out);
bool serve_model_status(const serve_table *t, const char *name, size_t name_len, int64_t version, serve_buf *out);
/* The repository index (Triton's repository extension): every version served. */
bool serve_model_index(const serve_table *t, serve_buf *out);
/* A copy of t to publish, with room for `extra` more models, and t's tokens unless the caller
 * sets new ones (NULL when out of memory). */
serve_table *serve_table_copy(const serve_table *t, int extra, bool with_tokens);
/* Frees a table (not its models). */
void serve_table_free(serve_table *t);
/* Makes t the table the loops serve (the control thread only); the server owns it after. */
void serve_table_publish(serve_server *s, serve_table *t);
/* Moves loop l to the newest table (on l's thread, or after it ended), retiring on the way
 * the models each table dropped. */
void serve_loop_adopt(serve_loop *l);
/* Loop `index` is done with model m's part (its batch is empty): frees it, and m with the
 * last part. */
void serve_model_part_free(serve_model *m, int index);
/* Frees every table and model (no loop runs). */
void serve_models_free(serve_server *s);

/* ---- auth (auth.c) ---------------------------------------------------------------------------- */

/* Whether request r may go on to a route that needs `scope` (0: a health path); when not, it
 * has been answered 401 or 403. */
bool serve_authorized(const serve_table *t, serve_conn *c, unsigned scope);

/* ---- batches (batches.c) -------------------------------------------------------------------- */

/* A request waiting in a batch: its connection (held), its body and what was read of it. */
typedef struct serve_job {
    serve_conn *conn;
    serve_buf body;               /* the request's (binary tensor data is borrowed from it) */
    infer_request request;
    uint64_t queued_ns;
} serve_job;

/* One model's batch on one loop (only that loop's thread touches it).  Requests are decoded
 * into `in` as they arrive, rows after rows; the batch runs as one forward. */
struct serve_batch {
    serve_model *model;
    serve_loop *loop;
    serve_batch *next_waiting;    /* the loop's list of batches holding requests */
    bool listed;                  /* ... whether this one is on it */
    serve_job *jobs;              /* [0, n) wait; the slots after keep their bodies' memory */
    int n, cap;
    int64_t rows;
    void *in, *out;               /* (rows, input count), (rows, output count) in the graph's dtype */
    size_t in_cap, out_cap;
    double *queue_s;              /* each request's time in the batch, for the metrics */
    bool retired;                 /* the loop's table dropped the model: free after running */
};

/* Decodes connection c's inference request for model m into m's batch on c's loop, or answers
 * it at once (400 for a bad body, 503 when the batch holds max_queue_size requests). */
void serve_batch_submit(serve_conn *c, serve_model *m, infer_protocol protocol);
/* Runs the loop's batches that are due (all of them without max_queue_delay_us), and feeds
 * the connections their answers freed; arms the loop's delay timer for the others. */
void serve_batches_run_due(serve_loop *l);
/* Sets up model m's batch on loop l. */
void serve_batch_init(serve_batch *b, serve_model *m, serve_loop *l);
/* Drops the requests waiting in a batch, unanswered (shutdown: their connections are closing). */
void serve_batch_drop(serve_batch *b);
/* serve_batch_drop, and frees the batch's memory. */
void serve_batch_free(serve_batch *b);

/* ---- loops (loops.c) -------------------------------------------------------------------------- */

/* One event loop and its thread; index picks each model's graph and batch. */
struct serve_loop {
    serve_server *server;
    int index;
    uv_loop_t loop;
    uv_thread_t thread;
    bool thread_started, stopped;
    serve_table *table;           /* what this loop serves (serve_loop_adopt moves it on) */
    uv_async_t wake;              /* connections handed over, a new table, or stop */
    uv_prepare_t before_poll;     /* marks the poll phase's start ... */
    uv_check_t after_poll;        /* ... and end, where the batches a pass read run */
    bool polling;                 /* between the two: a batch made now runs at the check */
    uv_timer_t delay;             /* for batches held back by max_queue_delay_us */
    uv_mutex_t inbox_lock;        /* guards inbox and stop_asked */
    uv_os_sock_t *inbox;          /* accepted sockets handed to this loop */
    int inbox_len, inbox_cap;
    bool stop_asked, wind_down_asked, adopt_asked;
    serve_conn *conns;            /* open connections, linked through serve_conn.next */
    serve_batch *waiting;         /* batches holding requests */
    int answering;                /* > 0 while a batch's answers go out: conn_respond defers */
    serve_conn *to_feed;          /* ... the connections to parse on afterwards */
    uint64_t ids_made;            /* request ids this loop has made up */
};

/* Starts loop l's handles (false, with lunet_last_error set, when it cannot). */
bool serve_loop_init(serve_loop *l, serve_server *s, int index);
/* Gives l an accepted socket (from any thread): l opens a connection for it. */
void serve_loop_give(serve_loop *l, uv_os_sock_t fd);
/* Runs l on a new thread. */
bool serve_loop_start_thread(serve_loop *l);
/* Asks l to stop (from any thread): it closes its connections and handles, and its uv_run ends. */
void serve_loop_ask_stop(serve_loop *l);
/* Asks l (from any thread) to move to the newest table. */
void serve_loop_ask_adopt(serve_loop *l);
/* Asks l (from any thread) to wind down its connections: idle ones get a second to close. */
void serve_loop_ask_wind_down(serve_loop *l);
/* On l's thread: the wind-down itself. */
void serve_loop_wind_down(serve_loop *l);
/* Stops l on the calling thread, which must be l's (or l's thread must not be running). */
void serve_loop_stop(serve_loop *l);
/* Waits for l's thread to end (after it stopped); nothing when it has none. */
void serve_loop_join(serve_loop *l);
/* Joins l's thread, stops l if it has not, and frees what it holds. */
void serve_loop_close(serve_loop *l);

/* ---- routes (routes.c) ---------------------------------------------------------------------- */

/* Called for each whole request; must end in conn_respond (now or later). */
void serve_handle(serve_server *server, serve_conn *c);

/* ---- the server (server.c) ------------------------------------------------------------------ */

struct lunet_server {
    serve_loop *loops;            /* threads of them; loops[0] has the listener and the signals */
    int threads, loops_ready;     /* loops_ready: those serve_loop_init set up */
    uv_os_sock_t listen_fd;
    uv_poll_t listener;
    uv_timer_t accept_pause;      /* out of descriptors: accepting waits a little */
    uv_signal_t sigterm, sigint;
    uv_async_t stop;              /* lunet_server_stop from any thread, or the last connection closed */
    uv_timer_t drain_timer;       /* the drain delay, then the shutdown timeout */
    int64_t drain_delay_ms, shutdown_timeout_ms;
    atomic_bool draining;         /* a signal came: readiness is 503 */
    atomic_bool winding_down;     /* the listener closed: answers close their connections */
    int next_loop;                /* which loop the next connection goes to */
    serve_limits limits;
    int max_connections;
    atomic_int connections;
    atomic_bool stopping;
    bool started, quiet;
    int port;
    uint32_t id_prefix;           /* starts the request ids the server makes up: unique per run */
    serve_stats *stats, *other_stats, *unknown_stats;
    uv_mutex_t metrics_lock;      /* the stats, and the list of them */
    uv_mutex_t table_lock;        /* guards table (the newest) and each table's next */
    serve_table *table;
    bool protect_health;          /* lunet_server_options.protect_health */
    /* The control thread's (control.c): */
    uv_loop_t control;
    bool control_ready;
    uv_async_t loop_ended;        /* a loop's thread ended (the last: the server stopped) */
    atomic_int loops_running;
    uv_signal_t sighup;
    uv_timer_t settle, wait_timer;
    struct serve_watch *watches;  /* the paths lunet_server_watch watches */
    unsigned events;              /* what lunet_server_wait has to report, a bit per event */
};

/* A connection closed: while winding down, the last one stops the server. */
void serve_connection_closed(serve_server *s);
/* An answered request: its metrics, and a JSON access-log line on stdout. */
void serve_answered(serve_server *server, const serve_request *r, int status);
/* Stops the server (loop 0's thread, or any thread when no loop runs). */
void serve_stop_now(serve_server *s);
/* Control (control.c): sets up (false, with lunet_last_error, when it cannot) and frees the
 * control thread's loop and handles. */
bool serve_control_init(serve_server *s);
void serve_control_close(serve_server *s);
/* On a loop's thread as it ends: tells the control thread. */
void serve_control_loop_ended(serve_server *s);
/* SIGHUP (its handle is the control loop's; lunet_server_start starts it). */
void serve_control_on_hangup(uv_signal_t *h, int signum);
/* The reason phrase of an HTTP status. */
const char *serve_status_text(int status);

#endif /* LUNET_SERVE_H */
