/*
 * loops.c: the server's event loops (serve.h).  Each runs on its own thread and owns
 * everything of the connections it was given.  Other threads reach a loop only through its
 * inbox and its wake handle: loop 0 hands over accepted sockets and asks every loop to stop or
 * wind down; the control thread asks it to move to a newly published table.
 */
#include "serve.h"

#include <stdlib.h>
#include <unistd.h>

/* What other threads left in the inbox: sockets to open, a new table, or the request to stop. */
static void on_wake(uv_async_t *h) {
    serve_loop *l = h->data;
    uv_mutex_lock(&l->inbox_lock);
    uv_os_sock_t *fds = l->inbox;
    int n = l->inbox_len;
    bool stop = l->stop_asked, wind_down = l->wind_down_asked, adopt = l->adopt_asked;
    l->wind_down_asked = l->adopt_asked = false;
    l->inbox = NULL;
    l->inbox_len = l->inbox_cap = 0;
    uv_mutex_unlock(&l->inbox_lock);
    for (int i = 0; i < n; i++) {
        if (stop || l->stopped) {
            close(fds[i]);
            atomic_fetch_sub(&l->server->connections, 1);
        } else {
            conn_open(l, fds[i]);
        }
    }
    free(fds);
    if (adopt) serve_loop_adopt(l);
    if (stop) serve_loop_stop(l);
    else if (wind_down) serve_loop_wind_down(l);
}

static void on_before_poll(uv_prepare_t *h) { ((serve_loop *)h->data)->polling = true; }

static void on_after_poll(uv_check_t *h) {
    serve_loop *l = h->data;
    serve_batches_run_due(l);
    l->polling = false;
}

bool serve_loop_init(serve_loop *l, serve_server *s, int index) {
    l->server = s;
    l->index = index;
    int rc = uv_loop_init(&l->loop);
    if (rc != 0) {
        lunet__fail(LUNET_ERR_IO, "serve: cannot start an event loop: %s", uv_strerror(rc));
        return false;
    }
    uv_mutex_init(&l->inbox_lock);
    uv_async_init(&l->loop, &l->wake, on_wake);
    uv_prepare_init(&l->loop, &l->before_poll);
    uv_check_init(&l->loop, &l->after_poll);
    uv_timer_init(&l->loop, &l->delay);
    l->wake.data = l->before_poll.data = l->after_poll.data = l->delay.data = l;
    uv_prepare_start(&l->before_poll, on_before_poll);
    uv_check_start(&l->after_poll, on_after_poll);
    return true;
}

void serve_loop_give(serve_loop *l, uv_os_sock_t fd) {
    uv_mutex_lock(&l->inbox_lock);
    bool ok = !l->stop_asked;
    if (ok && l->inbox_len == l->inbox_cap) {
        int cap = l->inbox_cap ? l->inbox_cap * 2 : 16;
        uv_os_sock_t *grown = realloc(l->inbox, (size_t)cap * sizeof *grown);
        if (grown) l->inbox = grown, l->inbox_cap = cap;
        else ok = false;
    }
    if (ok) l->inbox[l->inbox_len++] = fd;
    uv_mutex_unlock(&l->inbox_lock);
    if (ok) {
        uv_async_send(&l->wake);
    } else { /* stopping, or out of memory: the client is turned away */
        close(fd);
        atomic_fetch_sub(&l->server->connections, 1);
    }
}

static void loop_main(void *arg) {
    serve_loop *l = arg;
    lunet_set_thread_num_threads(1); /* the loops are the parallelism */
    uv_run(&l->loop, UV_RUN_DEFAULT);
    serve_control_loop_ended(l->server);
}

bool serve_loop_start_thread(serve_loop *l) {
    if (uv_thread_create(&l->thread, loop_main, l) != 0) {
        lunet__fail(LUNET_ERR_IO, "serve: cannot start the thread of event loop %d", l->index);
        return false;
    }
    l->thread_started = true;
    return true;
}

void serve_loop_ask_stop(serve_loop *l) {
    uv_mutex_lock(&l->inbox_lock);
    bool asked = l->stop_asked;
    l->stop_asked = true;
    uv_mutex_unlock(&l->inbox_lock);
    if (!asked) uv_async_send(&l->wake);
}

/* Raises *flag in l's inbox and wakes l, unless l is stopping (its wake handle may be closed;
 * a stopped loop is moved to the newest table when the server is freed). */
static void ask(serve_loop *l, bool *flag) {
    uv_mutex_lock(&l->inbox_lock);
    bool send = !l->stop_asked;
    *flag = true;
    uv_mutex_unlock(&l->inbox_lock);
    if (send) uv_async_send(&l->wake);
}

void serve_loop_ask_adopt(serve_loop *l) { ask(l, &l->adopt_asked); }

void serve_loop_ask_wind_down(serve_loop *l) { ask(l, &l->wind_down_asked); }

void serve_loop_wind_down(serve_loop *l) {
    for (serve_conn *c = l->conns, *next; c; c = next) {
        next = conn_next(c);
        conn_wind_down(c, 1000);
    }
}

void serve_loop_stop(serve_loop *l) {
    if (l->stopped) return;
    l->stopped = true;
    uv_mutex_lock(&l->inbox_lock); /* no thread wakes it from now on */
    l->stop_asked = true;
    uv_mutex_unlock(&l->inbox_lock);
    while (l->conns) conn_close(l->conns);
    while (l->to_feed) conn_feed_later(l); /* closing: only taken off the list */
    /* Requests waiting in batches are dropped: their connections are closing. */
    for (serve_batch *b = l->waiting, *next; b; b = next) {
        next = b->next_waiting;
        b->listed = false;
        serve_batch_drop(b);
        if (b->retired) serve_model_part_free(b->model, l->index);
    }
    l->waiting = NULL;
    uv_close((uv_handle_t *)&l->wake, NULL);
    uv_close((uv_handle_t *)&l->before_poll, NULL);
    uv_close((uv_handle_t *)&l->after_poll, NULL);
    uv_close((uv_handle_t *)&l->delay, NULL);
}

void serve_loop_join(serve_loop *l) {
    if (!l->thread_started) return;
    uv_thread_join(&l->thread);
    l->thread_started = false;
}

void serve_loop_close(serve_loop *l) {
    serve_loop_join(l);
    serve_loop_stop(l);               /* a loop never run still holds its handles */
    uv_run(&l->loop, UV_RUN_DEFAULT); /* let the closed handles go */
    uv_loop_close(&l->loop);
    uv_mutex_destroy(&l->inbox_lock);
    for (int i = 0; i < l->inbox_len; i++) {
        close(l->inbox[i]);
        atomic_fetch_sub(&l->server->connections, 1);
    }
    free(l->inbox);
    l->inbox = NULL;
    l->inbox_len = l->inbox_cap = 0;
}
