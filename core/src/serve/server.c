/*
 * server.c: lunet_server (lunet.h): the loop, the listener, the signals that stop it, the
 * access log.  Connections are conn.c's, routes routes.c's, workers workers.c's.
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

void serve_answered(serve_server *s, const serve_request *r, int status) {
    double seconds = r->started_ns ? (double)(uv_hrtime() - r->started_ns) / 1e9 : 0;
    serve_stats_request(r->stats ? r->stats : s->other_stats, status, seconds);
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
    double ms = seconds * 1e3;
    printf("{\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"duration_ms\":%.3f,\"request_id\":\"%s\"}\n",
           http_method_str(r->method), path, status, ms, id);
    fflush(stdout);
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
    serve_workers_stop(s);
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
    s->threads = o->threads > 0 ? o->threads : (int)uv_available_parallelism();
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
    uv_mutex_init(&s->metrics_lock);
    s->other_stats = serve_stats_for(s, "");
    s->unknown_stats = serve_stats_for(s, "_unknown");
    if (!s->other_stats || !s->unknown_stats || !serve_workers_start(s)) {
        lunet_server_free(s);
        return lunet__nomem("serve");
    }
    *out = s;
    return LUNET_OK;
}

int lunet_server_port(const lunet_server *s) { return s->port; }

int lunet_server_threads(const lunet_server *s) { return s->threads; }

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
    serve_models_free(s);
    serve_stats_free(s);
    uv_mutex_destroy(&s->metrics_lock);
    free(s);
}
