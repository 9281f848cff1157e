/*
 * server.c: lunet_server (lunet.h): the loop, the listener, the signals that stop it, the
 * routes and the access log.  Connections are conn.c's.
 *
 * Routes so far: GET /v2 (server metadata), /v2/health/live and /v2/health/ready; any other
 * path is 404 and a known path asked with another method is 405, both as {"error": ...}.
 */
#define _POSIX_C_SOURCE 200809L
#include "serve.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- responses ---------------------------------------------------------------------------------- */

const char *serve_status_text(int status) {
    switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Unknown";
    }
}

void serve_log_access(serve_server *s, const serve_request *r, int status) {
    if (s->quiet) return;
    /* The path is printed up to its query, with bytes that need escaping in JSON replaced. */
    char path[256];
    size_t n = 0;
    for (size_t i = 0; i < r->url.len && r->url.data[i] != '?' && n < sizeof path - 1; i++) {
        unsigned char ch = (unsigned char)r->url.data[i];
        path[n++] = ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    path[n] = '\0';
    char id[sizeof r->request_id];
    for (n = 0; r->request_id[n]; n++) {
        unsigned char ch = (unsigned char)r->request_id[n];
        id[n] = ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    id[n] = '\0';
    double ms = r->started_ns ? (double)(uv_hrtime() - r->started_ns) / 1e6 : 0;
    printf("{\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"duration_ms\":%.3f,\"request_id\":\"%s\"}\n",
           http_method_str(r->method), path, status, ms, id);
    fflush(stdout);
}

/* ---- routes ------------------------------------------------------------------------------------- */

static void respond_json(serve_conn *c, const char *body) { conn_respond(c, 200, NULL, NULL, body, strlen(body)); }

/* The path of the url, without the query: [*path, *path + *len). */
static void url_path(const serve_request *r, const char **path, size_t *len) {
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(r->url.data, r->url.len, 0, &u) == 0 && (u.field_set & (1 << UF_PATH))) {
        *path = r->url.data + u.field_data[UF_PATH].off;
        *len = u.field_data[UF_PATH].len;
    } else {
        *path = r->url.data ? r->url.data : "";
        *len = r->url.len;
    }
}

static bool path_is(const char *path, size_t len, const char *want) {
    return len == strlen(want) && memcmp(path, want, len) == 0;
}

void serve_handle(serve_server *s, serve_conn *c) {
    const serve_request *r = conn_request(c);
    const char *path;
    size_t len;
    url_path(r, &path, &len);
    const char *body = NULL;
    if (path_is(path, len, "/v2")) body = "{\"name\":\"lunet\",\"version\":\"" LUNET_VERSION "\",\"extensions\":[\"binary_tensor_data\"]}";
    else if (path_is(path, len, "/v2/health/live")) body = "{\"live\":true}";
    else if (path_is(path, len, "/v2/health/ready")) body = s->stopping ? NULL : "{\"ready\":true}";
    else {
        conn_respond_error(c, 404, NULL, "no such route");
        return;
    }
    if (r->method != HTTP_GET && r->method != HTTP_HEAD) {
        char msg[64];
        snprintf(msg, sizeof msg, "%s is not allowed here; use GET", http_method_str(r->method));
        conn_respond_error(c, 405, "Allow: GET, HEAD\r\n", msg);
        return;
    }
    if (!body) {
        static const char not_ready[] = "{\"ready\":false}";
        conn_respond(c, 503, NULL, NULL, not_ready, sizeof not_ready - 1);
        return;
    }
    respond_json(c, body);
}

/* ---- the loop ----------------------------------------------------------------------------------- */

static void on_connection(uv_stream_t *listener, int status) {
    serve_server *s = listener->data;
    if (status < 0 || s->stopping) return;
    if (!conn_accept(s, listener, &s->limits)) return;
    if (s->connections > s->max_connections) conn_close(s->conns); /* the newest: over the limit */
}

static void stop_now(serve_server *s) {
    if (s->stopping) return;
    s->stopping = true;
    uv_close((uv_handle_t *)&s->listener, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->stop, NULL);
    while (s->conns) conn_close(s->conns);
}

static void on_signal(uv_signal_t *h, int signum) {
    (void)signum;
    stop_now(h->data);
}

static void on_stop(uv_async_t *h) { stop_now(h->data); }

static size_t or_default(size_t v, size_t d) { return v ? v : d; }

lunet_status lunet_server_create(lunet_server **out, const lunet_server_options *o) {
    *out = NULL;
    serve_server *s = calloc(1, sizeof *s);
    if (!s) return lunet__nomem("serve");
    const char *host = o->host ? o->host : "0.0.0.0";
    s->limits = (serve_limits){
        .max_header_bytes = or_default(o->max_header_bytes, 16 << 10),
        .max_body_bytes = or_default(o->max_body_bytes, (size_t)64 << 20),
        .max_write_queue_bytes = or_default(o->max_write_queue_bytes, 4 << 20),
        .header_timeout_ms = or_default((size_t)(o->header_timeout_ms > 0 ? o->header_timeout_ms : 0), 10000),
        .body_timeout_ms = or_default((size_t)(o->body_timeout_ms > 0 ? o->body_timeout_ms : 0), 30000),
        .idle_timeout_ms = or_default((size_t)(o->idle_timeout_ms > 0 ? o->idle_timeout_ms : 0), 60000),
    };
    s->max_connections = o->max_connections > 0 ? o->max_connections : 1024;
    s->quiet = o->quiet;
    if (o->port < 0 || o->port > 65535) {
        free(s);
        return lunet__fail(LUNET_ERR_ARG, "serve: port %d is not in 0..65535", o->port);
    }
    int rc = uv_loop_init(&s->loop);
    if (rc != 0) {
        free(s);
        return lunet__fail(LUNET_ERR_IO, "serve: cannot start an event loop: %s", uv_strerror(rc));
    }
    struct sockaddr_storage addr;
    rc = uv_ip4_addr(host, o->port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(host, o->port, (struct sockaddr_in6 *)&addr);
    if (rc == 0) rc = uv_tcp_init(&s->loop, &s->listener);
    if (rc == 0) {
        s->listener.data = s;
        rc = uv_tcp_bind(&s->listener, (const struct sockaddr *)&addr, 0);
        if (rc == 0) rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
        if (rc != 0) uv_close((uv_handle_t *)&s->listener, NULL);
    }
    if (rc != 0) {
        uv_run(&s->loop, UV_RUN_NOWAIT); /* let the closed handle go */
        uv_loop_close(&s->loop);
        free(s);
        return lunet__fail(LUNET_ERR_IO, "serve: cannot listen on %s port %d: %s", host, o->port, uv_strerror(rc));
    }
    struct sockaddr_storage bound;
    int bound_len = sizeof bound;
    uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &bound_len);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    uv_signal_init(&s->loop, &s->sigterm);
    uv_signal_init(&s->loop, &s->sigint);
    uv_async_init(&s->loop, &s->stop, on_stop);
    s->sigterm.data = s->sigint.data = s->stop.data = s;
    *out = s;
    return LUNET_OK;
}

int lunet_server_port(const lunet_server *s) { return s->port; }

lunet_status lunet_server_run(lunet_server *s) {
    if (s->stopping) return lunet__fail(LUNET_ERR_ARG, "serve: the server has stopped; create another");
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    return LUNET_OK;
}

void lunet_server_stop(lunet_server *s) { uv_async_send(&s->stop); }

void lunet_server_free(lunet_server *s) {
    if (!s) return;
    stop_now(s); /* a server never run still holds its handles */
    uv_run(&s->loop, UV_RUN_DEFAULT);
    uv_loop_close(&s->loop);
    free(s);
}
