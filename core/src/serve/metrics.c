/*
 * metrics.c: what the server counts, and GET /metrics in Prometheus' text exposition format
 * (version 0.0.4).  One serve_stats per model name (all its versions), one for names no model
 * has ("_unknown", so a client cannot grow the label set), one for the other paths ("").
 *
 *   lunet_requests_total{model,code}              counter    every answered request
 *   lunet_request_duration_seconds{model}         histogram  first byte read to response queued
 *   lunet_queue_duration_seconds{model}           histogram  queued to its batch's start
 *   lunet_compute_duration_seconds{model}         histogram  one forward of a batch
 *   lunet_batch_size{model}                       histogram  rows per forward
 *   lunet_inferences_total{model}                 counter    rows run
 *   lunet_batches_total{model}                    counter    forwards run
 *   lunet_rejected_requests_total{model,reason}   counter    queue_full (503), deadline (504)
 *   lunet_requests_in_flight{model}               gauge      queued or running (a loop runs a batch
 *                                                            as it leaves the queue: the same count
 *                                                            as lunet_queue_size here)
 *   lunet_queue_size{model}                       gauge      queued
 *   lunet_model_loads_total{model,result}         counter    versions loaded (ok) or not (error);
 *                                                            only for model names
 */
#include "serve.h"

#include <stdlib.h>
#include <string.h>

static const double time_bounds[SERVE_TIME_BUCKETS] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
                                                       0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,     10};
static const double batch_bounds[SERVE_BATCH_BUCKETS] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024};

static void observe(serve_histogram *h, const double *bounds, int n, double v) {
    int i = 0;
    while (i < n && v > bounds[i]) i++;
    h->counts[i]++;
    h->count++;
    h->sum += v;
}

serve_stats *serve_stats_for(serve_server *s, const char *label) {
    uv_mutex_lock(&s->metrics_lock); /* /metrics may be walking the list */
    serve_stats **tail = &s->stats;
    while (*tail && strcmp((*tail)->label, label) != 0) tail = &(*tail)->next;
    if (!*tail && (*tail = calloc(1, sizeof **tail))) snprintf((*tail)->label, sizeof (*tail)->label, "%s", label);
    serve_stats *st = *tail;
    uv_mutex_unlock(&s->metrics_lock);
    return st;
}

void serve_stats_request(serve_server *s, serve_stats *st, int status, double seconds) {
    uv_mutex_lock(&s->metrics_lock);
    observe(&st->request_duration, time_bounds, SERVE_TIME_BUCKETS, seconds);
    for (int i = 0; i < SERVE_STATUS_SLOTS; i++) {
        if (st->by_status[i].status == 0) st->by_status[i].status = status;
        if (st->by_status[i].status == status) {
            st->by_status[i].count++;
            break;
        }
    }
    uv_mutex_unlock(&s->metrics_lock);
}

void serve_stats_batch(serve_server *s, serve_stats *st, int64_t rows, double compute_s, const double *queue_s,
                       int requests, int late) {
    uv_mutex_lock(&s->metrics_lock);
    observe(&st->batch_size, batch_bounds, SERVE_BATCH_BUCKETS, (double)rows);
    observe(&st->compute_duration, time_bounds, SERVE_TIME_BUCKETS, compute_s);
    for (int i = 0; i < requests; i++) observe(&st->queue_duration, time_bounds, SERVE_TIME_BUCKETS, queue_s[i]);
    st->inferences += (uint64_t)rows;
    st->batches++;
    st->rejected_deadline += (uint64_t)late;
    uv_mutex_unlock(&s->metrics_lock);
}

void serve_stats_free(serve_server *s) {
    while (s->stats) {
        serve_stats *next = s->stats->next;
        free(s->stats);
        s->stats = next;
    }
}

/* ---- exposition ------------------------------------------------------------------------------- */

static bool header(serve_buf *out, const char *name, const char *type, const char *help) {
    return serve_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static bool histogram(serve_buf *out, const char *name, const char *label, const serve_histogram *h,
                      const double *bounds, int n) {
    uint64_t cumulative = 0;
    bool ok = true;
    for (int i = 0; i < n; i++) {
        cumulative += h->counts[i];
        ok = ok && serve_buf_printf(out, "%s_bucket{model=\"%s\",le=\"%g\"} %llu\n", name, label, bounds[i],
                                    (unsigned long long)cumulative);
    }
    return ok && serve_buf_printf(out, "%s_bucket{model=\"%s\",le=\"+Inf\"} %llu\n%s_sum{model=\"%s\"} %.9g\n"
                                       "%s_count{model=\"%s\"} %llu\n",
                                  name, label, (unsigned long long)h->count, name, label, h->sum, name, label,
                                  (unsigned long long)h->count);
}

bool serve_metrics_write(serve_server *s, serve_buf *out) {
    uv_mutex_lock(&s->metrics_lock);
    bool ok = header(out, "lunet_requests_total", "counter", "HTTP requests answered, by model and status code.");
    for (serve_stats *st = s->stats; st; st = st->next)
        for (int i = 0; i < SERVE_STATUS_SLOTS && st->by_status[i].status; i++)
            ok = ok && serve_buf_printf(out, "lunet_requests_total{model=\"%s\",code=\"%d\"} %llu\n", st->label,
                                        st->by_status[i].status, (unsigned long long)st->by_status[i].count);
    ok = ok && header(out, "lunet_request_duration_seconds", "histogram",
                      "Time from a request's first byte to its response being queued for sending.");
    for (serve_stats *st = s->stats; st; st = st->next)
        ok = ok && histogram(out, "lunet_request_duration_seconds", st->label, &st->request_duration, time_bounds,
                             SERVE_TIME_BUCKETS);
    ok = ok && header(out, "lunet_requests_in_flight", "gauge", "Inference requests queued or running.");
    for (serve_stats *st = s->stats; st; st = st->next)
        ok = ok && serve_buf_printf(out, "lunet_requests_in_flight{model=\"%s\"} %lld\n", st->label,
                                    (long long)atomic_load(&st->waiting));
    ok = ok && header(out, "lunet_queue_size", "gauge", "Inference requests waiting in a batch.");
    for (serve_stats *st = s->stats; st; st = st->next)
        ok = ok && serve_buf_printf(out, "lunet_queue_size{model=\"%s\"} %lld\n", st->label,
                                    (long long)atomic_load(&st->waiting));
    static const struct {
        const char *name, *help;
        size_t offset;
        bool batch;
    } histograms[] = {
        {"lunet_queue_duration_seconds", "Time a request waited in its model's queue.",
         offsetof(serve_stats, queue_duration), false},
        {"lunet_compute_duration_seconds", "Time one forward of a batch took.", offsetof(serve_stats, compute_duration),
         false},
        {"lunet_batch_size", "Rows per forward.", offsetof(serve_stats, batch_size), true},
    };
    for (size_t h = 0; h < sizeof histograms / sizeof *histograms; h++) {
        ok = ok && header(out, histograms[h].name, "histogram", histograms[h].help);
        for (serve_stats *st = s->stats; st; st = st->next)
            ok = ok && histogram(out, histograms[h].name, st->label,
                                 (const serve_histogram *)((const char *)st + histograms[h].offset),
                                 histograms[h].batch ? batch_bounds : time_bounds,
                                 histograms[h].batch ? SERVE_BATCH_BUCKETS : SERVE_TIME_BUCKETS);
    }
    ok = ok && header(out, "lunet_inferences_total", "counter", "Rows (samples) run.");
    for (serve_stats *st = s->stats; st; st = st->next)
        ok = ok && serve_buf_printf(out, "lunet_inferences_total{model=\"%s\"} %llu\n", st->label,
                                    (unsigned long long)st->inferences);
    ok = ok && header(out, "lunet_batches_total", "counter", "Forwards run.");
    for (serve_stats *st = s->stats; st; st = st->next)
        ok = ok && serve_buf_printf(out, "lunet_batches_total{model=\"%s\"} %llu\n", st->label,
                                    (unsigned long long)st->batches);
    ok = ok && header(out, "lunet_rejected_requests_total", "counter",
                      "Inference requests refused: a full queue (503) or a deadline passed in the queue (504).");
    for (serve_stats *st = s->stats; st; st = st->next)
        ok = ok && serve_buf_printf(out, "lunet_rejected_requests_total{model=\"%s\",reason=\"queue_full\"} %llu\n"
                                         "lunet_rejected_requests_total{model=\"%s\",reason=\"deadline\"} %llu\n",
                                    st->label, (unsigned long long)st->rejected_full, st->label,
                                    (unsigned long long)st->rejected_deadline);
    ok = ok && header(out, "lunet_model_loads_total", "counter",
                      "Model versions loaded from the repository (result=ok) or that failed to load (error).");
    for (serve_stats *st = s->stats; st; st = st->next)
        if (st != s->other_stats && st != s->unknown_stats)
            ok = ok && serve_buf_printf(out, "lunet_model_loads_total{model=\"%s\",result=\"ok\"} %llu\n"
                                             "lunet_model_loads_total{model=\"%s\",result=\"error\"} %llu\n",
                                        st->label, (unsigned long long)st->loads_ok, st->label,
                                        (unsigned long long)st->loads_error);
    uv_mutex_unlock(&s->metrics_lock);
    return ok;
}
