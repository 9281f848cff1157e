/*
 * infer_decode.c: microseconds per request body for reading and decoding an inference
 * request (infer_read + infer_decode, core/src/serve/infer.h), the packed path the server
 * runs against the plain reference (infer_read_reference, one JSON value per number).
 *
 *     make build/release/bench/infer_decode
 *     mkdir -p /tmp/dec/models/mlp/1 && lua5.4 bench/serve_setup.lua /tmp/dec 1
 *     build/release/bench/infer_decode /tmp/dec/body.json [ROUNDS]
 *
 * The body is an OIP v2 infer request for a model whose input is one (1, 28, 28) f32 sample
 * (serve_setup.lua's body.json, or any body with a multiple of 784 values).  The two paths
 * take turns in ROUNDS (default 201) short rounds of about 5 ms each, so that both see the
 * same moments of a shared, noisy machine, and the medians are printed: read the ratio
 * rather than the absolute figures.
 */
#define _POSIX_C_SOURCE 200809L
#include "serve/infer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_ROUNDS = 1001 };

typedef int (*read_fn)(infer_request *, infer_protocol, const infer_tensor_info *, const infer_tensor_info *,
                       const char *, size_t, size_t);

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* Microseconds per body over n reads and decodes into dst; negative when the body fails. */
static double time_path(read_fn read, const char *body, size_t len, const infer_tensor_info *in,
                        const infer_tensor_info *out, float *dst, int n) {
    double start = now();
    for (int i = 0; i < n; i++) {
        infer_request r;
        int status = read(&r, INFER_OIP, in, out, body, len, len);
        if (!status) status = infer_decode(&r, in, dst);
        if (status) {
            fprintf(stderr, "infer_decode: the body fails (%d): %s\n", status, r.error);
            infer_request_free(&r);
            return -1;
        }
        infer_request_free(&r);
    }
    return (now() - start) / n * 1e6;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, compare_doubles);
    return v[n / 2];
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s BODY.json [ROUNDS]\n", argv[0]);
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 201;
    if (rounds < 1 || rounds > MAX_ROUNDS) rounds = 201;
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static char body[1 << 22];
    size_t len = fread(body, 1, sizeof body, f);
    fclose(f);

    infer_tensor_info in = {
        .name = "input", .dtype = LUNET_DTYPE_F32, .ndim = 3, .shape = {1, 28, 28}, .count = 784};
    infer_tensor_info out = {
        .name = "output", .dtype = LUNET_DTYPE_F32, .ndim = 1, .shape = {10}, .count = 10};
    infer_request probe;
    int status = infer_read(&probe, INFER_OIP, &in, &out, body, len, len);
    int64_t rows = probe.rows;
    if (status) fprintf(stderr, "infer_decode: %s\n", probe.error);
    infer_request_free(&probe);
    if (status) return 1;
    float *dst = malloc((size_t)(rows * in.count) * sizeof *dst);
    if (!dst) return 1;

    /* Calibrate to about 5 ms a round on the reference path. */
    double once = time_path(infer_read_reference, body, len, &in, &out, dst, 50);
    if (once < 0) return 1;
    int n = (int)(5e3 / once) + 1;
    static double reference[MAX_ROUNDS], packed[MAX_ROUNDS], ratio[MAX_ROUNDS];
    for (int i = 0; i < rounds; i++) {
        reference[i] = time_path(infer_read_reference, body, len, &in, &out, dst, n);
        packed[i] = time_path(infer_read, body, len, &in, &out, dst, n);
        if (reference[i] < 0 || packed[i] < 0) return 1;
        ratio[i] = reference[i] / packed[i]; /* of two rounds run side by side */
    }
    double ref = median(reference, rounds), fast = median(packed, rounds);
    printf("body: %s, %zu bytes, %lld x %lld values\n", argv[1], len, (long long)rows, (long long)in.count);
    printf("reference (one JSON value per number)  %8.2f us/body\n", ref);
    printf("packed (the server's path)              %8.2f us/body\n", fast);
    printf("reference / packed, by round            %8.2fx\n", median(ratio, rounds));
    free(dst);
    return 0;
}
