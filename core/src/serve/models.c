/*
 * models.c: the models a server serves (serve.h): the tables that say what is served, and how
 * a table reaches the loops; adding, replacing and removing a version; finding one by name and
 * version or label; describing them (OIP model metadata, TF Serving's model status, the
 * repository index).
 *
 * The control thread publishes a new table for every change (serve_table_publish) and never
 * touches a published one.  Each loop walks from its table through every later one
 * (serve_loop_adopt), so it sees each model a table dropped, and retires its part of it: at
 * once when its batch is empty, else after the batch has run (batches.c).  A table is freed
 * by the last loop to move past it; a model by the last loop to free its part.
 */
#include "serve.h"

#include <stdlib.h>
#include <string.h>

static bool valid_name(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof ((serve_model *)0)->name) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.';
        if (!ok) return false;
    }
    return true;
}

static bool all_digits(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return false;
    return true;
}

static bool same_name(const serve_model *m, const char *name, size_t len) {
    return strlen(m->name) == len && memcmp(m->name, name, len) == 0;
}

static bool has_label(const serve_model *m, const char *label, size_t len) {
    for (int i = 0; i < m->n_labels; i++)
        if (strlen(m->labels[i]) == len && memcmp(m->labels[i], label, len) == 0) return true;
    return false;
}

serve_model *serve_model_find(const serve_table *t, const char *name, size_t len, int64_t version, const char *label,
                              size_t label_len) {
    serve_model *best = NULL;
    for (int i = 0; i < t->n; i++) {
        serve_model *m = t->models[i];
        if (!same_name(m, name, len)) continue;
        if (label) {
            if (has_label(m, label, label_len)) best = m; /* the one added last wins */
        } else if (version ? m->version == version : !best || m->version > best->version) {
            best = m;
        }
    }
    return best;
}

/* ---- tables --------------------------------------------------------------------------------------- */

void serve_table_free(serve_table *t) {
    for (int i = 0; i < t->n_tokens; i++) free(t->tokens[i].secret);
    free(t->tokens);
    free(t->models);
    free(t);
}


static bool table_has(const serve_table *t, const serve_model *m) {
    for (int i = 0; i < t->n; i++)
        if (t->models[i] == m) return true;
    return false;
}

serve_table *serve_table_copy(const serve_table *t, int extra, bool with_tokens) {
    serve_table *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->models = calloc((size_t)(t->n + extra) + 1, sizeof *c->models);
    if (!c->models) goto fail;
    if (t->n) memcpy(c->models, t->models, (size_t)t->n * sizeof *c->models);
    c->n = t->n;
    if (!with_tokens) return c;
    c->auth = t->auth;
    if (t->n_tokens && !(c->tokens = calloc((size_t)t->n_tokens, sizeof *c->tokens))) goto fail;
    for (int i = 0; i < t->n_tokens; i++) {
        serve_token *k = &c->tokens[i];
        *k = t->tokens[i];
        if (!(k->secret = malloc(k->len + 1))) goto fail;
        memcpy(k->secret, t->tokens[i].secret, k->len + 1);
        c->n_tokens++;
    }
    return c;
fail:
    serve_table_free(c);
    return NULL;
}

void serve_model_part_free(serve_model *m, int index) {
    lunet_model_free(m->graphs[index]);
    m->graphs[index] = NULL;
    serve_batch_free(&m->batches[index]);
    if (atomic_fetch_sub(&m->parts_alive, 1) == 1) {
        free(m->graphs);
        free(m->batches);
        free(m);
    }
}

/* Loop l no longer serves m: its part goes now, or once its waiting requests are answered. */
static void retire(serve_model *m, serve_loop *l) {
    serve_batch *b = &m->batches[l->index];
    if (b->listed) b->retired = true;
    else serve_model_part_free(m, l->index);
}

void serve_table_publish(serve_server *s, serve_table *t) {
    atomic_store(&t->holders, s->threads);
    uv_mutex_lock(&s->table_lock);
    serve_table *old = s->table;
    old->next = t;
    s->table = t;
    uv_mutex_unlock(&s->table_lock);
    if (!s->started) { /* no loop holds a table yet */
        for (int i = 0; i < old->n; i++)
            if (!table_has(t, old->models[i]))
                for (int j = 0; j < s->threads; j++) serve_model_part_free(old->models[i], j);
        serve_table_free(old);
        return;
    }
    for (int i = 0; i < s->threads; i++) serve_loop_ask_adopt(&s->loops[i]);
}

void serve_loop_adopt(serve_loop *l) {
    serve_server *s = l->server;
    uv_mutex_lock(&s->table_lock);
    serve_table *newest = s->table;
    uv_mutex_unlock(&s->table_lock);
    while (l->table && l->table != newest) {
        serve_table *t = l->table, *next = t->next;
        for (int i = 0; i < t->n; i++)
            if (!table_has(next, t->models[i])) retire(t->models[i], l);
        l->table = next;
        if (atomic_fetch_sub(&t->holders, 1) == 1) serve_table_free(t);
    }
}

void serve_models_free(serve_server *s) {
    for (int i = 0; i < s->threads; i++) serve_loop_adopt(&s->loops[i]);
    serve_table *t = s->table;
    for (int i = 0; i < t->n; i++)
        for (int j = 0; j < s->threads; j++) serve_model_part_free(t->models[i], j);
    serve_table_free(t);
    s->table = NULL;
}

/* ---- adding and removing --------------------------------------------------------------------- */

static void tensor_info(infer_tensor_info *t, char *name_buf, size_t name_size, const char *name, lunet_dtype dtype,
                        const int64_t *shape, int ndim) {
    snprintf(name_buf, name_size, "%s", name);
    t->name = name_buf;
    t->dtype = dtype;
    t->ndim = ndim;
    t->count = 1;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d], t->count *= shape[d];
}

static bool same_shape(const int64_t *a, int an, const int64_t *b, int bn) {
    return an == bn && memcmp(a, b, (size_t)an * sizeof *a) == 0;
}

static lunet_status check_model(const serve_server *s, const lunet_server_model *o) {
    if (!o->name || !valid_name(o->name))
        return lunet__fail(LUNET_ERR_ARG, "serve: a model name is 1 to 63 letters, digits, '_', '-' or '.', got \"%s\"",
                           o->name ? o->name : "(null)");
    if (o->version < 1) return lunet__fail(LUNET_ERR_ARG, "serve: model %s: version %lld is not >= 1", o->name,
                                           (long long)o->version);
    if (!o->graphs) return lunet__fail(LUNET_ERR_ARG, "serve: model %s: no graphs", o->name);
    const char *in_name = o->input_name ? o->input_name : "input", *out_name = o->output_name ? o->output_name : "output";
    if (!valid_name(in_name) || !valid_name(out_name))
        return lunet__fail(LUNET_ERR_ARG, "serve: model %s: input and output names are 1 to 63 letters, digits, '_', "
                           "'-' or '.'", o->name);
    if (o->n_labels < 0 || o->n_labels > SERVE_MAX_LABELS)
        return lunet__fail(LUNET_ERR_ARG, "serve: model %s: %d labels; at most %d", o->name, o->n_labels,
                           SERVE_MAX_LABELS);
    for (int i = 0; i < o->n_labels; i++)
        if (!o->labels[i] || !valid_name(o->labels[i]) || all_digits(o->labels[i], strlen(o->labels[i])))
            return lunet__fail(LUNET_ERR_ARG, "serve: model %s: label \"%s\" is not a name (letters, digits, '_', '-' "
                               "or '.', not all digits)", o->name, o->labels[i] ? o->labels[i] : "(null)");
    int in_ndim, out_ndim;
    const int64_t *in_shape = o->graphs[0] ? lunet_model_input_shape(o->graphs[0], &in_ndim) : NULL;
    const int64_t *out_shape = o->graphs[0] ? lunet_model_output_shape(o->graphs[0], &out_ndim) : NULL;
    for (int i = 0; i < s->threads; i++) {
        int a, b;
        const int64_t *is = o->graphs[i] ? lunet_model_input_shape(o->graphs[i], &a) : NULL;
        const int64_t *os = o->graphs[i] ? lunet_model_output_shape(o->graphs[i], &b) : NULL;
        if (!is || !in_shape || !same_shape(is, a, in_shape, in_ndim) || !same_shape(os, b, out_shape, out_ndim) ||
            lunet_model_dtype(o->graphs[i]) != lunet_model_dtype(o->graphs[0]))
            return lunet__fail(LUNET_ERR_ARG, "serve: model %s: the %d graphs (one per loop) must be alike; graph %d "
                               "differs", o->name, s->threads, i + 1);
        for (int j = 0; j < i; j++)
            if (o->graphs[j] == o->graphs[i])
                return lunet__fail(LUNET_ERR_ARG, "serve: model %s: graphs %d and %d are the same graph; each loop "
                                   "needs its own", o->name, j + 1, i + 1);
    }
    return LUNET_OK;
}

/* Runs each graph of m once on zeros, one row and a full batch, so that the first requests do
 * not pay for first-use work (allocations, kernel set-up). */
static lunet_status warm(const serve_server *s, const serve_model *m) {
    int64_t rows = m->max_batch_size;
    size_t in_bytes = (size_t)(rows * m->input.count) * lunet_dtype_size(m->input.dtype);
    size_t out_bytes = (size_t)(rows * m->output.count) * lunet_dtype_size(m->output.dtype);
    void *in = calloc(1, in_bytes ? in_bytes : 1), *out = malloc(out_bytes ? out_bytes : 1);
    lunet_status st = in && out ? LUNET_OK : lunet__nomem("serve");
    for (int i = 0; i < s->threads && st == LUNET_OK; i++) {
        st = lunet_model_run(m->graphs[i], in, 1, out);
        if (st == LUNET_OK && rows > 1) st = lunet_model_run(m->graphs[i], in, rows, out);
    }
    free(in);
    free(out);
    return st;
}

/* A new model of o (its graphs not yet owned), or NULL with lunet_last_error set. */
static serve_model *model_new(serve_server *s, const lunet_server_model *o) {
    serve_model *m = calloc(1, sizeof *m);
    lunet_model **graphs = calloc((size_t)s->threads, sizeof *graphs);
    serve_batch *batches = calloc((size_t)s->threads, sizeof *batches);
    serve_stats *stats = serve_stats_for(s, o->name);
    if (!m || !graphs || !batches || !stats) {
        free(m);
        free(graphs);
        free(batches);
        lunet__nomem("serve");
        return NULL;
    }
    snprintf(m->name, sizeof m->name, "%s", o->name);
    m->version = o->version;
    snprintf(m->version_text, sizeof m->version_text, "%lld", (long long)o->version);
    for (int i = 0; i < o->n_labels; i++) snprintf(m->labels[i], sizeof m->labels[i], "%s", o->labels[i]);
    m->n_labels = o->n_labels;
    int in_ndim, out_ndim;
    const int64_t *in_shape = lunet_model_input_shape(o->graphs[0], &in_ndim);
    const int64_t *out_shape = lunet_model_output_shape(o->graphs[0], &out_ndim);
    lunet_dtype dtype = lunet_model_dtype(o->graphs[0]);
    tensor_info(&m->input, m->input_name, sizeof m->input_name, o->input_name ? o->input_name : "input", dtype,
                in_shape, in_ndim);
    tensor_info(&m->output, m->output_name, sizeof m->output_name, o->output_name ? o->output_name : "output", dtype,
                out_shape, out_ndim);
    memcpy(graphs, o->graphs, (size_t)s->threads * sizeof *graphs);
    m->graphs = graphs;
    m->batches = batches;
    for (int i = 0; i < s->threads; i++) serve_batch_init(&batches[i], m, &s->loops[i]);
    m->max_batch_size = o->max_batch_size > 0 ? o->max_batch_size : 64;
    m->max_queue_delay_us = o->max_queue_delay_us > 0 ? o->max_queue_delay_us : 0;
    m->max_queue_size = o->max_queue_size > 0 ? o->max_queue_size : 1024;
    m->stats = stats;
    atomic_store(&m->parts_alive, s->threads);
    return m;
}

/* The index of name's version in t, or -1. */
static int index_of(const serve_table *t, const char *name, int64_t version) {
    for (int i = 0; i < t->n; i++)
        if (t->models[i]->version == version && strcmp(t->models[i]->name, name) == 0) return i;
    return -1;
}

/* t without its model at index i (the order of the others kept). */
static void drop_at(serve_table *t, int i) {
    memmove(&t->models[i], &t->models[i + 1], (size_t)(t->n - i - 1) * sizeof *t->models);
    t->n--;
}

lunet_status lunet_server_add_model(lunet_server *s, const lunet_server_model *o) {
    lunet_status st = check_model(s, o);
    if (st != LUNET_OK) return st;
    serve_model *m = model_new(s, o);
    if (!m) return LUNET_ERR_NOMEM;
    serve_table *t = NULL;
    if ((st = warm(s, m)) != LUNET_OK)
        st = lunet__fail(st, "serve: model %s version %lld failed its warm-up run: %s", o->name, (long long)o->version,
                         lunet_last_error());
    else if (!(t = serve_table_copy(s->table, 1, true)))
        st = lunet__nomem("serve");
    if (st != LUNET_OK) { /* the caller still owns the graphs */
        free(m->graphs);
        free(m->batches);
        free(m);
        return st;
    }
    int old = index_of(t, m->name, m->version); /* replaced: the new one goes last, where labels look first */
    if (old >= 0) drop_at(t, old);
    t->models[t->n++] = m;
    serve_table_publish(s, t);
    return LUNET_OK;
}

lunet_status lunet_server_remove_model(lunet_server *s, const char *name, int64_t version) {
    int i = index_of(s->table, name ? name : "", version);
    if (i < 0) return lunet__fail(LUNET_ERR_ARG, "serve: model %s version %lld is not served", name ? name : "(null)",
                                  (long long)version);
    serve_table *t = serve_table_copy(s->table, 0, true);
    if (!t) return lunet__nomem("serve");
    drop_at(t, i);
    serve_table_publish(s, t);
    return LUNET_OK;
}

void lunet_server_count_load(lunet_server *s, const char *name, bool ok) {
    serve_stats *st = serve_stats_for(s, name && valid_name(name) ? name : "_unknown");
    if (!st) return;
    uv_mutex_lock(&s->metrics_lock);
    if (ok) st->loads_ok++;
    else st->loads_error++;
    uv_mutex_unlock(&s->metrics_lock);
}

/* ---- descriptions -------------------------------------------------------------------------------- */

static void write_tensor(serve_buf *out, bool *ok, const infer_tensor_info *t) {
    *ok = *ok && serve_buf_printf(out, "{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[-1", t->name,
                                  infer_datatype_name(infer_datatype_of(t->dtype)));
    for (int d = 0; d < t->ndim; d++) *ok = *ok && serve_buf_printf(out, ",%lld", (long long)t->shape[d]);
    *ok = *ok && serve_buf_append(out, "]}", 2);
}

/* The version of name after `after` in t (0: none), so that lists come in order. */
static int64_t next_version(const serve_table *t, const char *name, size_t len, int64_t after) {
    int64_t next = 0;
    for (int i = 0; i < t->n; i++) {
        const serve_model *m = t->models[i];
        if (same_name(m, name, len) && m->version > after && (!next || m->version < next)) next = m->version;
    }
    return next;
}

bool serve_model_metadata(const serve_table *t, const serve_model *m, serve_buf *out) {
    /* Names are checked at add_model: letters, digits and "_-.", nothing JSON escapes. */
    bool ok = serve_buf_printf(out, "{\"name\":\"%s\",\"versions\":[", m->name);
    size_t len = strlen(m->name);
    for (int64_t v = next_version(t, m->name, len, 0), first = 1; v; v = next_version(t, m->name, len, v), first = 0)
        ok = ok && serve_buf_printf(out, "%s\"%lld\"", first ? "" : ",", (long long)v);
    ok = ok && serve_buf_append(out, "],\"platform\":\"lunet\",\"inputs\":[", 31);
    write_tensor(out, &ok, &m->input);
    ok = ok && serve_buf_append(out, "],\"outputs\":[", 13);
    write_tensor(out, &ok, &m->output);
    return ok && serve_buf_append(out, "]}", 2);
}

bool serve_model_status(const serve_table *t, const char *name, size_t len, int64_t version, serve_buf *out) {
    bool ok = serve_buf_append(out, "{\"model_version_status\":[", 25), first = true;
    for (int64_t v = next_version(t, name, len, 0); v; v = next_version(t, name, len, v)) {
        if (version && v != version) continue;
        ok = ok && serve_buf_printf(out, "%s{\"version\":\"%lld\",\"state\":\"AVAILABLE\",\"status\":{\"error_code\":\"OK\","
                                         "\"error_message\":\"\"}}", first ? "" : ",", (long long)v);
        first = false;
    }
    return ok && serve_buf_append(out, "]}", 2);
}

bool serve_model_index(const serve_table *t, serve_buf *out) {
    bool ok = serve_buf_append(out, "[", 1);
    for (int i = 0; i < t->n; i++) {
        const serve_model *m = t->models[i];
        ok = ok && serve_buf_printf(out, "%s{\"name\":\"%s\",\"version\":\"%lld\",\"state\":\"READY\"}", i ? "," : "",
                                    m->name, (long long)m->version);
    }
    return ok && serve_buf_append(out, "]", 1);
}
