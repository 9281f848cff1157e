/*
 * random.c: the default random generator, xoshiro256** seeded through splitmix64.
 * It is small, fast, passes BigCrush, and gives the same stream on every platform, so a
 * seed reproduces a run anywhere.
 */
#include "internal.h"

#include <math.h>
#include <string.h>

static uint64_t state[4] = {0x9e3779b97f4a7c15ull, 0xbf58476d1ce4e5b9ull, 0x94d049bb133111ebull,
                            0x2545f4914f6cdd1dull};

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(void) {
    uint64_t result = rotl(state[1] * 5, 7) * 9, t = state[1] << 17;
    state[2] ^= state[0];
    state[3] ^= state[1];
    state[1] ^= state[2];
    state[0] ^= state[3];
    state[2] ^= t;
    state[3] = rotl(state[3], 45);
    return result;
}

void lunet_manual_seed(uint64_t seed) {
    for (int i = 0; i < 4; i++) {
        uint64_t z = (seed += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        state[i] = z ^ (z >> 31);
    }
}

void lunet_rng_get_state(uint64_t out[4]) { memcpy(out, state, sizeof state); }

void lunet_rng_set_state(const uint64_t in[4]) {
    memcpy(state, in, sizeof state);
    if (!(state[0] | state[1] | state[2] | state[3])) lunet_manual_seed(0); /* all-zero is a fixed point */
}

double lunet_rng_uniform(void) { return (double)(next_u64() >> 11) * 0x1.0p-53; }

/* Box-Muller on two uniforms; u1 is kept away from 0 so log() stays finite. */
static void normal_pair(double *a, double *b) {
    double u1 = ((double)(next_u64() >> 11) + 0.5) * 0x1.0p-53;
    double u2 = lunet_rng_uniform();
    double r = sqrt(-2.0 * log(u1)), theta = 6.283185307179586 * u2;
    *a = r * cos(theta);
    *b = r * sin(theta);
}

double lunet_rng_normal(void) {
    double a, b;
    normal_pair(&a, &b);
    return a;
}

static lunet_status random_tensor(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                  const int64_t *shape, bool normal, const char *op) {
    *out = NULL;
    if (!lunet_dtype_is_float(dtype))
        return lunet__fail(LUNET_ERR_DTYPE, "%s: dtype %s is not a float dtype", op,
                           lunet_dtype_name(dtype));
    lunet_tensor *t;
    LUNET_TRY(lunet__tensor_new(&t, dtype, ndim, shape, op));
    int64_t n = t->numel;
    if (dtype == LUNET_DTYPE_F32) {
        float *d = lunet_tensor_data(t);
        if (!normal) {
            for (int64_t i = 0; i < n; i++) d[i] = (float)(next_u64() >> 40) * 0x1.0p-24f;
        } else {
            for (int64_t i = 0; i < n; i += 2) {
                double a, b;
                normal_pair(&a, &b);
                d[i] = (float)a;
                if (i + 1 < n) d[i + 1] = (float)b;
            }
        }
    } else {
        double *d = lunet_tensor_data(t);
        if (!normal) {
            for (int64_t i = 0; i < n; i++) d[i] = lunet_rng_uniform();
        } else {
            for (int64_t i = 0; i < n; i += 2) {
                double a, b;
                normal_pair(&a, &b);
                d[i] = a;
                if (i + 1 < n) d[i + 1] = b;
            }
        }
    }
    *out = t;
    return LUNET_OK;
}

lunet_status lunet_tensor_rand(lunet_tensor **out, lunet_dtype dtype, int ndim,
                               const int64_t *shape) {
    return random_tensor(out, dtype, ndim, shape, false, "rand");
}

lunet_status lunet_tensor_randn(lunet_tensor **out, lunet_dtype dtype, int ndim,
                                const int64_t *shape) {
    return random_tensor(out, dtype, ndim, shape, true, "randn");
}
