/*
 * serve.h: the HTTP model server's parts, private to core/src/serve.
 *
 *   server.c   the lunet_server of lunet.h: the libuv loop, the listener, signals, routing
 *   conn.c     one client connection: http-parser with the limits and timeouts, keep-alive,
 *              pipelining (one request at a time, in order), the response queue
 *
 * Everything here runs on the loop's thread.  A request is handed to the server once its
 * whole body has arrived (serve_request); the server answers it with conn_respond, now or
 * later, and the connection goes on parsing whatever the client pipelined after it only then,
 * so responses leave in the order the requests came.
 */
#ifndef LUNET_SERVE_H
#define LUNET_SERVE_H

#include "../internal.h"

#include <http_parser.h>
#include <uv.h>

typedef struct lunet_server serve_server;
typedef struct serve_conn serve_conn;

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
/* Closes a connection at once (server shutdown). */
void conn_close(serve_conn *c);
/* The request a connection is answering. */
const serve_request *conn_request(const serve_conn *c);

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
};

/* Called for each whole request; must end in conn_respond (now or later). */
void serve_handle(serve_server *server, serve_conn *c);
/* One JSON access-log line on stdout for an answered request. */
void serve_log_access(serve_server *server, const serve_request *r, int status);
/* The reason phrase of an HTTP status. */
const char *serve_status_text(int status);

#endif /* LUNET_SERVE_H */
