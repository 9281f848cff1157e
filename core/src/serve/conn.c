/*
 * conn.c: one client connection (serve.h).  Bytes read are kept in `in` and parsed from
 * `in_pos` by http-parser, which is paused at the end of each request: the request goes to
 * the server, and parsing goes on past it only once it has been answered.  So pipelined
 * requests are answered one at a time, in order.  Reading goes on while a request is with the
 * server (stopping and starting it for each request cost two epoll_ctl calls), but only up to
 * READ_AHEAD unparsed bytes, which keeps a client from queueing unbounded input.
 *
 * Limits are decided as early as the protocol allows: the header bytes as they arrive (431),
 * the body from Content-Length before a byte of it is read (413; a chunked body when it passes
 * the limit), the time from a request's first byte to its last header and to its last body
 * byte (408).  A request that breaks one is answered with {"error": ...} and the connection
 * closes, as its stream can no longer be trusted; the server and its other clients go on.
 */
#define _POSIX_C_SOURCE 200809L
#include "serve.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

struct serve_conn {
    uv_tcp_t tcp;                 /* handle.data points back here */
    uv_timer_t timer;             /* the header, body or idle timeout running now */
    serve_server *server;
    serve_loop *loop;
    serve_conn *next, *prev;      /* the loop's list */
    serve_conn *next_to_feed;     /* the loop's to_feed list, when on it */
    http_parser parser;
    serve_buf in;                 /* bytes read; those before in_pos are parsed */
    size_t in_pos;
    serve_request req;
    size_t header_bytes;
    char field[32];               /* the header name being read (longer names are not kept) */
    size_t field_len;
    serve_buf value;              /* its value, for the headers the server reads */
    bool in_value, value_cut, expect_continue; /* value_cut: longer than what is kept */
    bool in_message, headers_done, complete; /* a request has begun / its headers / all of it arrived */
    bool with_server;             /* it is being answered */
    bool feeding;                 /* conn_feed is on the stack */
    bool keep_alive, closing;
    bool eof;                     /* the client will send no more (what was read is still answered) */
    bool to_feed;                 /* on the loop's to_feed list */
    int early_status;             /* a limit broken while parsing: answered at once */
    size_t write_queued;
    int open_handles;             /* tcp and timer: the connection is freed when both closed */
    int holds;                    /* ... and nothing holds it (conn_hold) */
};

/* ---- buffers ---------------------------------------------------------------------------------- */

/* Room for n more bytes and the terminating NUL. */
static bool reserve(serve_buf *b, size_t n) {
    if (b->len + n + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown) return false;
    b->data = grown, b->cap = cap;
    return true;
}

bool serve_buf_append(serve_buf *b, const void *data, size_t n) {
    if (!reserve(b, n)) return false;
    if (n) memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0'; /* always a C string too */
    return true;
}

bool serve_buf_printf(serve_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(b, (size_t)n)) return false;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return true;
}

void serve_buf_free(serve_buf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

/* ---- closing ---------------------------------------------------------------------------------- */

static void conn_free(serve_conn *c) {
    serve_buf_free(&c->in);
    serve_buf_free(&c->req.url);
    serve_buf_free(&c->req.body);
    serve_buf_free(&c->value);
    free(c);
}

static void handle_closed(uv_handle_t *h) {
    serve_conn *c = h->data;
    if (--c->open_handles == 0 && c->holds == 0) conn_free(c);
}

void conn_hold(serve_conn *c) { c->holds++; }

void conn_release(serve_conn *c) {
    if (--c->holds == 0 && c->open_handles == 0) conn_free(c);
}

void conn_close(serve_conn *c) {
    if (c->closing) return;
    c->closing = true;
    serve_loop *l = c->loop;
    if (c->prev) c->prev->next = c->next;
    else l->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    atomic_fetch_sub(&c->server->connections, 1);
    serve_connection_closed(c->server);
    uv_close((uv_handle_t *)&c->timer, handle_closed);
    uv_close((uv_handle_t *)&c->tcp, handle_closed);
}

/* ---- timeouts --------------------------------------------------------------------------------- */

static void timed_out(uv_timer_t *t) {
    serve_conn *c = t->data;
    if (!c->in_message || c->with_server) { /* idle between requests: just hang up */
        conn_close(c);
        return;
    }
    conn_respond_error(c, 408, NULL, c->headers_done ? "the request's body took too long to arrive"
                                               : "the request's headers took too long to arrive");
}

static void arm_timer(serve_conn *c, uint64_t ms) {
    if (ms) uv_timer_start(&c->timer, timed_out, ms, 0);
    else uv_timer_stop(&c->timer);
}

/* ---- parsing ---------------------------------------------------------------------------------- */

static serve_conn *of(http_parser *p) { return p->data; }

/* Ends parsing here with a status to answer (a limit broken). */
static int stop_with(serve_conn *c, int status) {
    c->early_status = status;
    http_parser_pause(&c->parser, 1);
    return 0;
}

static int count_header_bytes(serve_conn *c, size_t n) {
    c->header_bytes += n;
    return c->header_bytes > c->server->limits.max_header_bytes ? stop_with(c, 431) : 0;
}

/* What a request knows about itself starts empty: at a connection's start and after each
 * response, not when the parser sees a request begin, since bytes the parser refuses before
 * a request begins are answered (400) and logged as a request of their own. */
static void request_reset(serve_conn *c) {
    c->req.url.len = c->req.body.len = 0;
    c->req.request_id[0] = '\0';
    c->req.started_ns = 0;
    c->req.has_json_len = c->req.json_len_invalid = false;
    c->req.json_len = 0;
    c->req.has_authorization = false;
    c->req.bearer_len = 0;
    c->req.stats = c->server->other_stats;
}

static int on_message_begin(http_parser *p) {
    serve_conn *c = of(p);
    c->in_message = true, c->headers_done = c->complete = false, c->expect_continue = false;
    c->header_bytes = 0, c->field_len = 0, c->in_value = false, c->value_cut = false;
    c->value.len = 0;
    c->req.started_ns = uv_hrtime();
    arm_timer(c, c->server->limits.header_timeout_ms);
    return 0;
}

static int on_url(http_parser *p, const char *at, size_t n) {
    serve_conn *c = of(p);
    if (count_header_bytes(c, n)) return 0;
    if (c->early_status) return 0;
    return serve_buf_append(&c->req.url, at, n) ? 0 : stop_with(c, 500);
}

/* Takes the header just read (name in field, value in value) if the server reads it. */
static void header_done(serve_conn *c) {
    if (!c->in_value || c->field_len >= sizeof c->field) return;
    c->field[c->field_len] = '\0';
    const char *v = c->value.data ? c->value.data : "";
    if (strcasecmp(c->field, "expect") == 0) {
        c->expect_continue = strcasecmp(v, "100-continue") == 0;
    } else if (strcasecmp(c->field, "x-request-id") == 0) {
        size_t n = c->value.len < sizeof c->req.request_id - 1 ? c->value.len : sizeof c->req.request_id - 1;
        memcpy(c->req.request_id, v, n);
        c->req.request_id[n] = '\0';
    } else if (strcasecmp(c->field, "authorization") == 0) {
        /* "Bearer <token>": the token is kept for auth.c; anything else is no token. */
        size_t n = c->value.len;
        bool bearer = !c->value_cut && n > 7 && strncasecmp(v, "bearer ", 7) == 0;
        size_t skip = 7;
        while (bearer && skip < n && v[skip] == ' ') skip++;
        c->req.bearer_len = bearer && n - skip < sizeof c->req.bearer ? n - skip : 0;
        if (c->req.bearer_len) memcpy(c->req.bearer, v + skip, c->req.bearer_len);
        c->req.has_authorization = true;
    } else if (strcasecmp(c->field, "inference-header-content-length") == 0) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(v, &end, 10);
        c->req.has_json_len = true;
        c->req.json_len_invalid = *v < '0' || *v > '9' || *end || errno == ERANGE || n > SIZE_MAX || c->value_cut;
        c->req.json_len = (size_t)n;
    }
}

/* A name or value may come in pieces (split across reads); a name after a value starts the
 * next header.  Names too long for `field` are none the server reads. */
static int on_header_field(http_parser *p, const char *at, size_t n) {
    serve_conn *c = of(p);
    if (count_header_bytes(c, n)) return 0;
    if (c->in_value) {
        header_done(c);
        c->in_value = false, c->value_cut = false, c->field_len = 0, c->value.len = 0;
    }
    if (c->field_len + n < sizeof c->field) memcpy(c->field + c->field_len, at, n), c->field_len += n;
    else c->field_len = sizeof c->field;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t n) {
    serve_conn *c = of(p);
    if (count_header_bytes(c, n)) return 0;
    c->in_value = true;
    bool kept = c->field_len < sizeof c->field && c->value.len + n <= 300; /* a bearer token and its scheme */
    c->value_cut |= !kept;
    if (kept && !serve_buf_append(&c->value, at, n)) return stop_with(c, 500);
    return 0;
}

static int on_headers_complete(http_parser *p) {
    serve_conn *c = of(p);
    header_done(c);
    c->in_value = false, c->value_cut = false, c->field_len = 0, c->value.len = 0;
    c->headers_done = true;
    const serve_limits *lim = &c->server->limits;
    bool has_length = (p->flags & F_CONTENTLENGTH) != 0;
    if (has_length && p->content_length > lim->max_body_bytes) return stop_with(c, 413);
    bool has_body = has_length ? p->content_length > 0 : (p->flags & F_CHUNKED) != 0;
    if (has_body && c->expect_continue && p->http_minor >= 1) {
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uv_buf_t b = uv_buf_init((char *)cont, sizeof cont - 1);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1); /* nothing else is queued yet: it goes first */
    }
    arm_timer(c, has_body ? lim->body_timeout_ms : 0);
    return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
    serve_conn *c = of(p);
    if (c->req.body.len + n > c->server->limits.max_body_bytes) return stop_with(c, 413);
    return serve_buf_append(&c->req.body, at, n) ? 0 : stop_with(c, 500);
}

static int on_message_complete(http_parser *p) {
    serve_conn *c = of(p);
    c->complete = true;
    c->req.method = (enum http_method)p->method;
    c->keep_alive = http_should_keep_alive(p) != 0;
    arm_timer(c, 0);
    http_parser_pause(p, 1); /* one request at a time */
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf);
static void alloc_read(uv_handle_t *h, size_t suggested, uv_buf_t *buf);

enum { READ_AHEAD = 64 * 1024 }; /* the most unparsed input kept while a request is answered */

static size_t unparsed(const serve_conn *c) { return c->in.len - c->in_pos; }

/* Whether the responses waiting to be sent leave room for more: else parsing and reading wait. */
static bool can_queue_writes(const serve_conn *c) { return c->write_queued <= c->server->limits.max_write_queue_bytes; }

static void read_more(serve_conn *c) {
    if (!c->closing && c->keep_alive && !c->eof && unparsed(c) < READ_AHEAD && can_queue_writes(c))
        uv_read_start((uv_stream_t *)&c->tcp, alloc_read, on_read); /* UV_EALREADY when reading: fine */
}

/* Parses what has been read until a request is whole (it goes to the server), a limit or a
 * protocol error ends the connection, or the input runs out. */
static void conn_feed(serve_conn *c) {
    if (c->feeding) return;
    c->feeding = true;
    /* After a response that closes the connection nothing more is parsed (RFC 9112 9.6): the
     * stream may be broken, and a parser in its error state would answer again and again. */
    while (!c->closing && !c->with_server && c->keep_alive && c->in_pos < c->in.len && can_queue_writes(c)) {
        size_t n = http_parser_execute(&c->parser, &parser_settings, c->in.data + c->in_pos, c->in.len - c->in_pos);
        c->in_pos += n;
        enum http_errno err = HTTP_PARSER_ERRNO(&c->parser);
        if (err == HPE_PAUSED) http_parser_pause(&c->parser, 0);
        else if (err != HPE_OK) {
            char msg[160];
            snprintf(msg, sizeof msg, "malformed HTTP request: %s", http_errno_description(err));
            conn_respond_error(c, 400, NULL, msg);
            break;
        }
        if (c->early_status) {
            int status = c->early_status;
            conn_respond_error(c, status, NULL, status == 431   ? "the request's headers are larger than the server accepts"
                                          : status == 413 ? "the request's body is larger than the server accepts"
                                                          : "the server ran out of memory reading the request");
            break;
        }
        if (c->complete) {
            c->complete = false;
            c->with_server = true;
            if (unparsed(c) >= READ_AHEAD) uv_read_stop((uv_stream_t *)&c->tcp);
            serve_handle(c->server, c);
        }
    }
    c->feeding = false;
    read_more(c);
    if (c->eof && !c->closing && !c->with_server && c->keep_alive && can_queue_writes(c)) {
        /* Every whole request the client sent has been answered: close once the answers are out. */
        c->keep_alive = false;
        if (c->write_queued == 0) {
            conn_close(c);
            return;
        }
    }
    if (!c->closing && !c->with_server && !c->in_message) arm_timer(c, c->server->limits.idle_timeout_ms);
}

static void alloc_read(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
    serve_conn *c = h->data;
    (void)suggested;
    enum { CHUNK = 64 * 1024 };
    if (c->in_pos > 0) { /* what was parsed has been copied out: keep only the rest */
        memmove(c->in.data, c->in.data + c->in_pos, unparsed(c));
        c->in.len -= c->in_pos;
        c->in_pos = 0;
    }
    if (!reserve(&c->in, CHUNK)) {
        *buf = uv_buf_init(NULL, 0); /* libuv reports UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init(c->in.data + c->in.len, (unsigned)(c->in.cap - c->in.len - 1));
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf) {
    serve_conn *c = stream->data;
    (void)buf;
    if (nread < 0) { /* EOF or an error: what was read is answered, then the connection closes */
        uv_read_stop(stream);
        c->eof = true;
        if (nread != UV_EOF) c->keep_alive = false; /* a reset: nothing can be sent */
        if (!c->with_server && !c->keep_alive) conn_close(c);
        else conn_feed(c);
        return;
    }
    c->in.len += (size_t)nread;
    conn_feed(c);
    if (!c->closing && unparsed(c) >= READ_AHEAD) uv_read_stop(stream); /* parsing waits: so does reading */
}

/* ---- writing ---------------------------------------------------------------------------------- */

typedef struct write_req {
    uv_write_t req;
    serve_conn *conn;
    size_t len;
    char data[];
} write_req;

static void on_written(uv_write_t *w, int status) {
    write_req *wr = (write_req *)w;
    serve_conn *c = wr->conn;
    c->write_queued -= wr->len;
    free(wr);
    if (c->closing) return;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!c->keep_alive && !c->with_server && c->write_queued == 0) {
        conn_close(c);
        return;
    }
    if (!c->with_server && c->keep_alive) conn_feed(c);
}

serve_request *conn_request(serve_conn *c) { return &c->req; }

size_t serve_digits(char *out, uint64_t v, unsigned base) {
    char tmp[20];
    size_t n = 0;
    do tmp[n++] = "0123456789abcdef"[v % base], v /= base;
    while (v);
    for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

size_t serve_millis(char *out, uint64_t ns) {
    uint64_t us = (ns + 500) / 1000;
    size_t n = serve_digits(out, us / 1000, 10);
    out[n++] = '.';
    for (uint64_t frac = us % 1000, div = 100; div; div /= 10) out[n++] = (char)('0' + frac / div % 10);
    out[n] = '\0';
    return n;
}

/* The request's X-Request-Id: the client's when it is printable ASCII without spaces (it goes
 * back in a header and into the log), else "<server prefix>-<loop>-<count>", unique per run. */
static void settle_request_id(serve_conn *c) {
    char *id = c->req.request_id;
    bool usable = id[0] != '\0';
    for (size_t i = 0; usable && id[i]; i++) usable = id[i] > 0x20 && id[i] < 0x7f;
    if (usable) return;
    size_t n = serve_digits(id, c->server->id_prefix, 16);
    id[n++] = '-';
    n += serve_digits(id + n, (uint64_t)c->loop->index, 16);
    id[n++] = '-';
    serve_digits(id + n, ++c->loop->ids_made, 16);
}

serve_loop *conn_loop(serve_conn *c) { return c->loop; }

serve_conn *conn_next(serve_conn *c) { return c->next; }

void conn_wind_down(serve_conn *c, uint64_t ms) {
    if (!c->closing && !c->in_message && !c->with_server) arm_timer(c, ms); /* idle: the idle timeout, shortened */
}

void conn_swap_body(serve_conn *c, serve_buf *spare) {
    serve_buf body = c->req.body;
    c->req.body = *spare;
    c->req.body.len = 0;
    *spare = body;
}

/* After a response: read and parse on now, or, while the loop answers a batch, once it is done
 * (parsing now could add to the batch being answered). */
static void go_on(serve_conn *c) {
    if (c->feeding) return; /* conn_feed is on the stack and goes on by itself */
    serve_loop *l = c->loop;
    if (l->answering) {
        if (c->to_feed) return;
        c->to_feed = true;
        c->next_to_feed = l->to_feed;
        l->to_feed = c;
        conn_hold(c);
        return;
    }
    conn_feed(c);
}

void conn_feed_later(serve_loop *l) {
    serve_conn *c = l->to_feed;
    l->to_feed = c->next_to_feed;
    c->to_feed = false;
    if (!c->closing && !c->with_server && c->keep_alive) conn_feed(c);
    conn_release(c);
}

void conn_respond(serve_conn *c, int status, const char *content_type, const char *extra_headers, const char *body,
                  size_t body_len) {
    if (c->closing) return;
    /* Errors of the stream itself leave it in an unknown place: close after answering. */
    if (status == 400 || status == 408 || status == 413 || status == 431 || c->early_status) c->keep_alive = false;
    if (atomic_load(&c->server->winding_down)) c->keep_alive = false; /* draining: the client goes elsewhere */
    c->req.method = (enum http_method)c->parser.method; /* known from the request line on */
    settle_request_id(c);
    serve_answered(c->server, &c->req, status);
    size_t content_length = body_len;
    if (c->req.method == HTTP_HEAD) body_len = 0; /* the headers as for GET, no body */
    /* The head is put together by hand: vsnprintf was a tenth of a small response's CPU. */
    char code[24], length[24];
    serve_digits(code, (uint64_t)(status > 0 ? status : 0), 10);
    serve_digits(length, content_length, 10);
    const char *reason = serve_status_text(status);
    const char *type = content_type ? content_type : "application/json";
    const char *connection = !c->keep_alive                ? "Connection: close\r\n"
                             : c->parser.http_minor == 0 ? "Connection: keep-alive\r\n"
                                                         : "";
    const char *parts[] = {"HTTP/1.1 ", code, " ", reason, "\r\nContent-Type: ", type, "\r\nContent-Length: ", length,
                           "\r\nX-Request-Id: ", c->req.request_id, "\r\n", connection,
                           extra_headers ? extra_headers : "", "\r\n"};
    size_t part_len[sizeof parts / sizeof *parts], head_len = 0;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) {
        part_len[i] = strlen(parts[i]);
        head_len += part_len[i];
    }
    write_req *wr = malloc(sizeof *wr + head_len + body_len);
    if (!wr) {
        conn_close(c);
        return;
    }
    wr->conn = c;
    wr->len = head_len + body_len;
    char *at = wr->data;
    for (size_t i = 0; i < sizeof parts / sizeof *parts; i++) memcpy(at, parts[i], part_len[i]), at += part_len[i];
    if (body_len) memcpy(at, body, body_len);
    uv_buf_t b = uv_buf_init(wr->data, (unsigned)wr->len);
    c->write_queued += wr->len;
    c->with_server = false, c->in_message = false, c->early_status = 0;
    request_reset(c);
    if (uv_write(&wr->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0) {
        c->write_queued -= wr->len;
        free(wr);
        conn_close(c);
        return;
    }
    if (!c->keep_alive) { /* no more requests: stop reading, close once written */
        uv_read_stop((uv_stream_t *)&c->tcp);
        arm_timer(c, 0);
        return;
    }
    go_on(c);
}

void conn_respond_error(serve_conn *c, int status, const char *extra_headers, const char *message) {
    /* Messages quote what a client sent through lunet__json_quote, so they are ASCII. */
    lunet__json_writer body = {0};
    lunet__json_write_raw(&body, "{\"error\":", 9);
    lunet__json_write_string(&body, message, strlen(message));
    lunet__json_write_raw(&body, "}", 1);
    if (!body.failed) conn_respond(c, status, NULL, extra_headers, body.data, body.len);
    else conn_close(c);
    lunet__json_writer_free(&body);
}

/* ---- accepting -------------------------------------------------------------------------------- */

bool conn_open(serve_loop *l, uv_os_sock_t fd) {
    serve_conn *c = calloc(1, sizeof *c);
    if (!c || uv_tcp_init(&l->loop, &c->tcp) != 0) {
        free(c);
        close(fd);
        atomic_fetch_sub(&l->server->connections, 1);
        return false;
    }
    c->server = l->server;
    c->loop = l;
    uv_timer_init(&l->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->open_handles = 2;
    c->next = l->conns;
    if (l->conns) l->conns->prev = c;
    l->conns = c;
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->keep_alive = true;
    request_reset(c);
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        conn_close(c);
        return false;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, alloc_read, on_read);
    arm_timer(c, l->server->limits.idle_timeout_ms);
    return true;
}
