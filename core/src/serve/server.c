/*
 * server.c: lunet_server (lunet.h): the listener and the dealing out of connections to the
 * loops, the signals that stop it, the access log.  Loops are loops.c's, connections
 * conn.c's, routes routes.c's, batches batches.c's.
 *
 * Loop 0 accepts: its poll handle watches the listening socket, and each accepted socket goes
 * to the next loop in turn (round robin), so the connections of a busy client spread evenly
 * over the loops, which SO_REUSEPORT's hashing of addresses does not promise.
 */
#define _GNU_SOURCE /* accept4 */
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

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

/* s[0..len), up to stop (or its end), into out (size bytes, NUL-terminated) with the bytes JSON
 * would need to escape replaced by '?': what goes into a log line as a JSON string. */
static void log_safe(char *out, size_t size, const char *s, size_t len, char stop) {
    size_t n = 0;
    for (size_t i = 0; i < len && s[i] != stop && n < size - 1; i++) {
        unsigned char ch = (unsigned char)s[i];
        out[n++] = ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\' ? '?' : (char)ch;
    }
    out[n] = '\0';
}

void serve_answered(serve_server *s, const serve_request *r, int status) {
    double seconds = r->started_ns ? (double)(uv_hrtime() - r->started_ns) / 1e9 : 0;
    serve_stats_request(s, r->stats, status, seconds);
    if (s->quiet) return;
    char path[256], id[sizeof r->request_id];
    log_safe(path, sizeof path, r->url.data ? r->url.data : "", r->url.len, '?'); /* up to the query */
    log_safe(id, sizeof id, r->request_id, strlen(r->request_id), '\0');
    double ms = seconds * 1e3;
    printf("{\"method\":\"%s\",\"path\":\"%s\",\"status\":%d,\"duration_ms\":%.3f,\"request_id\":\"%s\"}\n",
           http_method_str(r->method), path, status, ms, id);
    fflush(stdout);
}

/* ---- accepting ---------------------------------------------------------------------------------- */

static void on_acceptable(uv_poll_t *h, int status, int events);

static void resume_accepting(uv_timer_t *t) {
    serve_server *s = t->data;
    if (!s->stopping && !atomic_load(&s->winding_down)) uv_poll_start(&s->listener, UV_READABLE, on_acceptable);
}

/* Accepts what is waiting (a bounded number per pass, so that loop 0's own clients are not
 * starved by a flood of new ones) and deals the sockets out. */
static void on_acceptable(uv_poll_t *h, int status, int events) {
    serve_server *s = h->data;
    (void)events;
    if (status < 0 || s->stopping) return;
    for (int i = 0; i < 64; i++) {
        int fd = accept4(s->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                /* Out of descriptors or memory: the listener would wake the loop again at once,
                 * so accepting pauses while connections close. */
                uv_poll_stop(&s->listener);
                uv_timer_start(&s->accept_pause, resume_accepting, 100, 0);
            }
            return;
        }
        if (atomic_fetch_add(&s->connections, 1) >= s->max_connections) { /* over the limit */
            close(fd);
            atomic_fetch_sub(&s->connections, 1);
            continue;
        }
        serve_loop *l = &s->loops[s->next_loop];
        s->next_loop = (s->next_loop + 1) % s->threads;
        if (l->index == 0) conn_open(l, fd);
        else serve_loop_give(l, fd);
    }
}

/* Opens a listening socket on host:port, and says why not in lunet_last_error. */
static bool listen_on(serve_server *s, const char *host, int port) {
    struct sockaddr_storage addr;
    int rc = uv_ip4_addr(host, port, (struct sockaddr_in *)&addr);
    if (rc != 0) rc = uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr);
    if (rc != 0) {
        lunet__fail(LUNET_ERR_ARG, "serve: %s is not an IPv4 or IPv6 address", host);
        return false;
    }
    socklen_t len = addr.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, (struct sockaddr *)&addr, len) != 0 || listen(fd, 511) != 0) {
        int err = errno;
        if (fd >= 0) close(fd);
        lunet__fail(LUNET_ERR_IO, "serve: cannot listen on %s port %d: %s", host, port, strerror(err));
        return false;
    }
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    getsockname(fd, (struct sockaddr *)&bound, &bound_len);
    s->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                : ((struct sockaddr_in *)&bound)->sin_port);
    s->listen_fd = fd;
    return true;
}

/* ---- stopping ----------------------------------------------------------------------------------- */

static void listener_closed(uv_handle_t *h) {
    serve_server *s = h->data;
    close(s->listen_fd);
    s->listen_fd = -1;
}

/* No more accepting, every loop closes its connections, and the loops' uv_run return. */
void serve_stop_now(serve_server *s) {
    if (s->stopping) return;
    s->stopping = true;
    if (!uv_is_closing((uv_handle_t *)&s->listener)) uv_close((uv_handle_t *)&s->listener, listener_closed);
    uv_close((uv_handle_t *)&s->accept_pause, NULL);
    uv_close((uv_handle_t *)&s->drain_timer, NULL);
    uv_close((uv_handle_t *)&s->sigterm, NULL);
    uv_close((uv_handle_t *)&s->sigint, NULL);
    uv_close((uv_handle_t *)&s->stop, NULL);
    serve_loop_stop(&s->loops[0]);
    for (int i = 1; i < s->loops_ready; i++) serve_loop_ask_stop(&s->loops[i]);
}

static void on_stop(uv_async_t *h) { serve_stop_now(h->data); }

void serve_connection_closed(serve_server *s) {
    if (atomic_load(&s->winding_down) && atomic_load(&s->connections) == 0 && !atomic_load(&s->stopping))
        uv_async_send(&s->stop);
}

static void on_shutdown_timeout(uv_timer_t *t) {
    serve_server *s = t->data;
    if (!s->quiet) fprintf(stderr, "lunet: the shutdown timeout passed; closing %d connections\n",
                           atomic_load(&s->connections));
    serve_stop_now(s);
}

/* The drain delay is over: no more connections; the open ones close after their next answer
 * (idle ones within a second), and the last to close stops the server. */
static void wind_down(uv_timer_t *t) {
    serve_server *s = t->data;
    uv_close((uv_handle_t *)&s->listener, listener_closed);
    uv_timer_stop(&s->accept_pause);
    atomic_store(&s->winding_down, true);
    serve_loop_wind_down(&s->loops[0]);
    for (int i = 1; i < s->threads; i++) serve_loop_ask_wind_down(&s->loops[i]);
    if (atomic_load(&s->connections) == 0) {
        serve_stop_now(s);
        return;
    }
    if (s->shutdown_timeout_ms > 0) uv_timer_start(&s->drain_timer, on_shutdown_timeout, (uint64_t)s->shutdown_timeout_ms, 0);
    else serve_stop_now(s);
}

/* The first SIGTERM or SIGINT drains; a second stops at once. */
static void on_signal(uv_signal_t *h, int signum) {
    serve_server *s = h->data;
    if (atomic_load(&s->draining) || s->stopping) {
        serve_stop_now(s);
        return;
    }
    atomic_store(&s->draining, true);
    if (!s->quiet)
        fprintf(stderr, "lunet: %s: readiness is 503; the listener closes in %lld ms\n", signum == SIGINT ? "SIGINT" : "SIGTERM",
                (long long)(s->drain_delay_ms > 0 ? s->drain_delay_ms : 0));
    uv_timer_start(&s->drain_timer, wind_down, (uint64_t)(s->drain_delay_ms > 0 ? s->drain_delay_ms : 0), 0);
}

/* ---- the server --------------------------------------------------------------------------------- */

static size_t or_default(size_t v, size_t d) { return v ? v : d; }

/* Frees what create made before it failed (no loop has run). */
static lunet_status create_failed(serve_server *s) {
    char reason[512];
    snprintf(reason, sizeof reason, "%s", lunet_last_error());
    for (int i = 0; i < s->loops_ready; i++) serve_loop_close(&s->loops[i]);
    if (s->listen_fd >= 0) close(s->listen_fd);
    serve_stats_free(s);
    serve_control_close(s);
    uv_mutex_destroy(&s->metrics_lock);
    uv_mutex_destroy(&s->table_lock);
    free(s->table);
    free(s->loops);
    free(s);
    return lunet__fail(LUNET_ERR_IO, "%s", reason);
}

lunet_status lunet_server_create(lunet_server **out, const lunet_server_options *o) {
    *out = NULL;
    if (o->port < 0 || o->port > 65535) return lunet__fail(LUNET_ERR_ARG, "serve: port %d is not in 0..65535", o->port);
    serve_server *s = calloc(1, sizeof *s);
    if (!s) return lunet__nomem("serve");
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
    s->drain_delay_ms = o->drain_delay_ms < 0 ? 0 : o->drain_delay_ms ? o->drain_delay_ms : 5000;
    s->shutdown_timeout_ms = o->shutdown_timeout_ms < 0 ? 0 : o->shutdown_timeout_ms ? o->shutdown_timeout_ms : 25000;
    s->id_prefix = (uint32_t)(uv_hrtime() ^ ((uint64_t)uv_os_getpid() << 16)); /* differs between runs */
    s->protect_health = o->protect_health;
    s->listen_fd = -1;
    uv_mutex_init(&s->metrics_lock);
    uv_mutex_init(&s->table_lock);
    bool control = serve_control_init(s);
    s->loops = calloc((size_t)s->threads, sizeof *s->loops);
    s->table = calloc(1, sizeof *s->table);
    s->other_stats = serve_stats_for(s, "");
    s->unknown_stats = serve_stats_for(s, "_unknown");
    if (!control) return create_failed(s);
    if (!s->loops || !s->table || !s->other_stats || !s->unknown_stats) {
        lunet__nomem("serve");
        return create_failed(s);
    }
    if (!listen_on(s, o->host ? o->host : "0.0.0.0", o->port)) return create_failed(s);
    for (int i = 0; i < s->threads; i++) {
        if (!serve_loop_init(&s->loops[i], s, i)) return create_failed(s);
        s->loops_ready++;
    }
    uv_loop_t *loop0 = &s->loops[0].loop;
    uv_poll_init_socket(loop0, &s->listener, s->listen_fd);
    uv_timer_init(loop0, &s->accept_pause);
    uv_timer_init(loop0, &s->drain_timer);
    uv_signal_init(loop0, &s->sigterm);
    uv_signal_init(loop0, &s->sigint);
    uv_async_init(loop0, &s->stop, on_stop);
    s->listener.data = s->accept_pause.data = s->drain_timer.data = s->sigterm.data = s->sigint.data = s->stop.data = s;
    *out = s;
    return LUNET_OK;
}

int lunet_server_port(const lunet_server *s) { return s->port; }

int lunet_server_threads(const lunet_server *s) { return s->threads; }

lunet_status lunet_server_start(lunet_server *s) {
    if (s->started || s->stopping) return lunet__fail(LUNET_ERR_ARG, "serve: the server has run already; create another");
    s->started = true;
    uv_poll_start(&s->listener, UV_READABLE, on_acceptable);
    uv_signal_start(&s->sigterm, on_signal, SIGTERM);
    uv_signal_start(&s->sigint, on_signal, SIGINT);
    uv_signal_start(&s->sighup, serve_control_on_hangup, SIGHUP);
    for (int i = 0; i < s->threads; i++) s->loops[i].table = s->table;
    atomic_store(&s->loops_running, s->threads);
    for (int i = 0; i < s->threads; i++) {
        if (serve_loop_start_thread(&s->loops[i])) continue;
        char reason[512];
        snprintf(reason, sizeof reason, "%s", lunet_last_error());
        atomic_fetch_sub(&s->loops_running, s->threads - i);
        if (i == 0) serve_stop_now(s); /* no loop runs */
        else lunet_server_stop(s);     /* loop 0 stops the others */
        return lunet__fail(LUNET_ERR_IO, "%s", reason);
    }
    return LUNET_OK;
}

/* Waits until the loops have ended (their threads joined), passing over other events. */
static void wait_stopped(serve_server *s) {
    lunet_server_event event = LUNET_SERVER_TIMEOUT;
    while (event != LUNET_SERVER_STOPPED && lunet_server_wait(s, -1, &event) == LUNET_OK) continue;
}

lunet_status lunet_server_run(lunet_server *s) {
    lunet_status st = lunet_server_start(s);
    if (s->started) wait_stopped(s);
    return st;
}

void lunet_server_stop(lunet_server *s) { uv_async_send(&s->stop); }

void lunet_server_free(lunet_server *s) {
    if (!s) return;
    if (s->started) {
        if (atomic_load(&s->loops_running) > 0) lunet_server_stop(s); /* still running */
        wait_stopped(s);
    }
    serve_stop_now(s); /* a server never run still holds its handles */
    for (int i = 0; i < s->loops_ready; i++) serve_loop_close(&s->loops[i]);
    if (s->listen_fd >= 0) close(s->listen_fd);
    serve_models_free(s);
    serve_stats_free(s);
    serve_control_close(s);
    uv_mutex_destroy(&s->metrics_lock);
    uv_mutex_destroy(&s->table_lock);
    free(s->loops);
    free(s);
}
