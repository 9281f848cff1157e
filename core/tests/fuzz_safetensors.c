/*
 * fuzz_safetensors.c: a libFuzzer target for the safetensors reader and, through it, the JSON
 * parser.  Each input is tried twice: as a whole file, and as a header (given the right length
 * field and no data) so that mutations reach deep into the JSON instead of mostly breaking the
 * length field.  Beyond "no crash, no sanitizer report", it checks what a caller relies on: a
 * failure hands back nothing and says LUNET_ERR_FORMAT with a message naming the source; a
 * success holds only tensors that fit in the input.
 *
 *     clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
 *           -DLUNET_ALLOC_NO_CACHE -std=c11 -Icore/include -Icore/src $(pkg-config --cflags openblas) \
 *           core/tests/fuzz_safetensors.c core/src/\*.c -o build/fuzz/fuzz_safetensors \
 *           $(pkg-config --libs openblas) -ldnnl -lgomp -lz -lm -lpthread    (the Makefile's LIBS)
 *     build/fuzz/fuzz_safetensors -max_total_time=120 -artifact_prefix=build/fuzz/ corpus_dir
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

/* A broken promise of the reader: stop so that libFuzzer saves the input. */
#define FUZZ_REQUIRE(cond)                                                                                   \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "fuzz_safetensors: %s failed (%s)\n", #cond, lunet_last_error());                \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

static void read_and_check(const uint8_t *data, size_t size) {
    lunet_safetensors *f = (lunet_safetensors *)&f;
    lunet_status s = lunet__safetensors_read_memory(&f, data, size, "fuzz");
    if (s != LUNET_OK) {
        FUZZ_REQUIRE(f == NULL);
        FUZZ_REQUIRE(s == LUNET_ERR_FORMAT || s == LUNET_ERR_NOMEM);
        FUZZ_REQUIRE(strncmp(lunet_last_error(), "safetensors: fuzz: ", 19) == 0);
        return;
    }
    size_t total = 0;
    for (size_t i = 0; i < lunet_safetensors_count(f); i++) {
        const lunet_tensor *t = lunet_safetensors_tensor(f, i);
        FUZZ_REQUIRE(t && lunet_safetensors_name(f, i));
        size_t nbytes = (size_t)lunet_tensor_numel(t) * lunet_dtype_size(lunet_tensor_dtype(t));
        /* (Only when it has elements: lunet_tensor_is_contiguous says false for some empty
         * shapes, such as [3, 0], whatever their strides.) */
        FUZZ_REQUIRE(nbytes == 0 || lunet_tensor_is_contiguous(t));
        total += nbytes;
        /* Touch every byte, so that the sanitizer sees a tensor smaller than it claims. */
        const unsigned char *p = lunet_tensor_data(t);
        unsigned sum = 0;
        for (size_t k = 0; k < nbytes; k++)
            sum += p[k];
        (void)sum;
    }
    FUZZ_REQUIRE(total <= size);
    for (size_t i = 0; i < lunet_safetensors_metadata_count(f); i++) {
        const char *key = lunet_safetensors_metadata_key(f, i);
        FUZZ_REQUIRE(lunet_safetensors_metadata_get(f, key) != NULL);
    }
    lunet_safetensors_free(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    read_and_check(data, size);
    uint8_t *file = malloc(size + 8);
    if (!file) return 0;
    for (int i = 0; i < 8; i++)
        file[i] = (uint8_t)((uint64_t)size >> (8 * i));
    if (size) memcpy(file + 8, data, size);
    read_and_check(file, size + 8);
    free(file);
    return 0;
}
