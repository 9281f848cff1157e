/*
 * routes.c: which handler answers a request (serve.h), for the paths of DESIGN.md's HTTP API:
 *
 *   GET  /v2                                   server metadata
 *   GET  /v2/health/live, /v2/health/ready     health
 *   GET  /v2/models/M[/versions/V]             model metadata
 *   GET  /v2/models/M[/versions/V]/ready       model readiness
 *   POST /v2/models/M[/versions/V]/infer       inference (OIP v2, JSON or binary tensor data)
 *   GET  /v1/models/M[/versions/N]             TF Serving model status
 *   POST /v1/models/M[/versions/N]:predict     TF Serving predict
 *   GET  /metrics                              Prometheus
 *   POST /v2/repository/index                  the versions served (Triton's repository extension)
 *
 * A version V may be one of its labels; TF Serving's paths take /labels/L for /versions/N.
 * GET routes also answer HEAD.  An unknown path is 404, a known one asked with another
 * method 405 with Allow, an unknown model or version 404; all as {"error": ...}.  With tokens
 * set, a route checks its scope (auth.c) before anything else: the health paths none, /v2 and
 * the model routes infer, /metrics metrics, the repository index admin.
 */
#include "serve.h"

#include <string.h>

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

/* Takes the prefix want off [*p, *p + *len) if it is there. */
static bool take(const char **p, size_t *len, const char *want) {
    size_t n = strlen(want);
    if (*len < n || memcmp(*p, want, n) != 0) return false;
    *p += n, *len -= n;
    return true;
}

/* A path segment up to the next '/' (or ':' when colon_ends). */
static void segment(const char **p, size_t *len, bool colon_ends, const char **seg, size_t *seg_len) {
    size_t n = 0;
    while (n < *len && (*p)[n] != '/' && !(colon_ends && (*p)[n] == ':')) n++;
    *seg = *p, *seg_len = n;
    *p += n, *len -= n;
}

/* ---- answers ------------------------------------------------------------------------------------- */

static void respond_buf(serve_conn *c, serve_buf *b, bool ok) {
    if (ok) conn_respond(c, 200, NULL, NULL, b->data, b->len);
    else conn_respond_error(c, 500, NULL, "the server ran out of memory for the response");
    serve_buf_free(b);
}

static bool method_is(serve_conn *c, enum http_method want) {
    enum http_method m = conn_request(c)->method;
    if (m == want || (want == HTTP_GET && m == HTTP_HEAD)) return true;
    char msg[64];
    snprintf(msg, sizeof msg, "%s is not allowed here; use %s", http_method_str(m), http_method_str(want));
    conn_respond_error(c, 405, want == HTTP_GET ? "Allow: GET, HEAD\r\n" : "Allow: POST\r\n", msg);
    return false;
}

/* Ready for traffic: not draining or stopped. */
static bool ready(const serve_server *s) { return !s->draining && !s->stopping; }

static void server_routes(serve_server *s, serve_conn *c, const char *path, size_t len) {
    bool readiness = path_is(path, len, "/v2/health/ready");
    bool health = readiness || path_is(path, len, "/v2/health/live");
    if (!serve_authorized(conn_loop(c)->table, c, health ? 0 : LUNET_SCOPE_INFER)) return;
    const char *body = path_is(path, len, "/v2") ? "{\"name\":\"lunet\",\"version\":\"" LUNET_VERSION
                                                   "\",\"extensions\":[\"binary_tensor_data\"]}"
                       : !readiness ? "{\"live\":true}"
                       : ready(s)   ? "{\"ready\":true}"
                                    : "{\"ready\":false}";
    if (!method_is(c, HTTP_GET)) return;
    conn_respond(c, readiness && !ready(s) ? 503 : 200, NULL, NULL, body, strlen(body));
}

static void metrics_route(serve_server *s, serve_conn *c) {
    if (!serve_authorized(conn_loop(c)->table, c, LUNET_SCOPE_METRICS) || !method_is(c, HTTP_GET)) return;
    serve_buf b = {0};
    bool ok = serve_metrics_write(s, &b);
    if (ok) conn_respond(c, 200, "text/plain; version=0.0.4; charset=utf-8", NULL, b.data, b.len);
    else conn_respond_error(c, 500, NULL, "the server ran out of memory for the metrics");
    serve_buf_free(&b);
}

static void index_route(serve_conn *c) {
    const serve_table *t = conn_loop(c)->table;
    if (!serve_authorized(t, c, LUNET_SCOPE_ADMIN) || !method_is(c, HTTP_POST)) return;
    serve_buf b = {0};
    respond_buf(c, &b, serve_model_index(t, &b));
}

/* ---- model routes -------------------------------------------------------------------------------- */

typedef enum model_action { METADATA, READY, INFER, TF_STATUS, TF_PREDICT } model_action;

/* The model of the request, or NULL when it answered 404 (unknown model, version or label). */
static serve_model *find_model(serve_server *s, serve_conn *c, const char *name, size_t name_len, const char *version,
                               size_t version_len) {
    const serve_table *t = conn_loop(c)->table;
    serve_request *r = conn_request(c);
    int64_t v = 0;
    bool digits = version_len > 0 && version_len < 19;
    for (size_t i = 0; digits && i < version_len; i++) {
        digits = version[i] >= '0' && version[i] <= '9';
        v = v * 10 + (version[i] - '0');
    }
    char quoted[LUNET__JSON_QUOTE_BUF], msg[LUNET__JSON_QUOTE_BUF * 2 + 64];
    serve_model *newest = serve_model_find(t, name, name_len, 0, NULL, 0);
    if (!newest) {
        r->stats = s->unknown_stats;
        snprintf(msg, sizeof msg, "unknown model %s", lunet__json_quote(quoted, sizeof quoted, name, name_len));
        conn_respond_error(c, 404, NULL, msg);
        return NULL;
    }
    r->stats = newest->stats; /* every version of a name counts in one */
    serve_model *m = !version ? newest
                     : digits ? (v > 0 ? serve_model_find(t, name, name_len, v, NULL, 0) : NULL)
                              : serve_model_find(t, name, name_len, 0, version, version_len);
    if (!m) {
        char qv[LUNET__JSON_QUOTE_BUF];
        snprintf(msg, sizeof msg, "model %s has no version %s", lunet__json_quote(quoted, sizeof quoted, name, name_len),
                 lunet__json_quote(qv, sizeof qv, version, version_len));
        conn_respond_error(c, 404, NULL, msg);
        return NULL;
    }
    return m;
}

static void model_route(serve_server *s, serve_conn *c, const char *name, size_t name_len, const char *version,
                        size_t version_len, model_action action) {
    const serve_table *t = conn_loop(c)->table;
    if (!serve_authorized(t, c, LUNET_SCOPE_INFER)) return;
    serve_model *m = find_model(s, c, name, name_len, version, version_len);
    if (!m) return;
    if (!method_is(c, action == INFER || action == TF_PREDICT ? HTTP_POST : HTTP_GET)) return;
    serve_buf b = {0};
    switch (action) {
    case METADATA:
        respond_buf(c, &b, serve_model_metadata(t, m, &b));
        return;
    case TF_STATUS:
        respond_buf(c, &b, serve_model_status(t, m->name, strlen(m->name), version ? m->version : 0, &b));
        return;
    case READY:
        if (!ready(s)) conn_respond_error(c, 503, NULL, "the server is stopping");
        else respond_buf(c, &b, serve_buf_printf(&b, "{\"name\":\"%s\",\"ready\":true}", m->name));
        return;
    case INFER:
    case TF_PREDICT:
        serve_batch_submit(c, m, action == INFER ? INFER_OIP : INFER_TF_PREDICT);
        return;
    }
}

/* /v2/models/... and /v1/models/... after the prefix; false when the path is none of them. */
static bool model_routes(serve_server *s, serve_conn *c, const char *p, size_t len, bool tf) {
    const char *name, *version = NULL;
    size_t name_len, version_len = 0;
    segment(&p, &len, tf, &name, &name_len);
    if (name_len == 0) return false;
    if (take(&p, &len, "/versions/") || (tf && take(&p, &len, "/labels/"))) {
        segment(&p, &len, tf, &version, &version_len);
        if (version_len == 0) return false;
    }
    model_action action;
    if (len == 0) action = tf ? TF_STATUS : METADATA;
    else if (!tf && path_is(p, len, "/ready")) action = READY;
    else if (!tf && path_is(p, len, "/infer")) action = INFER;
    else if (tf && path_is(p, len, ":predict")) action = TF_PREDICT;
    else return false;
    model_route(s, c, name, name_len, version, version_len, action);
    return true;
}

void serve_handle(serve_server *s, serve_conn *c) {
    const char *path;
    size_t len;
    url_path(conn_request(c), &path, &len);
    if (path_is(path, len, "/v2") || path_is(path, len, "/v2/health/live") || path_is(path, len, "/v2/health/ready")) {
        server_routes(s, c, path, len);
        return;
    }
    if (path_is(path, len, "/metrics")) {
        metrics_route(s, c);
        return;
    }
    if (path_is(path, len, "/v2/repository/index")) {
        index_route(c);
        return;
    }
    const char *p = path;
    size_t n = len;
    if (take(&p, &n, "/v2/models/") && model_routes(s, c, p, n, false)) return;
    p = path, n = len;
    if (take(&p, &n, "/v1/models/") && model_routes(s, c, p, n, true)) return;
    conn_respond_error(c, 404, NULL, "no such route");
}
