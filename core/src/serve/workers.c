/*
 * workers.c: the inference workers (serve.h).  Each worker is a thread with its own graph of
 * every model, its own batch buffers, and one thread's worth of lunet work (it asks for
 * lunet_set_thread_num_threads(1): the workers are the parallelism).
 *
 * Batching: a free worker picks a model with queued jobs and takes them one by one, reading
 * and decoding each into its batch buffer, until the queue is empty or the batch holds
 * max_batch_size rows; a job that would overfill it is carried over to start the next batch.
 * So nothing waits for a batch to fill: requests that arrive while a forward runs are what
 * the next batch is made of.  With max_queue_delay_us a worker whose queue ran dry waits up
 * to that long after its first job for more.  Jobs are read outside the lock, so a worker
 * decoding one batch and another running the next overlap.
 */
#include "serve.h"

#include <stdlib.h>
#include <string.h>

typedef struct serve_worker {
    serve_server *server;
    int index;                    /* which of each model's graphs is this worker's */
    void *in, *out;               /* the batch buffers */
    size_t in_cap, out_cap;
    serve_job **jobs;             /* the batch being made */
    infer_request *requests;      /* ... and each job's request */
    double *queue_s;              /* ... and its time in the queue */
    int cap;
    serve_job *carry;             /* read, but did not fit the last batch */
    infer_request carry_request;
    int next_model;               /* where the search for a model with work starts */
} worker;

/* ---- handing jobs back ------------------------------------------------------------------------- */

/* Gives answered jobs to the loop's thread. */
static void hand_back(serve_server *s, serve_job *first, serve_job *last) {
    uv_mutex_lock(&s->done_lock);
    if (s->done_tail) s->done_tail->next = first;
    else s->done_head = first;
    s->done_tail = last;
    uv_mutex_unlock(&s->done_lock);
    uv_async_send(&s->done);
}

static void fail_job(serve_server *s, serve_job *j, int status, const char *message) {
    j->status = status;
    snprintf(j->error, sizeof j->error, "%s", message);
    j->next = NULL;
    hand_back(s, j, j);
}

static void free_job(serve_job *j) {
    serve_buf_free(&j->body);
    free(j->response);
    free(j);
}

/* The loop's side: sends each answered job's response to its client, if it is still there. */
static void on_done(uv_async_t *h) {
    serve_server *s = h->data;
    uv_mutex_lock(&s->done_lock);
    serve_job *j = s->done_head;
    s->done_head = s->done_tail = NULL;
    uv_mutex_unlock(&s->done_lock);
    while (j) {
        serve_job *next = j->next;
        j->model->stats->in_flight--;
        if (j->conn && j->status == 200) {
            bool binary = j->response_json_len != j->response_len;
            char header[64];
            snprintf(header, sizeof header, "Inference-Header-Content-Length: %zu\r\n", j->response_json_len);
            conn_respond(j->conn, 200, binary ? "application/octet-stream" : NULL, binary ? header : NULL,
                         j->response, j->response_len);
        } else if (j->conn) {
            conn_respond_error(j->conn, j->status, j->status == 503 ? "Retry-After: 1\r\n" : NULL, j->error);
        }
        free_job(j);
        j = next;
    }
}

/* ---- making a batch ----------------------------------------------------------------------------- */

static bool grow(void **buf, size_t *cap, size_t need) {
    if (need <= *cap) return true;
    size_t cap2 = *cap ? *cap : 4096;
    while (cap2 < need) cap2 *= 2;
    void *p = realloc(*buf, cap2);
    if (!p) return false;
    *buf = p, *cap = cap2;
    return true;
}

/* A model with queued jobs, taking turns among them (queue_lock held). */
static serve_model *model_with_work(worker *w) {
    int i = 0;
    serve_model *first = NULL;
    for (serve_model *m = w->server->models; m; m = m->next, i++) {
        if (!m->head) continue;
        if (i >= w->next_model) {
            w->next_model = i + 1;
            return m;
        }
        if (!first) first = m;
    }
    w->next_model = 0;
    return first;
}

static serve_job *pop(serve_model *m) {
    serve_job *j = m->head;
    if (j) {
        m->head = j->next;
        if (!m->head) m->tail = NULL;
        m->queued--;
        j->next = NULL;
    }
    return j;
}

/* Reads job j (or takes the carried one) and decodes it into the batch at row `rows`.  Returns
 * the rows it adds, 0 when it was answered with an error, -1 when it does not fit (carried). */
static int64_t add_to_batch(worker *w, serve_model *m, serve_job *j, infer_request *r, bool carried, int64_t rows) {
    serve_server *s = w->server;
    int status = 0;
    if (!carried) status = infer_read(r, j->protocol, &m->input, &m->output, j->body.data, j->body.len, j->json_len);
    if (!status && rows > 0 && rows + r->rows > m->max_batch_size) {
        w->carry = j;
        w->carry_request = *r;
        return -1;
    }
    size_t elem = lunet_dtype_size(m->input.dtype);
    if (!status && !grow(&w->in, &w->in_cap, (size_t)((rows + r->rows) * m->input.count) * elem)) {
        snprintf(r->error, sizeof r->error, "the server ran out of memory for the batch");
        status = 500;
    }
    if (!status) status = infer_decode(r, &m->input, (char *)w->in + (size_t)(rows * m->input.count) * elem);
    if (status) {
        fail_job(s, j, status, r->error);
        infer_request_free(r);
        return 0;
    }
    return r->rows;
}

/* Runs the batch of n jobs (rows in all) and answers each.  A job whose timeout_ms passed
 * while it waited (in the queue, or for its batch to fill) is answered 504; its rows run
 * with the others, which is cheaper than taking them out. */
static void run_batch(worker *w, serve_model *m, int n, int64_t rows) {
    serve_server *s = w->server;
    size_t out_elem = lunet_dtype_size(m->output.dtype);
    uint64_t start = uv_hrtime();
    int late = 0;
    lunet_status st = grow(&w->out, &w->out_cap, (size_t)(rows * m->output.count) * out_elem)
                          ? lunet_model_run(m->graphs[w->index], w->in, rows, w->out)
                          : LUNET_ERR_NOMEM;
    uint64_t end = uv_hrtime();
    int64_t offset = 0;
    for (int i = 0; i < n; i++) {
        serve_job *j = w->jobs[i];
        infer_request *r = &w->requests[i];
        w->queue_s[i] = (double)(start - j->queued_ns) / 1e9;
        j->status = st == LUNET_OK ? 200 : 500;
        if (r->timeout_ms && start - j->queued_ns > (uint64_t)r->timeout_ms * 1000000u) {
            j->status = 504;
            late++;
            snprintf(j->error, sizeof j->error, "the request waited %.1f ms for its batch, longer than its "
                     "timeout_ms of %lld", (double)(start - j->queued_ns) / 1e6, (long long)r->timeout_ms);
        } else if (st != LUNET_OK) snprintf(j->error, sizeof j->error, "the model failed: %s", lunet_last_error());
        else if (infer_write(r, m->name, m->version_text, &m->output,
                             (const char *)w->out + (size_t)(offset * m->output.count) * out_elem, &j->response,
                             &j->response_len, &j->response_json_len) != 0) {
            j->status = 500;
            snprintf(j->error, sizeof j->error, "the server ran out of memory for the response");
        }
        offset += r->rows;
        infer_request_free(r);
        j->next = i + 1 < n ? w->jobs[i + 1] : NULL;
    }
    serve_stats_batch(s, m->stats, rows, (double)(end - start) / 1e9, w->queue_s, n, late);
    hand_back(s, w->jobs[0], w->jobs[n - 1]);
}

static void worker_main(void *arg) {
    worker *w = arg;
    serve_server *s = w->server;
    lunet_set_thread_num_threads(1);
    uv_mutex_lock(&s->queue_lock);
    for (;;) {
        serve_model *m = w->carry ? w->carry->model : NULL;
        while (!m && !s->workers_stop && !(m = model_with_work(w))) uv_cond_wait(&s->queue_wake, &s->queue_lock);
        if (!m) break;
        int n = 0;
        int64_t rows = 0;
        uint64_t first_ns = 0;
        while (rows < m->max_batch_size) {
            bool carried = w->carry != NULL;
            serve_job *j = carried ? w->carry : pop(m);
            if (!j) {
                uint64_t now = uv_hrtime(), until = first_ns + (uint64_t)m->max_queue_delay_us * 1000u;
                if (m->max_queue_delay_us > 0 && n > 0 && now < until && !s->workers_stop) {
                    uv_cond_timedwait(&s->queue_wake, &s->queue_lock, until - now);
                    continue;
                }
                break;
            }
            w->carry = NULL;
            uv_mutex_unlock(&s->queue_lock);
            if (n == w->cap) {
                int cap = w->cap ? w->cap * 2 : 64;
                serve_job **jobs = realloc(w->jobs, (size_t)cap * sizeof *jobs);
                if (jobs) w->jobs = jobs;
                infer_request *reqs = jobs ? realloc(w->requests, (size_t)cap * sizeof *reqs) : NULL;
                if (reqs) w->requests = reqs;
                double *queue_s = reqs ? realloc(w->queue_s, (size_t)cap * sizeof *queue_s) : NULL;
                if (queue_s) w->queue_s = queue_s, w->cap = cap;
            }
            int64_t added = 0;
            if (n == w->cap) {
                if (carried) infer_request_free(&w->carry_request);
                fail_job(s, j, 500, "the server ran out of memory for the batch");
            } else {
                if (carried) w->requests[n] = w->carry_request;
                added = add_to_batch(w, m, j, &w->requests[n], carried, rows);
            }
            if (added > 0) {
                w->jobs[n++] = j;
                if (!first_ns) first_ns = j->queued_ns;
                rows += added;
            }
            uv_mutex_lock(&s->queue_lock);
            if (added < 0) break; /* carried over */
        }
        uv_mutex_unlock(&s->queue_lock);
        if (n) run_batch(w, m, n, rows);
        uv_mutex_lock(&s->queue_lock);
    }
    uv_mutex_unlock(&s->queue_lock);
}

/* ---- the loop's side ---------------------------------------------------------------------------- */

void serve_workers_submit(serve_server *s, serve_conn *c, serve_model *m, infer_protocol protocol) {
    serve_request *r = conn_request(c);
    if (r->has_json_len && r->json_len_invalid) {
        conn_respond_error(c, 400, NULL, "Inference-Header-Content-Length must be a byte count");
        return;
    }
    uv_mutex_lock(&s->queue_lock);
    bool full = m->queued >= m->max_queue_size;
    uv_mutex_unlock(&s->queue_lock);
    if (full) {
        uv_mutex_lock(&s->metrics_lock);
        m->stats->rejected_full++;
        uv_mutex_unlock(&s->metrics_lock);
        char msg[128];
        snprintf(msg, sizeof msg, "the queue of model %s is full (%d requests); try again soon", m->name,
                 m->max_queue_size);
        conn_respond_error(c, 503, "Retry-After: 1\r\n", msg);
        return;
    }
    serve_job *j = calloc(1, sizeof *j);
    if (!j) {
        conn_respond_error(c, 500, NULL, "the server ran out of memory for the request");
        return;
    }
    j->conn = c;
    j->model = m;
    j->protocol = protocol;
    conn_take_body(c, &j->body);
    j->json_len = r->has_json_len ? r->json_len : j->body.len;
    j->queued_ns = uv_hrtime();
    conn_set_job(c, j);
    m->stats->in_flight++;
    uv_mutex_lock(&s->queue_lock);
    if (m->tail) m->tail->next = j;
    else m->head = j;
    m->tail = j;
    m->queued++;
    uv_cond_signal(&s->queue_wake);
    uv_mutex_unlock(&s->queue_lock);
}

bool serve_workers_start(serve_server *s) {
    if (uv_mutex_init(&s->queue_lock) || uv_mutex_init(&s->done_lock) || uv_cond_init(&s->queue_wake))
        return false;
    uv_async_init(&s->loop, &s->done, on_done);
    s->done.data = s;
    s->workers = calloc((size_t)s->threads, sizeof *s->workers);
    worker *ws = calloc((size_t)s->threads, sizeof *ws);
    if (!s->workers || !ws) {
        free(ws);
        return false;
    }
    for (int i = 0; i < s->threads; i++) {
        ws[i].server = s;
        ws[i].index = i;
        if (uv_thread_create(&s->workers[i], worker_main, &ws[i]) != 0) break;
        s->workers_started++;
    }
    s->worker_state = ws;
    return s->workers_started == s->threads;
}

void serve_workers_stop(serve_server *s) {
    uv_mutex_lock(&s->queue_lock);
    s->workers_stop = true;
    uv_cond_broadcast(&s->queue_wake);
    uv_mutex_unlock(&s->queue_lock);
    for (int i = 0; i < s->workers_started; i++) uv_thread_join(&s->workers[i]);
    s->workers_started = 0;
    worker *ws = s->worker_state;
    for (int i = 0; ws && i < s->threads; i++) {
        if (ws[i].carry) {
            infer_request_free(&ws[i].carry_request);
            if (ws[i].carry->conn) conn_set_job(ws[i].carry->conn, NULL);
            free_job(ws[i].carry);
        }
        free(ws[i].in);
        free(ws[i].out);
        free(ws[i].jobs);
        free(ws[i].requests);
        free(ws[i].queue_s);
    }
    free(ws);
    s->worker_state = NULL;
    free(s->workers);
    s->workers = NULL;
    /* Jobs never run, and answers never sent: their clients are being closed. */
    for (serve_model *m = s->models; m; m = m->next) {
        serve_job *j;
        while ((j = pop(m))) {
            if (j->conn) conn_set_job(j->conn, NULL);
            free_job(j);
        }
    }
    on_done(&s->done); /* the connections are still open: the answers go out if they can */
    uv_close((uv_handle_t *)&s->done, NULL);
    uv_mutex_destroy(&s->queue_lock);
    uv_mutex_destroy(&s->done_lock);
    uv_cond_destroy(&s->queue_wake);
}
