/*
 * batches.c: dynamic batching on an event loop (serve.h).  Each loop has a batch per model;
 * only that loop's thread touches it, so nothing here takes a lock but the metrics'.
 *
 * An inference request is read and decoded as soon as its body is whole, straight into the
 * batch's input buffer after the rows already there, and its connection waits (held) in the
 * batch.  The loop runs a batch when it reaches max_batch_size rows, or else after the poll
 * pass that read it (serve_batches_run_due, from the loop's check callback): so a batch is
 * what arrived together, nothing waits for it to fill, and whatever arrives while it runs
 * makes the next.  max_queue_delay_us holds a batch back until its first request has waited
 * that long (the loop's delay timer, at millisecond resolution) unless it fills first.
 *
 * Answers go out while the loop is "answering": a connection answered then does not parse
 * its next (pipelined) request at once, since that could add to a batch being answered; the
 * loop feeds it afterwards (serve_loop.to_feed).
 */
#include "serve.h"

#include <stdlib.h>
#include <string.h>

static bool grow(void **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t cap2 = *cap ? *cap : 4096;
    while (cap2 < need) cap2 *= 2;
    void *p = realloc(*buf, cap2);
    if (!p) return false;
    *buf = p, *cap = cap2;
    return true;
}

/* The slot after the waiting requests (NULL when out of memory).  Slots are reused, each with
 * the body memory of the last request that had it. */
static serve_job *free_slot(serve_batch *b) {
    if (b->n < b->cap) return &b->jobs[b->n];
    int cap = b->cap ? b->cap * 2 : 16;
    serve_job *jobs = realloc(b->jobs, (size_t)cap * sizeof *jobs);
    if (!jobs) return NULL;
    b->jobs = jobs;
    double *queue_s = realloc(b->queue_s, (size_t)cap * sizeof *queue_s);
    if (!queue_s) return NULL;
    b->queue_s = queue_s;
    memset(jobs + b->cap, 0, (size_t)(cap - b->cap) * sizeof *jobs);
    b->cap = cap;
    return &b->jobs[b->n];
}

/* ---- running ------------------------------------------------------------------------------------ */

/* Appends the NUL-terminated text to *at (the caller sized the buffer). */
static void append(char **at, const char *text) {
    size_t n = strlen(text);
    memcpy(*at, text, n + 1);
    *at += n;
}

/* Answers job j, which waited `waited` ns before its batch ran for `compute` ns: its rows of
 * the batch's output, or why not.  Returns the status it answered. */
static int answer(serve_batch *b, serve_job *j, lunet_status run_status, const void *output, uint64_t waited,
                  uint64_t compute) {
    serve_model *m = b->model;
    infer_request *r = &j->request;
    char error[320];
    if (r->timeout_ms && waited > (uint64_t)r->timeout_ms * 1000000u) {
        snprintf(error, sizeof error, "the request waited %.1f ms for its batch, longer than its timeout_ms of %lld",
                 (double)waited / 1e6, (long long)r->timeout_ms);
        conn_respond_error(j->conn, 504, NULL, error);
        return 504;
    }
    if (run_status != LUNET_OK) {
        snprintf(error, sizeof error, "the model failed: %s", lunet_last_error());
        conn_respond_error(j->conn, 500, NULL, error);
        return 500;
    }
    char *body = NULL;
    size_t len = 0, json_len = 0;
    if (infer_write(r, m->name, m->version_text, &m->output, output, &body, &len, &json_len) != 0) {
        conn_respond_error(j->conn, 500, NULL, "the server ran out of memory for the response");
        return 500;
    }
    /* Server-Timing (W3C): how long the request waited in its batch, how long the batch ran.
     * Put together without printf, which this path per request can do without. */
    char headers[160], number[24], *at = headers;
    append(&at, "Server-Timing: queue;dur=");
    serve_millis(number, waited);
    append(&at, number);
    append(&at, ", compute;dur=");
    serve_millis(number, compute);
    append(&at, number);
    append(&at, "\r\n");
    bool binary = json_len != len;
    if (binary) {
        append(&at, "Inference-Header-Content-Length: ");
        serve_digits(number, json_len, 10);
        append(&at, number);
        append(&at, "\r\n");
    }
    conn_respond(j->conn, 200, binary ? "application/octet-stream" : NULL, headers, body, len);
    free(body);
    return 200;
}

/* Runs b's rows as one forward on the loop's graph and answers each request; b is empty after. */
static void run(serve_batch *b) {
    serve_model *m = b->model;
    serve_loop *l = b->loop;
    size_t out_elem = lunet_dtype_size(m->output.dtype);
    uint64_t start = uv_hrtime();
    lunet_status st = grow(&b->out, &b->out_cap, (size_t)(b->rows * m->output.count) * out_elem)
                          ? lunet_model_run(m->graphs[l->index], b->in, b->rows, b->out)
                          : LUNET_ERR_NOMEM;
    uint64_t end = uv_hrtime();
    int late = 0;
    int64_t offset = 0;
    l->answering++;
    for (int i = 0; i < b->n; i++) {
        serve_job *j = &b->jobs[i];
        b->queue_s[i] = (double)(start - j->queued_ns) / 1e9;
        late += answer(b, j, st, (const char *)b->out + (size_t)(offset * m->output.count) * out_elem,
                       start - j->queued_ns, end - start) == 504;
        offset += j->request.rows;
        infer_request_free(&j->request);
        j->body.len = 0; /* the memory stays with the slot */
        conn_release(j->conn);
        j->conn = NULL;
    }
    l->answering--;
    atomic_fetch_sub(&m->stats->waiting, b->n);
    serve_stats_batch(l->server, m->stats, b->rows, (double)(end - start) / 1e9, b->queue_s, b->n, late);
    b->n = 0;
    b->rows = 0;
}

static void on_delay(uv_timer_t *t) { serve_batches_run_due(t->data); }

void serve_batches_run_due(serve_loop *l) {
    uint64_t next_due = 0;
    for (;;) {
        uint64_t now = uv_hrtime();
        next_due = 0;
        for (serve_batch **p = &l->waiting; *p;) {
            serve_batch *b = *p;
            serve_model *m = b->model;
            uint64_t due = b->n ? b->jobs[0].queued_ns + (uint64_t)m->max_queue_delay_us * 1000u : 0;
            if (b->n && b->rows < m->max_batch_size && now < due) { /* held back for more rows */
                if (!next_due || due < next_due) next_due = due;
                p = &b->next_waiting;
                continue;
            }
            *p = b->next_waiting;
            b->listed = false;
            if (b->n) run(b);
            if (b->retired) serve_model_part_free(b->model, l->index); /* its last requests are answered */
        }
        if (!l->to_feed) break;
        /* Parse on the connections that were answered: their next requests may make batches. */
        while (l->to_feed) conn_feed_later(l);
    }
    if (next_due) {
        uint64_t now = uv_hrtime(), wait_ms = next_due > now ? (next_due - now + 999999) / 1000000 : 0;
        uv_timer_start(&l->delay, on_delay, wait_ms, 0);
    }
}

/* ---- submitting ----------------------------------------------------------------------------------- */

/* Puts b on its loop's list of batches to run.  Outside the poll phase (a write that finished
 * at once reports in the next pass's pending phase, a timeout in its timers phase, and either
 * may parse a pipelined request), the check that runs batches would wait for the poll, and the
 * poll for an event that may never come: a timer due now keeps the poll from waiting. */
static void list_waiting(serve_batch *b) {
    if (b->listed) return;
    serve_loop *l = b->loop;
    b->listed = true;
    b->next_waiting = l->waiting;
    l->waiting = b;
    if (!l->polling) uv_timer_start(&l->delay, on_delay, 0, 0);
}

void serve_batch_submit(serve_conn *c, serve_model *m, infer_protocol protocol) {
    serve_request *req = conn_request(c);
    serve_loop *l = conn_loop(c);
    serve_batch *b = &m->batches[l->index];
    if (req->has_json_len && req->json_len_invalid) {
        conn_respond_error(c, 400, NULL, "Inference-Header-Content-Length must be a byte count");
        return;
    }
    if (b->n >= m->max_queue_size) {
        uv_mutex_lock(&l->server->metrics_lock);
        m->stats->rejected_full++;
        uv_mutex_unlock(&l->server->metrics_lock);
        char msg[128];
        snprintf(msg, sizeof msg, "the queue of model %s is full (%d requests); try again soon", m->name,
                 m->max_queue_size);
        conn_respond_error(c, 503, "Retry-After: 1\r\n", msg);
        return;
    }
    infer_request r;
    int status = infer_read(&r, protocol, &m->input, &m->output, req->body.data, req->body.len,
                            req->has_json_len ? req->json_len : req->body.len);
    /* A request that would overfill the batch runs in the next: the batch so far runs now. */
    if (!status && b->rows > 0 && b->rows + r.rows > m->max_batch_size) run(b);
    size_t elem = lunet_dtype_size(m->input.dtype);
    serve_job *j = NULL;
    if (!status && (!grow(&b->in, &b->in_cap, (size_t)((b->rows + r.rows) * m->input.count) * elem) ||
                    !(j = free_slot(b)))) {
        snprintf(r.error, sizeof r.error, "the server ran out of memory for the batch");
        status = 500;
    }
    if (!status) status = infer_decode(&r, &m->input, (char *)b->in + (size_t)(b->rows * m->input.count) * elem);
    if (status) {
        conn_respond_error(c, status, NULL, r.error);
        infer_request_free(&r);
        return;
    }
    /* The body moves to the slot (binary tensor data in it stays where r points). */
    conn_swap_body(c, &j->body);
    conn_hold(c);
    j->conn = c;
    j->request = r;
    j->queued_ns = uv_hrtime();
    b->n++;
    b->rows += r.rows;
    atomic_fetch_add(&m->stats->waiting, 1);
    if (b->rows >= m->max_batch_size) run(b);
    else list_waiting(b);
}

/* ---- shutdown ------------------------------------------------------------------------------------- */

void serve_batch_drop(serve_batch *b) {
    for (int i = 0; i < b->n; i++) {
        infer_request_free(&b->jobs[i].request);
        conn_release(b->jobs[i].conn);
        b->jobs[i].conn = NULL;
        b->jobs[i].body.len = 0;
    }
    atomic_fetch_sub(&b->model->stats->waiting, b->n);
    b->n = 0;
    b->rows = 0;
}

void serve_batch_free(serve_batch *b) {
    serve_batch_drop(b);
    for (int i = 0; i < b->cap; i++) serve_buf_free(&b->jobs[i].body);
    free(b->jobs);
    free(b->queue_s);
    free(b->in);
    free(b->out);
    memset(b, 0, sizeof *b);
}

void serve_batch_init(serve_batch *b, serve_model *m, serve_loop *l) {
    b->model = m;
    b->loop = l;
}
