/*
 * models.c: the models a server serves (serve.h): adding a version (lunet_server_add_model),
 * finding one by name and version, and describing them (OIP model metadata, TF Serving's
 * model status).  Models are added before the server runs; the loops only read the list.
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

static bool same_name(const serve_model *m, const char *name, size_t len) {
    return strlen(m->name) == len && memcmp(m->name, name, len) == 0;
}

serve_model *serve_model_find(serve_server *s, const char *name, size_t len, int64_t version) {
    serve_model *best = NULL;
    for (serve_model *m = s->models; m; m = m->next) {
        if (!same_name(m, name, len)) continue;
        if (version ? m->version == version : !best || m->version > best->version) best = m;
    }
    return best;
}


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

lunet_status lunet_server_add_model(lunet_server *s, const lunet_server_model *o) {
    if (!o->name || !valid_name(o->name))
        return lunet__fail(LUNET_ERR_ARG, "serve: a model name is 1 to 63 letters, digits, '_', '-' or '.', got \"%s\"",
                           o->name ? o->name : "(null)");
    if (o->version < 1) return lunet__fail(LUNET_ERR_ARG, "serve: model %s: version %lld is not >= 1", o->name,
                                           (long long)o->version);
    if (serve_model_find(s, o->name, strlen(o->name), o->version))
        return lunet__fail(LUNET_ERR_ARG, "serve: model %s version %lld is served already", o->name,
                           (long long)o->version);
    if (!o->graphs) return lunet__fail(LUNET_ERR_ARG, "serve: model %s: no graphs", o->name);
    const char *in_name = o->input_name ? o->input_name : "input", *out_name = o->output_name ? o->output_name : "output";
    if (!valid_name(in_name) || !valid_name(out_name))
        return lunet__fail(LUNET_ERR_ARG, "serve: model %s: input and output names are 1 to 63 letters, digits, '_', "
                           "'-' or '.'", o->name);
    int in_ndim, out_ndim;
    const int64_t *in_shape = lunet_model_input_shape(o->graphs[0], &in_ndim);
    const int64_t *out_shape = lunet_model_output_shape(o->graphs[0], &out_ndim);
    for (int i = 0; i < s->threads; i++) {
        int a, b;
        const int64_t *is = o->graphs[i] ? lunet_model_input_shape(o->graphs[i], &a) : NULL;
        const int64_t *os = o->graphs[i] ? lunet_model_output_shape(o->graphs[i], &b) : NULL;
        if (!is || !same_shape(is, a, in_shape, in_ndim) || !same_shape(os, b, out_shape, out_ndim) ||
            lunet_model_dtype(o->graphs[i]) != lunet_model_dtype(o->graphs[0]))
            return lunet__fail(LUNET_ERR_ARG, "serve: model %s: the %d graphs (one per loop) must be alike; graph %d "
                               "differs", o->name, s->threads, i + 1);
        for (int j = 0; j < i; j++)
            if (o->graphs[j] == o->graphs[i])
                return lunet__fail(LUNET_ERR_ARG, "serve: model %s: graphs %d and %d are the same graph; each loop "
                                   "needs its own", o->name, j + 1, i + 1);
    }
    serve_model *m = calloc(1, sizeof *m);
    lunet_model **graphs = calloc((size_t)s->threads, sizeof *graphs);
    serve_batch *batches = calloc((size_t)s->threads, sizeof *batches);
    serve_stats *stats = serve_stats_for(s, o->name);
    if (!m || !graphs || !batches || !stats) {
        free(m);
        free(graphs);
        free(batches);
        return lunet__nomem("serve");
    }
    snprintf(m->name, sizeof m->name, "%s", o->name);
    m->version = o->version;
    snprintf(m->version_text, sizeof m->version_text, "%lld", (long long)o->version);
    lunet_dtype dtype = lunet_model_dtype(o->graphs[0]);
    tensor_info(&m->input, m->input_name, sizeof m->input_name, in_name, dtype, in_shape, in_ndim);
    tensor_info(&m->output, m->output_name, sizeof m->output_name, out_name, dtype, out_shape, out_ndim);
    memcpy(graphs, o->graphs, (size_t)s->threads * sizeof *graphs);
    m->graphs = graphs;
    m->batches = batches;
    for (int i = 0; i < s->threads; i++) serve_batch_init(&batches[i], m, &s->loops[i]);
    m->max_batch_size = o->max_batch_size > 0 ? o->max_batch_size : 64;
    m->max_queue_delay_us = o->max_queue_delay_us > 0 ? o->max_queue_delay_us : 0;
    m->max_queue_size = o->max_queue_size > 0 ? o->max_queue_size : 1024;
    m->stats = stats;
    serve_model **tail = &s->models;
    while (*tail) tail = &(*tail)->next;
    *tail = m;
    return LUNET_OK;
}

void serve_models_free(serve_server *s) {
    serve_model *m = s->models;
    while (m) {
        serve_model *next = m->next;
        for (int i = 0; i < s->threads; i++) {
            lunet_model_free(m->graphs[i]);
            serve_batch_free(&m->batches[i]);
        }
        free(m->graphs);
        free(m->batches);
        free(m);
        m = next;
    }
    s->models = NULL;
}

/* ---- descriptions -------------------------------------------------------------------------------- */

static void write_tensor(serve_buf *out, bool *ok, const infer_tensor_info *t) {
    *ok = *ok && serve_buf_printf(out, "{\"name\":\"%s\",\"datatype\":\"%s\",\"shape\":[-1", t->name,
                                  infer_datatype_name(infer_datatype_of(t->dtype)));
    for (int d = 0; d < t->ndim; d++) *ok = *ok && serve_buf_printf(out, ",%lld", (long long)t->shape[d]);
    *ok = *ok && serve_buf_append(out, "]}", 2);
}

bool serve_model_metadata(serve_server *s, const serve_model *m, serve_buf *out) {
    /* Names are checked at add_model: letters, digits and "_-.", nothing JSON escapes. */
    bool ok = serve_buf_printf(out, "{\"name\":\"%s\",\"versions\":[", m->name);
    bool first = true;
    for (serve_model *v = s->models; v; v = v->next) {
        if (strcmp(v->name, m->name) != 0) continue;
        ok = ok && serve_buf_printf(out, "%s\"%lld\"", first ? "" : ",", (long long)v->version);
        first = false;
    }
    ok = ok && serve_buf_append(out, "],\"platform\":\"lunet\",\"inputs\":[", 31);
    write_tensor(out, &ok, &m->input);
    ok = ok && serve_buf_append(out, "],\"outputs\":[", 13);
    write_tensor(out, &ok, &m->output);
    return ok && serve_buf_append(out, "]}", 2);
}

bool serve_model_status(serve_server *s, const char *name, size_t len, int64_t version, serve_buf *out) {
    bool ok = serve_buf_append(out, "{\"model_version_status\":[", 25), first = true;
    for (serve_model *m = s->models; m; m = m->next) {
        if (!same_name(m, name, len) || (version && m->version != version)) continue;
        ok = ok && serve_buf_printf(out, "%s{\"version\":\"%lld\",\"state\":\"AVAILABLE\",\"status\":{\"error_code\":\"OK\","
                                         "\"error_message\":\"\"}}", first ? "" : ",", (long long)m->version);
        first = false;
    }
    return ok && serve_buf_append(out, "]}", 2);
}
