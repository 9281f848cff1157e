/*
 * fuzz_http.c: a libFuzzer target for the model server's request handling (core/src/serve/
 * conn.c and routes.c, with http-parser underneath), through a real lunet_server: the
 * connection code is tied to libuv, so the bytes go in over TCP as a client's would.
 *
 * Once, a server starts on 127.0.0.1 (port 0) on a thread of its own, with two event loops
 * (connections alternate between them, so the handing over is fuzzed too), small limits and short timeouts, serving one model built here: "m", version 1,
 * a Linear of 4 f32 inputs to 2 outputs, so that POST /v2/models/m/infer and
 * /v1/models/m:predict run inference.  Each input is then one connection: connect, write the
 * input, shut the writing side (the server sees the end of the stream), read until the
 * server closes, close.  One input in HOLD_EVERY (by its size, so that a replay does the
 * same) keeps the writing side open instead, so the server must end the connection itself:
 * with a 408 when a request is unfinished, or by closing an idle one (its timeouts are 100 ms).
 *
 * Beyond "no crash, no sanitizer report" (in the server's threads too), it checks:
 *   - the server closes within a second of the last byte it sends or gets (else it hangs, and
 *     the input is saved as a crash);
 *   - what it sends back is whole responses, one after another (several when the input holds
 *     pipelined requests), no more of them than the input can hold requests: each starts
 *     "HTTP/1.1 " and a 3-digit status with a reason phrase the server knows, has a
 *     Content-Length (but a 100 Continue), and its body is that long (or empty, as a HEAD
 *     response is); one that says "Connection: close" is the last (RFC 9112, 9.6);
 *   - every HEALTH_EVERY inputs, the server still answers GET /v2/health/live with 200.
 *
 * What is served changes under the fuzzing, as hot reload and token rotation change it: every
 * SWAP_EVERY inputs version 1 of "m" is replaced by a new copy (requests may be waiting in its
 * batches: they finish on the old one, which is then freed), and every AUTH_EVERY inputs bearer
 * tokens are turned on (scope infer; the seeds carry "Authorization: Bearer fuzz-token-...")
 * or off again.
 *
 * FUZZ_HTTP_PRINT=1 in the environment prints what came back for each input, which is what
 * one wants when replaying a saved one (build/fuzz/fuzz_http build/fuzz/artifacts/crash-...).
 *
 * http-parser and libuv are Debian's shared libraries, built without coverage: the fuzzer
 * sees the paths of the server's callbacks and routes, not those inside the parser.  The
 * server takes SIGINT and SIGTERM to stop (libuv's handlers replace libFuzzer's), so on
 * either this target exits at once.
 *
 *     make build/fuzz/fuzz_http            (clang with libFuzzer, ASan and UBSan: the Makefile says how)
 *     build/fuzz/fuzz_http -max_total_time=120 -max_len=65536 -artifact_prefix=build/fuzz/artifacts/ \
 *           build/fuzz/corpus/http
 */
#define _POSIX_C_SOURCE 200809L
#include "lunet.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HEALTH_EVERY 16
#define HOLD_EVERY 64
#define MAX_RESPONSE_BYTES ((size_t)64 << 10) /* /metrics is the longest: 14 KiB */

/* A broken promise of the server: stop so that libFuzzer saves the input. */
#define FUZZ_REQUIRE(cond, ...)                                                                              \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_http: %s failed: ", #cond);                                                \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

#define SWAP_EVERY 64
#define AUTH_EVERY 256
#define FUZZ_TOKEN "fuzz-token-0123456789"

static lunet_server *server;
static int port;
static unsigned long inputs;
static bool print_replies; /* FUZZ_HTTP_PRINT=1: show what came back (to replay an input) */

/* ---- the server ----------------------------------------------------------------------------------- */

static void *serve(void *arg) {
    lunet_status s = lunet_server_run(arg);
    /* It only returns on SIGINT or SIGTERM: stop fuzzing too, as libFuzzer would. */
    fprintf(stderr, "fuzz_http: the server stopped (%s); exiting\n",
            s == LUNET_OK ? "signal" : lunet_last_error());
    _exit(0);
    return NULL;
}

/* A Linear of 4 inputs to 2 outputs, weights and bias made with the tensor API. */
static lunet_model *small_model(void) {
    static const float w[8] = {0.5f, -1, 0.25f, 2, 1, 1, -0.5f, 0}, b[2] = {0.1f, -0.2f};
    int64_t sample[1] = {4}, wshape[2] = {2, 4}, bshape[1] = {2};
    lunet_model *m = NULL;
    lunet_tensor *weight = NULL, *bias = NULL;
    if (lunet_model_create(&m, LUNET_DTYPE_F32, 1, sample) != LUNET_OK ||
        lunet_tensor_from_data(&weight, LUNET_DTYPE_F32, 2, wshape, w) != LUNET_OK ||
        lunet_tensor_from_data(&bias, LUNET_DTYPE_F32, 1, bshape, b) != LUNET_OK ||
        lunet_model_add_linear(m, weight, bias) != LUNET_OK) {
        fprintf(stderr, "fuzz_http: cannot build the model: %s\n", lunet_last_error());
        exit(1);
    }
    lunet_tensor_release(weight);
    lunet_tensor_release(bias);
    return m;
}

/* Serves (or replaces) version 1 of "m"; false with lunet_last_error when it cannot. */
static bool serve_model_m(void) {
    lunet_model *graphs[2] = {small_model(), small_model()};
    lunet_server_model model = {.name = "m", .version = 1, .graphs = graphs, .max_batch_size = 4};
    return lunet_server_add_model(server, &model) == LUNET_OK;
}

/* What is served changes now and then while the server runs (see the top of the file). */
static void change_what_is_served(unsigned long input) {
    if (input % SWAP_EVERY == SWAP_EVERY - 1)
        FUZZ_REQUIRE(serve_model_m(), "replacing model m: %s", lunet_last_error());
    if (input % AUTH_EVERY == AUTH_EVERY - 1) {
        static const lunet_server_token token = {.token = FUZZ_TOKEN, .scopes = LUNET_SCOPE_INFER};
        bool on = (input / AUTH_EVERY) % 2 == 0;
        FUZZ_REQUIRE(lunet_server_set_tokens(server, on ? &token : NULL, on ? 1 : -1) == LUNET_OK, "tokens: %s",
                     lunet_last_error());
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc, (void)argv;
    print_replies = getenv("FUZZ_HTTP_PRINT") != NULL;
    lunet_server_options o = {
        .host = "127.0.0.1",
        .port = 0,
        .threads = 2,
        .quiet = true,
        .max_header_bytes = 1024,
        .max_body_bytes = 65536,
        .max_write_queue_bytes = 4096, /* small: pipelined responses reach the back-pressure path */
        .header_timeout_ms = 100,
        .body_timeout_ms = 100,
        .idle_timeout_ms = 100,
    };
    if (lunet_server_create(&server, &o) != LUNET_OK || !serve_model_m()) {
        fprintf(stderr, "fuzz_http: cannot start the server: %s\n", lunet_last_error());
        exit(1);
    }
    port = lunet_server_port(server);
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve, server) != 0) {
        fprintf(stderr, "fuzz_http: cannot start the server's thread\n");
        exit(1);
    }
    pthread_detach(thread);
    return 0;
}

/* ---- a client ------------------------------------------------------------------------------------- */

static int connect_to_server(void) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    for (int attempt = 0;; attempt++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        FUZZ_REQUIRE(fd >= 0, "socket: %s", strerror(errno));
        struct timeval timeout = {.tv_sec = 1};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) return fd;
        int err = errno;
        close(fd);
        /* Interrupted (libFuzzer's timers signal), or out of local ports for a moment
         * (TIME_WAIT): try again.  Anything else, or for long, means the server no longer
         * accepts. */
        FUZZ_REQUIRE((err == EINTR || err == EADDRNOTAVAIL || err == EAGAIN) && attempt < 100,
                     "connect to port %d: %s", port, strerror(err));
        if (err == EINTR) continue;
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
}

typedef struct bytes {
    char *data;
    size_t len, cap;
} bytes;

/* Prints a reply (cut, with bytes that are not text escaped) for a report. */
static void dump(const bytes *reply, size_t at) {
    fprintf(stderr, "fuzz_http: %zu bytes came back; at byte %zu:\n", reply->len, at);
    size_t end = print_replies ? reply->len : at + 600;
    for (size_t i = at; i < reply->len && i < end; i++) {
        unsigned char c = (unsigned char)reply->data[i];
        if (c == '\n' || (c >= 0x20 && c < 0x7f))
            fputc(c, stderr);
        else
            fprintf(stderr, "\\x%02x", c);
    }
    fputc('\n', stderr);
}

/* The most final (not 100 Continue) responses a request stream can get: one per request, and
 * each needs two line-end bytes (its request line's and the empty line's after its headers),
 * plus one for whatever follows the last whole request (an error, after which the server
 * closes).  CR counts as well as LF: Debian's http-parser is built lenient, and ends the headers
 * of "GET /v2 HTTP/1.1\n\r" and any byte after them. */
static size_t max_responses(const uint8_t *request, size_t size) {
    size_t line_ends = 0;
    for (size_t i = 0; i < size; i++)
        line_ends += request[i] == '\n' || request[i] == '\r';
    return line_ends / 2 + 1;
}

/* Sends request and reads everything the server sends back until it closes: at most
 * max_responses of at most MAX_RESPONSE_BYTES each. */
static void exchange(const uint8_t *request, size_t size, bytes *reply) {
    size_t limit = max_responses(request, size) * MAX_RESPONSE_BYTES;
    int fd = connect_to_server();
    for (size_t sent = 0; sent < size;) {
        ssize_t n = send(fd, request + sent, size - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        /* The server may close before it has read everything (after a 400, 413 or 431): then
         * what it answered is still there to read. */
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) break;
        FUZZ_REQUIRE(n > 0, "send after %zu of %zu bytes: %s", sent, size, strerror(errno));
        sent += (size_t)n;
    }
    if (size % HOLD_EVERY != HOLD_EVERY - 1) shutdown(fd, SHUT_WR);
    reply->len = 0;
    for (;;) {
        if (reply->cap - reply->len < 65536) {
            reply->cap = reply->cap ? reply->cap * 2 : 1 << 17;
            reply->data = realloc(reply->data, reply->cap);
            if (!reply->data) abort();
        }
        ssize_t n = recv(fd, reply->data + reply->len, reply->cap - reply->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n == 0 || (n < 0 && errno == ECONNRESET)) break; /* a reset: it closed with input unread */
        FUZZ_REQUIRE(n > 0,
                     "%s: the server neither answered nor closed within a second of the request's end "
                     "(%zu bytes read so far)",
                     strerror(errno), reply->len);
        reply->len += (size_t)n;
        if (reply->len > limit) dump(reply, 0);
        FUZZ_REQUIRE(reply->len <= limit,
                     "the server sent %zu bytes and goes on: more than %zu responses' worth", reply->len,
                     max_responses(request, size));
    }
    close(fd);
}

/* ---- what came back ------------------------------------------------------------------------------- */

static bool starts_response(const char *p, size_t left) {
    return left >= 9 && memcmp(p, "HTTP/1.1 ", 9) == 0;
}

static const char *find(const char *p, size_t n, const char *what) {
    size_t k = strlen(what);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, what, k) == 0) return p + i;
    return NULL;
}

/* Checks that reply is whole responses, one after another; returns how many, and the status
 * of the last in *last_status. */
static int check_responses(const bytes *reply, int *last_status) {
    int count = 0;
    size_t pos = 0;
    while (pos < reply->len) {
        const char *p = reply->data + pos;
        size_t left = reply->len - pos;
        bool ok = starts_response(p, left) && left >= 13 && p[9] >= '1' && p[9] <= '5' && p[10] >= '0' &&
                  p[10] <= '9' && p[11] >= '0' && p[11] <= '9' && p[12] == ' ';
        if (!ok) dump(reply, pos);
        FUZZ_REQUIRE(ok, "response %d does not start with \"HTTP/1.1 \" and a status", count + 1);
        int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
        const char *end = find(p, left, "\r\n\r\n");
        if (!end) dump(reply, pos);
        FUZZ_REQUIRE(end != NULL, "response %d (%d) is cut in its headers", count + 1, status);
        size_t head = (size_t)(end + 4 - p);
        const char *line_end = find(p, head, "\r\n");
        FUZZ_REQUIRE(!find(p, (size_t)(line_end - p), "Unknown"),
                     "response %d: status %d has no reason phrase", count + 1, status);
        size_t length = 0;
        const char *cl = find(p, head, "\r\nContent-Length: ");
        if (status >= 200) {
            if (!cl) dump(reply, pos);
            FUZZ_REQUIRE(cl != NULL, "response %d (%d) has no Content-Length", count + 1, status);
            char *digits_end;
            length = strtoull(cl + 18, &digits_end, 10);
            FUZZ_REQUIRE(digits_end > cl + 18 && digits_end[0] == '\r', "response %d: a bad Content-Length",
                         count + 1);
        } else {
            FUZZ_REQUIRE(status == 100 && head == 25, "response %d: an interim %d that is not 100 Continue",
                         count + 1, status);
        }
        /* The body is Content-Length bytes, or none for a HEAD request (which the header
         * counts as for GET): whichever ends at the end or at the next response. */
        size_t next = head + length;
        bool whole = next <= left && (next == left || starts_response(p + next, left - next));
        if (!whole && (head == left || starts_response(p + head, left - head))) next = head, whole = true;
        if (!whole) dump(reply, pos);
        FUZZ_REQUIRE(whole,
                     "response %d (%d) has a body of %zu bytes that does not end at the end or at the "
                     "next response (%zu bytes left)",
                     count + 1, status, length, left - head);
        /* RFC 9112, 9.6: after a response saying "Connection: close", no more requests are
         * processed. */
        if (find(p, head, "\r\nConnection: close\r\n") && next != left) dump(reply, pos);
        FUZZ_REQUIRE(!find(p, head, "\r\nConnection: close\r\n") || next == left,
                     "response %d (%d) says Connection: close, but more responses follow", count + 1, status);
        if (status >= 200) count++, *last_status = status;
        pos += next;
    }
    return count;
}

static void check_health(bytes *reply) {
    static const char request[] = "GET /v2/health/live HTTP/1.1\r\nHost: fuzz\r\n\r\n";
    exchange((const uint8_t *)request, sizeof request - 1, reply);
    int status = 0;
    int n = check_responses(reply, &status);
    if (n != 1 || status != 200) dump(reply, 0);
    FUZZ_REQUIRE(n == 1 && status == 200, "GET /v2/health/live after %lu inputs: %d responses, the last %d",
                 inputs, n, status);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bytes reply;
    exchange(data, size, &reply);
    if (print_replies) dump(&reply, 0);
    int status = 0;
    int n = check_responses(&reply, &status);
    if ((size_t)n > max_responses(data, size)) dump(&reply, 0);
    FUZZ_REQUIRE((size_t)n <= max_responses(data, size), "%d responses to at most %zu requests", n,
                 max_responses(data, size));
    if (inputs % HEALTH_EVERY == 0) check_health(&reply);
    change_what_is_served(inputs++);
    return 0;
}
