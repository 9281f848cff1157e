/*
 * test_float_text.c: lunet__f32_text (float_text.c) against its reference, snprintf's
 * "%.9g": byte for byte on random bit patterns (every exponent), on the edges of the fixed
 * and scientific forms, on powers of ten and their neighbours, and on values whose ninth
 * digit is a tie or next to one.  Also prints how much faster it is.
 */
#include "check.h"

#include <time.h>

static uint64_t rng = 0x9e3779b97f4a7c15u;

static uint32_t next_bits(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

static int mismatches;

static void check_one(float v) {
    char want[64], got[LUNET__F32_TEXT_MAX];
    int want_len = snprintf(want, sizeof want, "%.9g", (double)v);
    size_t got_len = lunet__f32_text(got, v);
    bool same = (size_t)want_len == got_len && strcmp(want, got) == 0;
    if (!same && mismatches++ < 10) fprintf(stderr, "  %a: \"%.9g\" wanted, got \"%s\"\n", (double)v, (double)v, got);
    CHECK(same);
}

static float from_bits(uint32_t bits) {
    float v;
    memcpy(&v, &bits, sizeof v);
    return v;
}

static void test_random_bit_patterns(void) {
    int checked = 0;
    for (int i = 0; i < 1000000; i++) {
        float v = from_bits(next_bits());
        if (!isfinite(v)) continue;
        check_one(v);
        checked++;
    }
    CHECK(checked > 990000);
}

static void test_edges_and_powers_of_ten(void) {
    const float specials[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, 0.1f, 0.0001f, 0.00009999999f, 1e-5f, 123456789.0f,
                              999999999.0f, 1e9f, 1e10f, 999999936.0f, 1.17549435e-38f, 1.4e-45f, 3.40282347e38f,
                              0.00392156886f, 0.603921592f, -0.269076258f};
    for (size_t i = 0; i < sizeof specials / sizeof *specials; i++) check_one(specials[i]);
    for (int e = -45; e <= 38; e++) {
        float p = (float)pow(10, e);
        check_one(p);
        check_one(nextafterf(p, 0));
        check_one(nextafterf(p, INFINITY));
        check_one(-p);
    }
}

static void test_near_ties(void) {
    /* Floats whose value times a power of ten ends near .5 in the ninth digit: the integers of
     * 9 and 10 digits, and halves, scaled. */
    for (uint32_t i = 0; i < 100000; i++) {
        uint32_t m = 100000000u + next_bits() % 900000000u;
        check_one((float)m);
        check_one((float)m + 0.5f);
        check_one((float)m / 16.0f);
        check_one((float)m * 1e-12f);
    }
}

static void test_speed(void) {
    enum { N = 2000000 };
    float *values = malloc(N * sizeof *values);
    CHECK(values != NULL);
    if (!values) return;
    for (int i = 0; i < N; i++) values[i] = (float)(next_bits() % 2000000) / 1e6f - 1.0f; /* typical logits */
    char buf[64];
    size_t sink = 0;
    clock_t t0 = clock();
    for (int i = 0; i < N; i++) sink += (size_t)snprintf(buf, sizeof buf, "%.9g", (double)values[i]);
    clock_t t1 = clock();
    for (int i = 0; i < N; i++) sink += lunet__f32_text(buf, values[i]);
    clock_t t2 = clock();
    printf("  f32 text: snprintf %.0f ns, lunet__f32_text %.0f ns per value (%zu bytes)\n",
           (double)(t1 - t0) / CLOCKS_PER_SEC * 1e9 / N, (double)(t2 - t1) / CLOCKS_PER_SEC * 1e9 / N, sink);
    free(values);
}

int main(void) {
    RUN(test_random_bit_patterns);
    RUN(test_edges_and_powers_of_ten);
    RUN(test_near_ties);
    RUN(test_speed);
    return check_report("test_float_text");
}
