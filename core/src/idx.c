/*
 * idx.c: reading IDX files, the format of MNIST and Fashion-MNIST, plain or gzip-compressed.
 *
 * The layout, every integer big-endian:
 *
 *     bytes 0-1   zero
 *     byte  2     element type: 0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64
 *     byte  3     the number of dims
 *     then        one u32 size per dim, then the elements in C order
 *
 * zlib's gzread passes a file that does not start with the gzip magic through unchanged, so
 * one path reads both kinds.  The header can claim any size and a gzip stream does not say
 * how much it holds, so the payload buffer grows only as bytes actually arrive: a lying
 * header costs at most twice the data that is really there, never the size it claims.
 */
#include "internal.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef struct idx_type {
    unsigned char code;
    const char *name; /* as the file stores it (i16 is not a lunet dtype) */
    size_t file_size; /* bytes per element in the file */
    lunet_dtype dtype;
} idx_type;

static const idx_type idx_types[] = {
    {0x08, "u8", 1, LUNET_DTYPE_U8},   {0x09, "i8", 1, LUNET_DTYPE_I8},   {0x0B, "i16", 2, LUNET_DTYPE_I32},
    {0x0C, "i32", 4, LUNET_DTYPE_I32}, {0x0D, "f32", 4, LUNET_DTYPE_F32}, {0x0E, "f64", 8, LUNET_DTYPE_F64},
};

/* Payload reads start at this size and double; the header's claim only caps the growth. */
#define IDX_FIRST_CHUNK ((size_t)1 << 20)
/* gzread takes an unsigned and returns an int, so one call reads at most this much. */
#define IDX_MAX_READ ((size_t)1 << 30)

/* The failure gzerror reports: the system's error for I/O, malformed data for a corrupt or
 * truncated gzip stream. */
static lunet_status gz_failure(gzFile f, const char *path) {
    int code;
    const char *text = gzerror(f, &code);
    if (code == Z_ERRNO) return lunet__fail(LUNET_ERR_IO, "idx: %s: read failed: %s", path, strerror(errno));
    if (code == Z_MEM_ERROR) return lunet__nomem("idx");
    if (code == Z_BUF_ERROR)
        return lunet__fail(LUNET_ERR_FORMAT, "idx: %s: the gzip stream is cut short", path);
    return lunet__fail(LUNET_ERR_FORMAT, "idx: %s: corrupt gzip data (%s)", path, text);
}

/* Reads up to n bytes; *got is what the file held (less than n only at its end). */
static lunet_status read_upto(size_t *got, gzFile f, void *buf, size_t n, const char *path) {
    *got = 0;
    while (*got < n) {
        size_t want = n - *got < IDX_MAX_READ ? n - *got : IDX_MAX_READ;
        int r = gzread(f, (char *)buf + *got, (unsigned)want);
        if (r < 0) return gz_failure(f, path);
        if (r == 0) {
            /* A gzip stream that stops early reads as an end of file, with Z_BUF_ERROR. */
            int code;
            gzerror(f, &code);
            if (code != Z_OK) return gz_failure(f, path);
            break;
        }
        *got += (size_t)r;
    }
    return LUNET_OK;
}

/* "60000x28x28" into buf. */
static const char *dims_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < ndim && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%lld", i ? "x" : "", (long long)shape[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
    return buf;
}

/* The header: element type and shape, every field checked. */
static lunet_status read_header(const idx_type **type, int *ndim, int64_t *shape, gzFile f,
                                const char *path) {
    unsigned char magic[4];
    size_t got;
    LUNET_TRY(read_upto(&got, f, magic, sizeof magic, path));
    if (got == 0) return lunet__fail(LUNET_ERR_FORMAT, "idx: %s: the file is empty", path);
    if (got < sizeof magic)
        return lunet__fail(LUNET_ERR_FORMAT, "idx: %s: %zu bytes is too short for an IDX header", path, got);
    if (magic[0] != 0 || magic[1] != 0)
        return lunet__fail(LUNET_ERR_FORMAT,
                           "idx: %s: not an IDX file (it starts %02x %02x %02x %02x; IDX starts 00 00, then "
                           "a type code and a dim count)",
                           path, magic[0], magic[1], magic[2], magic[3]);
    *type = NULL;
    for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
        if (idx_types[i].code == magic[2]) *type = &idx_types[i];
    if (!*type)
        return lunet__fail(
            LUNET_ERR_FORMAT,
            "idx: %s: unknown element type code 0x%02x (IDX defines 0x08 u8, 0x09 i8, 0x0B i16, "
            "0x0C i32, 0x0D f32, 0x0E f64)",
            path, magic[2]);
    if (magic[3] == 0 || magic[3] > LUNET_MAX_DIMS)
        return lunet__fail(LUNET_ERR_FORMAT, "idx: %s: the header gives %d dims; 1 to %d are supported", path,
                           magic[3], LUNET_MAX_DIMS);
    *ndim = magic[3];
    unsigned char sizes[4 * LUNET_MAX_DIMS];
    size_t need = 4 * (size_t)*ndim;
    LUNET_TRY(read_upto(&got, f, sizes, need, path));
    if (got < need)
        return lunet__fail(LUNET_ERR_FORMAT,
                           "idx: %s: the header is cut short (%d dims need %zu bytes of sizes, "
                           "the file holds %zu)",
                           path, *ndim, need, got);
    for (int i = 0; i < *ndim; i++) {
        const unsigned char *b = sizes + 4 * i;
        shape[i] = (int64_t)((uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3]);
    }
    return LUNET_OK;
}

/* The whole payload, want bytes exactly, into a malloc'd buffer (*out, which the caller frees). */
static lunet_status read_payload(unsigned char **out, gzFile f, size_t want, const char *shape_text,
                                 const idx_type *type, const char *path) {
    *out = NULL;
    size_t cap = want < IDX_FIRST_CHUNK ? want : IDX_FIRST_CHUNK, have = 0;
    unsigned char *buf = malloc(cap ? cap : 1);
    if (!buf) return lunet__nomem("idx");
    lunet_status s = LUNET_OK;
    while (have < want) {
        if (have == cap) {
            size_t next = cap > want / 2 ? want : cap * 2;
            unsigned char *grown = realloc(buf, next);
            if (!grown) {
                s = lunet__nomem("idx");
                break;
            }
            buf = grown;
            cap = next;
        }
        size_t got;
        s = read_upto(&got, f, buf + have, cap - have, path);
        if (s != LUNET_OK) break;
        have += got;
        if (have < cap) break; /* the file ended */
    }
    if (s == LUNET_OK && have < want)
        s = lunet__fail(LUNET_ERR_FORMAT, "idx: %s: header says %s %s (%zu bytes) but the file holds %zu",
                        path, shape_text, type->name, want, have);
    if (s == LUNET_OK) {
        /* One more byte: trailing data means the header's shape is wrong, and for gzip this
         * read also reaches the stream's end, where zlib checks the CRC. */
        unsigned char extra;
        size_t got;
        s = read_upto(&got, f, &extra, 1, path);
        if (s == LUNET_OK && got)
            s = lunet__fail(LUNET_ERR_FORMAT,
                            "idx: %s: the file holds more than the %zu bytes its header gives (%s %s)", path,
                            want, shape_text, type->name);
    }
    if (s != LUNET_OK) {
        free(buf);
        return s;
    }
    *out = buf;
    return LUNET_OK;
}

/* Big-endian file elements to host order (and i16 widened to i32). */
static void convert(void *dst, const unsigned char *src, int64_t n, const idx_type *type) {
    switch (type->code) {
    case 0x08:
    case 0x09:
        memcpy(dst, src, (size_t)n);
        break;
    case 0x0B: {
        int32_t *o = dst;
        for (int64_t i = 0; i < n; i++, src += 2)
            o[i] = (int16_t)((uint16_t)(src[0] << 8 | src[1]));
        break;
    }
    case 0x0C:
    case 0x0D: { /* f32 keeps its bits: assemble them as an integer, then copy */
        uint32_t *o = dst;
        for (int64_t i = 0; i < n; i++, src += 4)
            o[i] = (uint32_t)src[0] << 24 | (uint32_t)src[1] << 16 | (uint32_t)src[2] << 8 | src[3];
        break;
    }
    case 0x0E: {
        uint64_t *o = dst;
        for (int64_t i = 0; i < n; i++, src += 8) {
            uint64_t v = 0;
            for (int k = 0; k < 8; k++)
                v = v << 8 | src[k];
            o[i] = v;
        }
        break;
    }
    }
}

static lunet_status read_open(lunet_tensor **out, gzFile f, const char *path) {
    const idx_type *type = NULL;
    int ndim = 0;
    int64_t shape[LUNET_MAX_DIMS];
    LUNET_TRY(read_header(&type, &ndim, shape, f, path));
    char shape_text[12 * LUNET_MAX_DIMS];
    dims_str(shape_text, sizeof shape_text, ndim, shape);
    /* Each dim is below 2^32, so only the product can overflow. */
    int64_t numel = 1, nbytes;
    for (int i = 0; i < ndim; i++)
        if (__builtin_mul_overflow(numel, shape[i], &numel))
            return lunet__fail(LUNET_ERR_FORMAT, "idx: %s: header dims %s overflow a 64-bit element count",
                               path, shape_text);
    if (__builtin_mul_overflow(numel, (int64_t)type->file_size, &nbytes) || (uint64_t)nbytes > SIZE_MAX)
        return lunet__fail(LUNET_ERR_FORMAT, "idx: %s: header dims %s %s overflow a byte count", path,
                           shape_text, type->name);
    unsigned char *payload;
    LUNET_TRY(read_payload(&payload, f, (size_t)nbytes, shape_text, type, path));
    lunet_status s = lunet__tensor_new(out, type->dtype, ndim, shape, "idx");
    if (s == LUNET_OK) convert(lunet__data(*out), payload, numel, type);
    free(payload);
    return s;
}

lunet_status lunet_idx_read(lunet_tensor **out, const char *path) {
    *out = NULL;
    if (!path) return lunet__fail(LUNET_ERR_ARG, "idx: path is NULL");
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        if (errno == 0) return lunet__nomem("idx"); /* zlib could not allocate its state */
        return lunet__fail(LUNET_ERR_IO, "idx: %s: %s", path, strerror(errno));
    }
    gzbuffer(f, 1 << 17); /* fewer, larger reads than zlib's 8 KB default */
    lunet_status s = read_open(out, f, path);
    gzclose_r(f);
    return s;
}
