/* test_tensor.c: creation, dtypes, views, element access, fill/copy, life cycle, memory. */
#include "check.h"

static void test_status_and_dtypes(void) {
    CHECK(strcmp(lunet_status_name(LUNET_ERR_SHAPE), "LUNET_ERR_SHAPE") == 0);
    CHECK(strcmp(lunet_status_str(LUNET_ERR_NOMEM), "out of memory") == 0);
    CHECK(strcmp(lunet_status_name((lunet_status)-99), "unknown") == 0);
    for (int d = 0; d < LUNET_DTYPE_COUNT; d++) {
        lunet_dtype back;
        CHECK_OK(lunet_dtype_from_name(&back, lunet_dtype_name((lunet_dtype)d)));
        CHECK(back == (lunet_dtype)d);
    }
    lunet_dtype unused;
    CHECK_FAILS(lunet_dtype_from_name(&unused, "f16"), LUNET_ERR_DTYPE, "unknown dtype 'f16'");
    CHECK(lunet_dtype_size(LUNET_DTYPE_I64) == 8 && lunet_dtype_size(LUNET_DTYPE_U8) == 1);
}

static void test_creation(void) {
    int64_t shape[2] = {2, 3};
    lunet_tensor *z, *o, *f, *e, *a, *l, *r;
    CHECK_OK(lunet_tensor_zeros(&z, LUNET_DTYPE_F32, 2, shape));
    CHECK_OK(lunet_tensor_ones(&o, LUNET_DTYPE_I32, 2, shape));
    CHECK_OK(lunet_tensor_full(&f, LUNET_DTYPE_F64, 2, shape, 2.5));
    CHECK(lunet_tensor_numel(z) == 6 && lunet_tensor_is_contiguous(z));
    CHECK(lunet_tensor_strides(z)[0] == 3 && lunet_tensor_strides(z)[1] == 1);
    CHECK(element(z, 5) == 0 && element(o, 4) == 1 && element(f, 2) == 2.5);
    CHECK_OK(lunet_tensor_eye(&e, LUNET_DTYPE_F32, 3, 4));
    CHECK(element(e, 0) == 1 && element(e, 5) == 1 && element(e, 1) == 0 && element(e, 11) == 0);
    CHECK_OK(lunet_tensor_arange(&a, LUNET_DTYPE_I64, 2, 11, 3));
    CHECK(lunet_tensor_numel(a) == 3 && element(a, 2) == 8);
    CHECK_OK(lunet_tensor_linspace(&l, LUNET_DTYPE_F64, 0, 1, 5));
    CHECK(element(l, 1) == 0.25 && element(l, 4) == 1.0);
    CHECK_FAILS(lunet_tensor_arange(&r, LUNET_DTYPE_F32, 0, 5, -1), LUNET_ERR_ARG, "arange: step -1");
    CHECK(r == NULL);
    int64_t bad[2] = {2, -3};
    CHECK_FAILS(lunet_tensor_zeros(&r, LUNET_DTYPE_F32, 2, bad), LUNET_ERR_SHAPE, "negative size -3");
    int64_t huge[3] = {1 << 30, 1 << 30, 1 << 30};
    CHECK_FAILS(lunet_tensor_zeros(&r, LUNET_DTYPE_F32, 3, huge), LUNET_ERR_SHAPE, "overflows");
    int64_t many[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK_FAILS(lunet_tensor_zeros(&r, LUNET_DTYPE_F32, 9, many), LUNET_ERR_SHAPE, "at most 8");
    lunet_tensor *items[] = {z, o, f, e, a, l};
    for (size_t i = 0; i < 6; i++) lunet_tensor_release(items[i]);
}

static void test_random_is_seeded(void) {
    int64_t shape[1] = {1000};
    lunet_tensor *a, *b, *n;
    lunet_manual_seed(42);
    CHECK_OK(lunet_tensor_rand(&a, LUNET_DTYPE_F32, 1, shape));
    lunet_manual_seed(42);
    CHECK_OK(lunet_tensor_rand(&b, LUNET_DTYPE_F32, 1, shape));
    CHECK(memcmp(lunet_tensor_data(a), lunet_tensor_data(b), 4000) == 0);
    double lo = 1, hi = 0, mean = 0, var = 0;
    for (int i = 0; i < 1000; i++) {
        double v = element(a, i);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    CHECK(lo >= 0 && hi < 1 && lo < 0.01 && hi > 0.99);
    CHECK_OK(lunet_tensor_randn(&n, LUNET_DTYPE_F64, 1, shape));
    for (int i = 0; i < 1000; i++) mean += element(n, i) / 1000;
    for (int i = 0; i < 1000; i++) var += (element(n, i) - mean) * (element(n, i) - mean) / 999;
    CHECK(fabs(mean) < 0.15 && fabs(var - 1) < 0.15);
    uint64_t state[4], again[4];
    lunet_rng_get_state(state);
    double x = lunet_rng_uniform();
    lunet_rng_set_state(state);
    CHECK(lunet_rng_uniform() == x);
    lunet_rng_get_state(again);
    CHECK(memcmp(state, again, sizeof state) != 0);
    lunet_tensor *r;
    CHECK_FAILS(lunet_tensor_rand(&r, LUNET_DTYPE_I32, 1, shape), LUNET_ERR_DTYPE, "not a float dtype");
    lunet_tensor_release(a);
    lunet_tensor_release(b);
    lunet_tensor_release(n);
}

static void test_views_share_storage(void) {
    int64_t shape[2] = {3, 4};
    double v[12];
    for (int i = 0; i < 12; i++) v[i] = i;
    lunet_tensor *t = tensor_of(LUNET_DTYPE_F32, 2, shape, v), *tr, *n, *s, *sel, *u, *sq, *fl, *ex, *re, *c, *p;
    CHECK_OK(lunet_tensor_transpose(&tr, t, 0, 1));
    CHECK(lunet_tensor_shape(tr)[0] == 4 && !lunet_tensor_is_contiguous(tr) && lunet_tensor_shares_storage(tr, t));
    CHECK(element(tr, 1) == 4); /* tr[0][1] = t[1][0] */
    CHECK_OK(lunet_tensor_narrow(&n, t, 1, 1, 2));
    CHECK(lunet_tensor_shape(n)[1] == 2 && element(n, 0) == 1 && element(n, 3) == 6);
    CHECK_OK(lunet_tensor_slice(&s, t, 1, 0, 4, 2));
    CHECK(lunet_tensor_shape(s)[1] == 2 && element(s, 1) == 2 && element(s, 2) == 4);
    CHECK_OK(lunet_tensor_select(&sel, t, 0, -1));
    CHECK(lunet_tensor_ndim(sel) == 1 && element(sel, 0) == 8);
    CHECK_OK(lunet_tensor_unsqueeze(&u, t, 1));
    CHECK(lunet_tensor_ndim(u) == 3 && lunet_tensor_shape(u)[1] == 1);
    CHECK_OK(lunet_tensor_squeeze_all(&sq, u));
    CHECK(lunet_tensor_ndim(sq) == 2);
    CHECK_OK(lunet_tensor_flatten(&fl, t, 0, -1));
    CHECK(lunet_tensor_ndim(fl) == 1 && lunet_tensor_shares_storage(fl, t));
    int64_t to[3] = {2, 3, 4};
    CHECK_OK(lunet_tensor_expand(&ex, t, 3, to));
    CHECK(lunet_tensor_strides(ex)[0] == 0 && element(ex, 12 + 5) == 5);
    /* A transposed tensor cannot be viewed flat, but reshape copies. */
    int64_t flat[1] = {-1};
    CHECK_FAILS(lunet_tensor_view(&re, tr, 1, flat), LUNET_ERR_SHAPE, "use reshape");
    CHECK_OK(lunet_tensor_reshape(&re, tr, 1, flat));
    CHECK(!lunet_tensor_shares_storage(re, t) && element(re, 1) == 4);
    lunet_tensor_release(re);
    int64_t bad[2] = {5, -1};
    CHECK_FAILS(lunet_tensor_reshape(&re, t, 2, bad), LUNET_ERR_SHAPE, "invalid for a tensor of 12 elements");
    int perm[2] = {1, 1};
    CHECK_FAILS(lunet_tensor_permute(&p, t, perm), LUNET_ERR_ARG, "appears twice");
    CHECK_OK(lunet_tensor_contiguous(&c, tr));
    CHECK(lunet_tensor_is_contiguous(c) && max_abs_diff(c, tr) == 0);
    CHECK_FAILS(lunet_tensor_narrow(&re, t, 1, 3, 2), LUNET_ERR_INDEX, "do not fit dim 1 of size 4");
    CHECK_FAILS(lunet_tensor_select(&re, t, 2, 0), LUNET_ERR_INDEX, "dim 2 out of range");
    int64_t wrong[2] = {3, 5};
    CHECK_FAILS(lunet_tensor_expand(&re, t, 2, wrong), LUNET_ERR_SHAPE, "dim 1 has size 4, not 1");
    lunet_tensor *items[] = {t, tr, n, s, sel, u, sq, fl, ex, c};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) lunet_tensor_release(items[i]);
}

static void test_elements_fill_copy(void) {
    int64_t shape[2] = {2, 3};
    lunet_tensor *t, *row, *tr, *big;
    CHECK_OK(lunet_tensor_zeros(&t, LUNET_DTYPE_I64, 2, shape));
    int64_t at[2] = {1, -1};
    CHECK_OK(lunet_tensor_set_i64(t, at, (int64_t)1 << 60));
    int64_t got;
    CHECK_OK(lunet_tensor_get_i64(&got, t, at));
    CHECK(got == (int64_t)1 << 60); /* exact beyond 2^53 */
    int64_t out_of_range[2] = {2, 0};
    CHECK_FAILS(lunet_tensor_get_i64(&got, t, out_of_range), LUNET_ERR_INDEX, "index 2 out of range for dim 0 of size 2");
    double item;
    CHECK_FAILS(lunet_tensor_item_f64(&item, t), LUNET_ERR_SHAPE, "item needs exactly one");
    /* copy broadcasts a row into every row, converting dtype */
    int64_t rshape[1] = {3};
    double rv[3] = {1.9, -2.9, 300};
    row = tensor_of(LUNET_DTYPE_F64, 1, rshape, rv);
    lunet_tensor *u8;
    CHECK_OK(lunet_tensor_zeros(&u8, LUNET_DTYPE_U8, 2, shape));
    CHECK_OK(lunet_tensor_copy(u8, row));
    /* float to integer conversion truncates and saturates */
    CHECK(element(u8, 0) == 1 && element(u8, 1) == 0 && element(u8, 2) == 255 && element(u8, 5) == 255);
    CHECK_OK(lunet_tensor_copy(t, row));
    CHECK(element(t, 1) == -2 && element(t, 2) == 300);
    CHECK_OK(lunet_tensor_fill(row, 7));
    CHECK(element(row, 2) == 7);
    /* copy between overlapping views of one storage reads the source before writing */
    int64_t sq[2] = {3, 3};
    double v[9] = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    big = tensor_of(LUNET_DTYPE_F32, 2, sq, v);
    CHECK_OK(lunet_tensor_transpose(&tr, big, 0, 1));
    CHECK_OK(lunet_tensor_copy(big, tr));
    CHECK(element(big, 1) == 3 && element(big, 3) == 1 && element(big, 5) == 7);
    int64_t four[1] = {4};
    lunet_tensor *wrong;
    CHECK_OK(lunet_tensor_zeros(&wrong, LUNET_DTYPE_F32, 1, four));
    CHECK_FAILS(lunet_tensor_copy(t, wrong), LUNET_ERR_SHAPE, "cannot be broadcast");
    lunet_tensor *items[] = {t, row, tr, big, u8, wrong};
    for (size_t i = 0; i < sizeof items / sizeof *items; i++) lunet_tensor_release(items[i]);
}

static void test_long_chain_release_is_iterative(void) {
    /* 200,000 recorded adds: releasing the end must not recurse once per link. */
    int64_t one[1] = {1};
    lunet_tensor *x, *cur;
    CHECK_OK(lunet_tensor_ones(&x, LUNET_DTYPE_F32, 1, one));
    CHECK_OK(lunet_tensor_set_requires_grad(x, true));
    cur = lunet_tensor_retain(x);
    for (int i = 0; i < 200000; i++) {
        lunet_tensor *next;
        if (lunet_tensor_add(&next, cur, x) != LUNET_OK) break;
        lunet_tensor_release(cur);
        cur = next;
    }
    CHECK(element(cur, 0) == 200001);
    lunet_tensor_release(cur);
    lunet_tensor_release(x);
}

static void test_cache_reuses_memory(void) {
    int64_t shape[2] = {64, 64};
    lunet_alloc_stats before, after;
    for (int warm = 0; warm < 2; warm++) {
        lunet_tensor *t;
        CHECK_OK(lunet_tensor_zeros(&t, LUNET_DTYPE_F32, 2, shape));
        lunet_tensor_release(t);
    }
    lunet_alloc_get_stats(&before);
    for (int i = 0; i < 100; i++) {
        lunet_tensor *t;
        CHECK_OK(lunet_tensor_zeros(&t, LUNET_DTYPE_F32, 2, shape));
        lunet_tensor_release(t);
    }
    lunet_alloc_get_stats(&after);
#ifndef LUNET_ALLOC_NO_CACHE
    CHECK(after.system_allocs == before.system_allocs);
    CHECK(after.cache_hits >= before.cache_hits + 100);
#endif
    CHECK(after.live_bytes == before.live_bytes);
}

/* A batch gathered from a dataset-sized table is large enough to be copied by two threads, in
 * dim 0 (rows) and in dim 1 (an outer loop around the selected slices): every element must be
 * the one its index names. */
static void test_index_select_on_two_threads(void) {
    int64_t shape[3] = {3, 2000, 50}, count = 1500;
    lunet_tensor *table, *indices;
    CHECK_OK(lunet_tensor_arange(&table, LUNET_DTYPE_F32, 0, 3 * 2000 * 50, 1));
    lunet_tensor *t3;
    CHECK_OK(lunet_tensor_reshape(&t3, table, 3, shape));
    CHECK_OK(lunet_tensor_zeros(&indices, LUNET_DTYPE_I64, 1, &count));
    int64_t *at = lunet_tensor_data(indices);
    for (int64_t j = 0; j < count; j++) at[j] = (j * 7919) % 2000; /* scattered, with repeats */
    lunet_set_num_threads(2);
    lunet_tensor *picked;
    CHECK_OK(lunet_tensor_index_select(&picked, t3, 1, indices)); /* (3, 1500, 50): 900 KB */
    lunet_set_num_threads(1);
    const float *got = lunet_tensor_data(picked);
    int64_t wrong = 0;
    for (int64_t q = 0; q < 3; q++)
        for (int64_t j = 0; j < count; j++)
            for (int64_t i = 0; i < 50; i++)
                wrong += got[(q * count + j) * 50 + i] != (float)((q * 2000 + at[j]) * 50 + i);
    CHECK(wrong == 0);
    lunet_tensor *items[] = {table, t3, indices, picked};
    for (size_t i = 0; i < 4; i++) lunet_tensor_release(items[i]);
}

int main(void) {
    RUN(test_status_and_dtypes);
    RUN(test_creation);
    RUN(test_random_is_seeded);
    RUN(test_views_share_storage);
    RUN(test_elements_fill_copy);
    RUN(test_long_chain_release_is_iterative);
    RUN(test_cache_reuses_memory);
    RUN(test_index_select_on_two_threads);
    return check_report("test_tensor");
}
