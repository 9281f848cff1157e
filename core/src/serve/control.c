/*
 * control.c: the side of the server that the thread which created it drives (lunet.h's
 * lunet_server_watch and lunet_server_wait).  That thread has a libuv loop of its own, run only
 * inside lunet_server_wait, whose handles make the events it reports: SIGHUP, a watched path
 * changing (once it has been quiet for SETTLE_MS, so that a file being written is not read
 * half-way), and the loops' threads ending.
 */
#include "serve.h"

#include <stdlib.h>

#define SETTLE_MS 100

enum { EVENT_STOPPED = 1, EVENT_HANGUP = 2, EVENT_CHANGED = 4, EVENT_TIMEOUT = 8 };

struct serve_watch {
    uv_fs_event_t handle;          /* first: the close callback frees the whole */
    struct serve_watch *next;
};

static void on_loop_ended(uv_async_t *h) { (void)h; /* waking lunet_server_wait is all it does */ }

void serve_control_loop_ended(serve_server *s) {
    if (atomic_fetch_sub(&s->loops_running, 1) == 1) uv_async_send(&s->loop_ended);
}

void serve_control_on_hangup(uv_signal_t *h, int signum) {
    (void)signum;
    ((serve_server *)h->data)->events |= EVENT_HANGUP;
}

static void on_settled(uv_timer_t *t) { ((serve_server *)t->data)->events |= EVENT_CHANGED; }

static void on_path_changed(uv_fs_event_t *h, const char *file, int events, int status) {
    (void)file, (void)events, (void)status;
    serve_server *s = h->data;
    uv_timer_start(&s->settle, on_settled, SETTLE_MS, 0); /* again from the start at each change */
}

static void on_wait_timeout(uv_timer_t *t) { ((serve_server *)t->data)->events |= EVENT_TIMEOUT; }

bool serve_control_init(serve_server *s) {
    int rc = uv_loop_init(&s->control);
    if (rc != 0) {
        lunet__fail(LUNET_ERR_IO, "serve: cannot start the control loop: %s", uv_strerror(rc));
        return false;
    }
    uv_async_init(&s->control, &s->loop_ended, on_loop_ended);
    uv_signal_init(&s->control, &s->sighup);
    uv_timer_init(&s->control, &s->settle);
    uv_timer_init(&s->control, &s->wait_timer);
    s->loop_ended.data = s->sighup.data = s->settle.data = s->wait_timer.data = s;
    s->control_ready = true;
    return true;
}

static void watch_closed(uv_handle_t *h) { free(h); }

static void unwatch_all(serve_server *s) {
    while (s->watches) {
        struct serve_watch *w = s->watches;
        s->watches = w->next;
        uv_close((uv_handle_t *)&w->handle, watch_closed);
    }
}

void serve_control_close(serve_server *s) {
    if (!s->control_ready) return;
    unwatch_all(s);
    uv_close((uv_handle_t *)&s->loop_ended, NULL);
    uv_close((uv_handle_t *)&s->sighup, NULL);
    uv_close((uv_handle_t *)&s->settle, NULL);
    uv_close((uv_handle_t *)&s->wait_timer, NULL);
    uv_run(&s->control, UV_RUN_DEFAULT); /* let the closed handles go */
    uv_loop_close(&s->control);
    s->control_ready = false;
}

lunet_status lunet_server_watch(lunet_server *s, const char *const *paths, int n) {
    unwatch_all(s);
    char failed[512] = "";
    for (int i = 0; i < n; i++) {
        struct serve_watch *w = calloc(1, sizeof *w);
        if (!w) return lunet__nomem("serve");
        uv_fs_event_init(&s->control, &w->handle);
        w->handle.data = s;
        int rc = uv_fs_event_start(&w->handle, on_path_changed, paths[i], 0);
        if (rc != 0) {
            if (!failed[0]) snprintf(failed, sizeof failed, "serve: cannot watch %s: %s", paths[i], uv_strerror(rc));
            uv_close((uv_handle_t *)&w->handle, watch_closed);
            continue;
        }
        w->next = s->watches;
        s->watches = w;
    }
    return failed[0] ? lunet__fail(LUNET_ERR_IO, "%s", failed) : LUNET_OK;
}

lunet_status lunet_server_wait(lunet_server *s, int timeout_ms, lunet_server_event *event) {
    if (!s->started) return lunet__fail(LUNET_ERR_ARG, "serve: wait on a server not started");
    if (timeout_ms >= 0) uv_timer_start(&s->wait_timer, on_wait_timeout, (uint64_t)timeout_ms, 0);
    while (!s->events && atomic_load(&s->loops_running) > 0) uv_run(&s->control, UV_RUN_ONCE);
    uv_timer_stop(&s->wait_timer);
    if (atomic_load(&s->loops_running) == 0) {
        for (int i = 0; i < s->threads; i++) serve_loop_join(&s->loops[i]);
        *event = LUNET_SERVER_STOPPED;
        return LUNET_OK;
    }
    if (s->events & EVENT_HANGUP) *event = LUNET_SERVER_HANGUP, s->events &= ~(unsigned)EVENT_HANGUP;
    else if (s->events & EVENT_CHANGED) *event = LUNET_SERVER_CHANGED, s->events &= ~(unsigned)EVENT_CHANGED;
    else *event = LUNET_SERVER_TIMEOUT;
    s->events &= ~(unsigned)EVENT_TIMEOUT; /* a timeout that came with another event is that event's */
    return LUNET_OK;
}
