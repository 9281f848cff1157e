/* test_data.c: the IDX and CSV readers against files written here, good and hostile. */
#define _POSIX_C_SOURCE 200809L /* getpid, mkdir */
#include "check.h"

#include <float.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- files ------------------------------------------------------------------------------ */

static char temp_dir[64];

/* A path in this run's scratch directory (a static buffer: use it before the next call). */
static const char *temp_path(const char *name) {
    static char path[128];
    snprintf(path, sizeof path, "%s/%s", temp_dir, name);
    return path;
}

/* Writes n bytes to path, gzip-compressed when gzip is true; returns the path. */
static const char *write_file(const char *name, const void *bytes, size_t n, bool gzip) {
    const char *path = temp_path(name);
    if (gzip) {
        gzFile f = gzopen(path, "wb");
        CHECK(f != NULL);
        if (!f) return path;
        CHECK(n == 0 || gzwrite(f, bytes, (unsigned)n) == (int)n);
        CHECK(gzclose(f) == Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL);
        if (!f) return path;
        CHECK(fwrite(bytes, 1, n, f) == n);
        CHECK(fclose(f) == 0);
    }
    return path;
}

static const char *write_text(const char *name, const char *text) {
    return write_file(name, text, strlen(text), false);
}

/* The bytes of a whole file (malloc'd) and their count. */
static unsigned char *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *bytes = malloc(*n ? *n : 1);
    if (bytes && fread(bytes, 1, *n, f) != *n) *n = 0;
    fclose(f);
    return bytes;
}

/* ---- IDX encoding ----------------------------------------------------------------------- */

typedef struct idx_buffer {
    unsigned char bytes[4096];
    size_t n;
} idx_buffer;

static void put_be(idx_buffer *b, uint64_t v, int size) {
    for (int k = size - 1; k >= 0; k--)
        b->bytes[b->n++] = (unsigned char)(v >> (8 * k));
}

static void put_header(idx_buffer *b, unsigned char code, int ndim, const uint32_t *dims) {
    b->n = 0;
    put_be(b, 0, 2);
    b->bytes[b->n++] = code;
    b->bytes[b->n++] = (unsigned char)ndim;
    for (int i = 0; i < ndim; i++)
        put_be(b, dims[i], 4);
}

/* Reads path and checks dtype, shape and the elements' bits against expected. */
static void check_idx(const char *path, lunet_dtype dtype, int ndim, const int64_t *shape,
                      const void *expected) {
    lunet_tensor *t = NULL;
    CHECK_OK(lunet_idx_read(&t, path));
    if (!t) return;
    CHECK(lunet_tensor_dtype(t) == dtype);
    CHECK(lunet__same_shape(lunet_tensor_ndim(t), lunet_tensor_shape(t), ndim, shape));
    CHECK(lunet_tensor_is_contiguous(t));
    size_t nbytes = (size_t)lunet__numel(ndim, shape) * lunet_dtype_size(dtype);
    CHECK(memcmp(lunet_tensor_data(t), expected, nbytes) == 0);
    lunet_tensor_release(t);
}

/* ---- IDX: every element type, plain and gzip ----------------------------------------------- */

static void test_idx_every_type(void) {
    for (int gzip = 0; gzip <= 1; gzip++) {
        idx_buffer b;
        char name[32];

        const uint8_t u8[6] = {0, 1, 127, 128, 254, 255};
        uint32_t d23[2] = {2, 3};
        int64_t s23[2] = {2, 3};
        put_header(&b, 0x08, 2, d23);
        for (int i = 0; i < 6; i++)
            put_be(&b, u8[i], 1);
        snprintf(name, sizeof name, "u8.idx%s", gzip ? ".gz" : "");
        check_idx(write_file(name, b.bytes, b.n, gzip), LUNET_DTYPE_U8, 2, s23, u8);

        const int8_t i8[4] = {-128, -1, 0, 127};
        uint32_t d4[1] = {4};
        int64_t s4[1] = {4};
        put_header(&b, 0x09, 1, d4);
        for (int i = 0; i < 4; i++)
            put_be(&b, (uint8_t)i8[i], 1);
        snprintf(name, sizeof name, "i8.idx%s", gzip ? ".gz" : "");
        check_idx(write_file(name, b.bytes, b.n, gzip), LUNET_DTYPE_I8, 1, s4, i8);

        /* i16 widens to i32 with its sign. */
        const int16_t i16[4] = {-32768, -2, 258, 32767};
        const int32_t i16_wide[4] = {-32768, -2, 258, 32767};
        put_header(&b, 0x0B, 1, d4);
        for (int i = 0; i < 4; i++)
            put_be(&b, (uint16_t)i16[i], 2);
        snprintf(name, sizeof name, "i16.idx%s", gzip ? ".gz" : "");
        check_idx(write_file(name, b.bytes, b.n, gzip), LUNET_DTYPE_I32, 1, s4, i16_wide);

        const int32_t i32[6] = {INT32_MIN, -1, 0, 1, 0x01020304, INT32_MAX};
        uint32_t d321[3] = {3, 2, 1};
        int64_t s321[3] = {3, 2, 1};
        put_header(&b, 0x0C, 3, d321);
        for (int i = 0; i < 6; i++)
            put_be(&b, (uint32_t)i32[i], 4);
        snprintf(name, sizeof name, "i32.idx%s", gzip ? ".gz" : "");
        check_idx(write_file(name, b.bytes, b.n, gzip), LUNET_DTYPE_I32, 3, s321, i32);

        /* Floats must come back bit for bit: signed zero, a subnormal, the extremes, NaN. */
        const float f32[6] = {1.5f, -0.0f, FLT_MAX, 1e-45f, 0.1f, NAN};
        put_header(&b, 0x0D, 2, d23);
        for (int i = 0; i < 6; i++) {
            uint32_t bits;
            memcpy(&bits, &f32[i], 4);
            put_be(&b, bits, 4);
        }
        snprintf(name, sizeof name, "f32.idx%s", gzip ? ".gz" : "");
        check_idx(write_file(name, b.bytes, b.n, gzip), LUNET_DTYPE_F32, 2, s23, f32);

        const double f64[4] = {0.1, -2.5e300, 5e-324, 3.141592653589793};
        put_header(&b, 0x0E, 1, d4);
        for (int i = 0; i < 4; i++) {
            uint64_t bits;
            memcpy(&bits, &f64[i], 8);
            put_be(&b, bits, 8);
        }
        snprintf(name, sizeof name, "f64.idx%s", gzip ? ".gz" : "");
        check_idx(write_file(name, b.bytes, b.n, gzip), LUNET_DTYPE_F64, 1, s4, f64);

        /* A zero-sized dim is a valid, empty file body. */
        uint32_t d05[2] = {0, 5};
        int64_t s05[2] = {0, 5};
        put_header(&b, 0x0D, 2, d05);
        snprintf(name, sizeof name, "empty_body.idx%s", gzip ? ".gz" : "");
        check_idx(write_file(name, b.bytes, b.n, gzip), LUNET_DTYPE_F32, 2, s05, f32);
    }
}

/* A payload larger than the reader's first chunk, so its buffer has to grow. */
static void test_idx_large(void) {
    const uint32_t rows = 3000, cols = 1111; /* 3.3 MB */
    size_t n = 16 + (size_t)rows * cols;
    unsigned char *bytes = malloc(n);
    idx_buffer b;
    uint32_t dims[3] = {rows, cols, 1};
    put_header(&b, 0x08, 3, dims);
    memcpy(bytes, b.bytes, b.n);
    uint64_t x = 12345;
    for (size_t i = b.n; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        bytes[i] = (unsigned char)(x >> 56);
    }
    int64_t shape[3] = {rows, cols, 1};
    check_idx(write_file("large.idx", bytes, n, false), LUNET_DTYPE_U8, 3, shape, bytes + b.n);
    check_idx(write_file("large.idx.gz", bytes, n, true), LUNET_DTYPE_U8, 3, shape, bytes + b.n);
    free(bytes);
}

/* ---- IDX: hostile files ------------------------------------------------------------------- */

/* path must fail with status, and the message must name the path and contain text. */
static void check_idx_fails(const char *path, lunet_status status, const char *text) {
    char saved[128];
    snprintf(saved, sizeof saved, "%s", path);
    lunet_tensor *t = (lunet_tensor *)&t; /* must be reset to NULL */
    CHECK_FAILS(lunet_idx_read(&t, saved), status, text);
    CHECK(t == NULL);
    CHECK(strstr(lunet_last_error(), saved) != NULL);
    CHECK(strncmp(lunet_last_error(), "idx: ", 5) == 0);
}

static void test_idx_hostile(void) {
    idx_buffer b;
    check_idx_fails(temp_path("no-such-file.gz"), LUNET_ERR_IO, "No such file or directory");
    check_idx_fails(temp_dir, LUNET_ERR_IO, "Is a directory");
    check_idx_fails(write_file("empty.idx", "", 0, false), LUNET_ERR_FORMAT, "the file is empty");
    check_idx_fails(write_file("empty.idx.gz", "", 0, true), LUNET_ERR_FORMAT, "the file is empty");
    check_idx_fails(write_file("short.idx", "\0\0", 2, false), LUNET_ERR_FORMAT, "2 bytes is too short");
    check_idx_fails(write_text("text.idx", "hello, world\n"), LUNET_ERR_FORMAT,
                    "not an IDX file (it starts 68 65 6c 6c");

    uint32_t d2[2] = {2, 2};
    put_header(&b, 0x0A, 2, d2);
    put_be(&b, 0, 4);
    check_idx_fails(write_file("type.idx", b.bytes, b.n, false), LUNET_ERR_FORMAT,
                    "unknown element type code 0x0a");
    put_header(&b, 0x08, 0, d2);
    check_idx_fails(write_file("dims0.idx", b.bytes, b.n, false), LUNET_ERR_FORMAT, "gives 0 dims; 1 to 8");
    uint32_t d9[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    put_header(&b, 0x08, 9, d9);
    put_be(&b, 7, 1);
    check_idx_fails(write_file("dims9.idx", b.bytes, b.n, false), LUNET_ERR_FORMAT, "gives 9 dims");

    /* Three dims announced, the sizes stop after one and a half. */
    uint32_t d3[3] = {60000, 28, 28};
    put_header(&b, 0x08, 3, d3);
    check_idx_fails(write_file("cut_header.idx", b.bytes, 10, false), LUNET_ERR_FORMAT,
                    "cut short (3 dims need 12 bytes of sizes, the file holds 6)");

    /* The header claims far more than the file holds: an error, not a 47 MB allocation. */
    put_header(&b, 0x08, 3, d3);
    memset(b.bytes + b.n, 7, 1024);
    b.n += 1024;
    check_idx_fails(write_file("lying.idx", b.bytes, b.n, false), LUNET_ERR_FORMAT,
                    "header says 60000x28x28 u8 (47040000 bytes) but the file holds 1024");
    check_idx_fails(write_file("lying.idx.gz", b.bytes, b.n, true), LUNET_ERR_FORMAT,
                    "header says 60000x28x28 u8 (47040000 bytes) but the file holds 1024");

    /* 2^31 x 2^31 bytes fits in 64 bits but not in memory: trying to allocate it would give
     * LUNET_ERR_NOMEM, so FORMAT shows that the reader believed the file, not the header. */
    uint32_t huge[2] = {0x80000000u, 0x80000000u};
    put_header(&b, 0x08, 2, huge);
    put_be(&b, 1, 4);
    check_idx_fails(write_file("huge.idx", b.bytes, b.n, false), LUNET_ERR_FORMAT,
                    "header says 2147483648x2147483648 u8 (4611686018427387904 bytes) but the file holds 4");

    uint32_t overflow[3] = {0xFFFFFFFFu, 0xFFFFFFFFu, 2};
    put_header(&b, 0x08, 3, overflow);
    check_idx_fails(write_file("overflow.idx", b.bytes, b.n, false), LUNET_ERR_FORMAT,
                    "header dims 4294967295x4294967295x2 overflow a 64-bit element count");
    uint32_t byte_overflow[2] = {0xFFFFFFFFu, 0x7FFFFFFFu};
    put_header(&b, 0x0E, 2, byte_overflow);
    check_idx_fails(write_file("byte_overflow.idx", b.bytes, b.n, false), LUNET_ERR_FORMAT,
                    "header dims 4294967295x2147483647 f64 overflow a byte count");

    uint32_t d22[2] = {2, 2};
    put_header(&b, 0x0C, 2, d22);
    for (int i = 0; i < 4; i++)
        put_be(&b, 7, 4);
    size_t good = b.n;
    check_idx_fails(write_file("short_body.idx", b.bytes, good - 3, false), LUNET_ERR_FORMAT,
                    "header says 2x2 i32 (16 bytes) but the file holds 13");
    put_be(&b, 9, 1);
    check_idx_fails(write_file("trailing.idx", b.bytes, good + 1, false), LUNET_ERR_FORMAT,
                    "holds more than the 16 bytes its header gives (2x2 i32)");

    /* A gzip file cut in half, and one whose CRC no longer matches its data. */
    put_header(&b, 0x08, 2, d22);
    memcpy(b.bytes + b.n, "abcd", 4);
    b.n += 4;
    const char *gz = write_file("cut.idx.gz", b.bytes, b.n, true);
    size_t n;
    unsigned char *bytes = slurp(gz, &n);
    CHECK(bytes && n > 20);
    if (bytes) {
        check_idx_fails(write_file("cut.idx.gz", bytes, n - 10, false), LUNET_ERR_FORMAT,
                        "the gzip stream is cut short");
        bytes[n - 8] ^= 0xFF; /* the CRC-32 is the trailer's first 4 bytes */
        check_idx_fails(write_file("crc.idx.gz", bytes, n, false), LUNET_ERR_FORMAT, "corrupt gzip data");
        free(bytes);
    }
}

/* ---- CSV ---------------------------------------------------------------------------------- */

static lunet_csv_options csv_options(char delimiter, int64_t skip_rows, lunet_dtype dtype) {
    lunet_csv_options o = {delimiter, skip_rows, dtype};
    return o;
}

/* Reads text (written to name) and compares with the expected rows x columns values. */
static void check_csv(const char *name, const char *text, const lunet_csv_options *o, int64_t rows,
                      int64_t columns, const double *expected) {
    lunet_tensor *t = NULL;
    CHECK_OK(lunet_csv_read(&t, write_text(name, text), o));
    if (!t) return;
    int64_t shape[2] = {rows, columns};
    CHECK(lunet__same_shape(lunet_tensor_ndim(t), lunet_tensor_shape(t), 2, shape));
    CHECK(lunet_tensor_dtype(t) == (o ? o->dtype : LUNET_DTYPE_F32));
    lunet_tensor *want = tensor_of(LUNET_DTYPE_F64, 2, shape, expected);
    CHECK(max_abs_diff(t, want) == 0);
    lunet_tensor_release(want);
    lunet_tensor_release(t);
}

static void test_csv_layouts(void) {
    const double six[6] = {1, 2.5, -3, 4e2, 0.125, -0.5};
    check_csv("plain.csv", "1,2.5,-3\n4e2,0.125,-.5\n", NULL, 2, 3, six);
    lunet_csv_options f64 = csv_options(0, 0, LUNET_DTYPE_F64);
    check_csv("f64.csv", " 1 , 2.5,-3 \n+4E+2 ,\t0.125,  -5e-1", &f64, 2, 3, six);
    lunet_csv_options semicolon = csv_options(';', 0, LUNET_DTYPE_F32);
    check_csv("semicolon.csv", "1;2.5;-3\n4e2;0.125;-0.5\n", &semicolon, 2, 3, six);
    lunet_csv_options tab = csv_options('\t', 0, LUNET_DTYPE_F32);
    check_csv("tab.tsv", "1\t 2.5 \t-3\n4e2\t0.125\t-0.5\n", &tab, 2, 3, six);
    /* A space delimiter: any run of spaces and tabs separates fields. */
    lunet_csv_options space = csv_options(' ', 0, LUNET_DTYPE_F32);
    check_csv("space.txt", "   1   2.5\t\t-3\n4e2 0.125 -0.5   \n", &space, 2, 3, six);
    /* Header lines skipped (even unparseable ones), empty and blank lines ignored, CRLF. */
    lunet_csv_options skip = csv_options(0, 2, LUNET_DTYPE_F32);
    check_csv("skip.csv", "a,b,c\r\n# units: m\r\n\r\n1,2.5,-3\r\n   \r\n\n4e2,0.125,-0.5", &skip, 2, 3, six);
    const double one[1] = {42};
    check_csv("single.csv", "42", NULL, 1, 1, one);
}

/* Numbers must come out exactly as strtod rounds them, in both dtypes, fast path or not. */
static void test_csv_numbers_round_like_strtod(void) {
    enum { count = 4000, extra = 8 };
    /* Past the fast path: huge and tiny exponents, a subnormal, 24 digits, 2^53 + 1, inf, -0. */
    static const char *tail_text =
        "1e308,-1e-308,1e-320,123456789012345678901234,0.1e23,9007199254740993,inf,-0\n";
    const double tail[extra] = {
        1e308, -1e-308, 1e-320, 123456789012345678901234.0, 0.1e23, 9007199254740993.0, INFINITY, -0.0};
    char *text = malloc(count * 40 + 128);
    double *expected = malloc((count + extra) * sizeof *expected);
    if (!text || !expected) {
        CHECK(!"out of memory");
        free(text);
        free(expected);
        return;
    }
    size_t used = 0;
    uint64_t x = 99;
    for (int i = 0; i < count; i++) {
        char field[40];
        random_decimal(field, sizeof field, &x, i);
        expected[i] = strtod(field, NULL);
        used += (size_t)snprintf(text + used, 40, "%s%s", field, i % 8 == 7 ? "\n" : ",");
    }
    memcpy(text + used, tail_text, strlen(tail_text) + 1);
    memcpy(expected + count, tail, sizeof tail);
    const char *path = write_text("numbers.csv", text);
    free(text);
    for (int dtype = 0; dtype < 2; dtype++) {
        lunet_csv_options o = csv_options(0, 0, dtype ? LUNET_DTYPE_F64 : LUNET_DTYPE_F32);
        lunet_tensor *t = NULL;
        CHECK_OK(lunet_csv_read(&t, path, &o));
        if (!t) continue;
        CHECK(lunet_tensor_shape(t)[0] == (count + extra) / 8 && lunet_tensor_shape(t)[1] == 8);
        int mismatches = 0;
        for (int i = 0; i < count + extra; i++) {
            if (dtype) {
                double got = ((const double *)lunet_tensor_data(t))[i];
                mismatches += memcmp(&got, &expected[i], sizeof got) != 0;
            } else {
                float got = ((const float *)lunet_tensor_data(t))[i], want = (float)expected[i];
                mismatches += memcmp(&got, &want, sizeof got) != 0;
            }
        }
        CHECK(mismatches == 0);
        lunet_tensor_release(t);
    }
    free(expected);
}

/* NaN is a number too (pandas writes it); it does not compare equal, so check it apart. */
static void test_csv_nan(void) {
    lunet_tensor *t = NULL;
    CHECK_OK(lunet_csv_read(&t, write_text("nan.csv", "nan,1\nNaN,-inf\n"), NULL));
    if (!t) return;
    const float *v = lunet_tensor_data(t);
    CHECK(isnan(v[0]) && v[1] == 1 && isnan(v[2]) && isinf(v[3]) && v[3] < 0);
    lunet_tensor_release(t);
}

/* Lines longer than the reader's buffer, and a gzip-compressed file. */
static void test_csv_long_lines_and_gzip(void) {
    enum { columns = 300000, rows = 3 }; /* about 1.5 MB per line */
    size_t cap = (size_t)rows * columns * 6 + 16, used = 0;
    char *text = malloc(cap);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < columns; c++)
            used += (size_t)snprintf(text + used, cap - used, "%d.5%c", (c + r) % 10,
                                     c == columns - 1 ? '\n' : ',');
    for (int gzip = 0; gzip <= 1; gzip++) {
        lunet_tensor *t = NULL;
        CHECK_OK(lunet_csv_read(&t, write_file(gzip ? "long.csv.gz" : "long.csv", text, used, gzip), NULL));
        if (!t) continue;
        CHECK(lunet_tensor_shape(t)[0] == rows && lunet_tensor_shape(t)[1] == columns);
        const float *v = lunet_tensor_data(t);
        int wrong = 0;
        for (int r = 0; r < rows; r++)
            for (int c = 0; c < columns; c++)
                wrong += v[(size_t)r * columns + c] != (float)((c + r) % 10) + 0.5f;
        CHECK(wrong == 0);
        lunet_tensor_release(t);
    }
    free(text);
}

/* text must fail with status and message; a bad file's message also names the file (bad
 * options are the caller's mistake, not the file's). */
static void check_csv_fails(const char *name, const char *text, const lunet_csv_options *o,
                            lunet_status status, const char *message) {
    const char *path = text ? write_text(name, text) : temp_path(name);
    char saved[128];
    snprintf(saved, sizeof saved, "%s", path);
    lunet_tensor *t = (lunet_tensor *)&t;
    CHECK_FAILS(lunet_csv_read(&t, saved, o), status, message);
    CHECK(t == NULL);
    if (status == LUNET_ERR_IO || status == LUNET_ERR_FORMAT)
        CHECK(strstr(lunet_last_error(), saved) != NULL);
}

static void test_csv_bad_files(void) {
    check_csv_fails("missing.csv", NULL, NULL, LUNET_ERR_IO, "No such file or directory");
    check_csv_fails("ragged.csv", "1,2\n\n3,4,5\n", NULL, LUNET_ERR_FORMAT,
                    "line 3 has 3 fields, but line 1 has 2");
    lunet_csv_options skip = csv_options(0, 1, LUNET_DTYPE_F32);
    check_csv_fails("ragged_short.csv", "x,y,z\n1,2,3\r\n4,5\r\n", &skip, LUNET_ERR_FORMAT,
                    "line 3 has 2 fields, but line 2 has 3");
    check_csv_fails("word.csv", "1,2\n3,abc\n", NULL, LUNET_ERR_FORMAT,
                    "line 2, column 2: \"abc\" is not a number");
    check_csv_fails("header.csv", "a,b\n1,2\n", NULL, LUNET_ERR_FORMAT,
                    "line 1, column 1: \"a\" is not a number");
    check_csv_fails("junk.csv", "1,2.5x\n", NULL, LUNET_ERR_FORMAT,
                    "line 1, column 2: \"2.5x\" is not a number");
    check_csv_fails("exponent.csv", "1e,2\n", NULL, LUNET_ERR_FORMAT,
                    "line 1, column 1: \"1e\" is not a number");
    check_csv_fails("inner_space.csv", "1 2,3\n", NULL, LUNET_ERR_FORMAT,
                    "column 1: \"1 2\" is not a number");
    check_csv_fails("quoted.csv", "\"1\",2\n", NULL, LUNET_ERR_FORMAT, "column 1: \"\"1\"\" is not a number");
    check_csv_fails("gap.csv", "1,,2\n", NULL, LUNET_ERR_FORMAT, "line 1, column 2: empty field");
    check_csv_fails("trailing.csv", "1,2,\n", NULL, LUNET_ERR_FORMAT, "line 1, column 3: empty field");
    check_csv_fails("leading.csv", "5,6\n ,2\n", NULL, LUNET_ERR_FORMAT, "line 2, column 1: empty field");
    lunet_csv_options tab = csv_options('\t', 0, LUNET_DTYPE_F32);
    check_csv_fails("tab_gap.tsv", "1\t\t2\n", &tab, LUNET_ERR_FORMAT, "line 1, column 2: empty field");
    check_csv_fails("semicolons.csv", "1;2\n", NULL, LUNET_ERR_FORMAT, "\"1;2\" is not a number");
    check_csv_fails("long_field.csv", "0123456789012345678901234567890123456789012345678901234567890x\n",
                    NULL, LUNET_ERR_FORMAT,
                    "\"0123456789012345678901234567890123456789...\" is not a number");
    check_csv_fails("only_header.csv", "a,b\n\n", &skip, LUNET_ERR_FORMAT,
                    "no rows of numbers (the file has 2 lines, 1 skipped)");
    check_csv_fails("nothing.csv", "", NULL, LUNET_ERR_FORMAT, "no rows of numbers");

    const char *gz = write_file("cut.csv.gz", "1,2\n3,4\n5,6\n", 12, true);
    size_t n;
    unsigned char *bytes = slurp(gz, &n);
    CHECK(bytes && n > 20);
    if (bytes) {
        write_file("cut.csv.gz", bytes, n - 12, false);
        check_csv_fails("cut.csv.gz", NULL, NULL, LUNET_ERR_FORMAT, "the gzip stream is cut short");
        free(bytes);
    }

    lunet_csv_options bad = csv_options('.', 0, LUNET_DTYPE_F32);
    check_csv_fails("any.csv", "1\n", &bad, LUNET_ERR_ARG, "'.' cannot be a delimiter");
    bad = csv_options(0, -1, LUNET_DTYPE_F32);
    check_csv_fails("any.csv", "1\n", &bad, LUNET_ERR_ARG, "skip_rows must be >= 0, got -1");
    lunet_tensor *t = NULL;
    bad = csv_options(0, 0, LUNET_DTYPE_I64);
    CHECK_FAILS(lunet_csv_read(&t, temp_path("any.csv"), &bad), LUNET_ERR_DTYPE,
                "dtype i64 is not supported");
}

/* ---- main --------------------------------------------------------------------------------- */

/* Removes the scratch directory and what the tests wrote there. */
static void remove_temp_dir(void) {
    static const char *names[] = {
        "u8.idx",           "u8.idx.gz",      "i8.idx",         "i8.idx.gz",         "i16.idx",
        "i16.idx.gz",       "i32.idx",        "i32.idx.gz",     "f32.idx",           "f32.idx.gz",
        "f64.idx",          "f64.idx.gz",     "empty_body.idx", "empty_body.idx.gz", "large.idx",
        "large.idx.gz",     "empty.idx",      "empty.idx.gz",   "short.idx",         "text.idx",
        "type.idx",         "dims0.idx",      "dims9.idx",      "cut_header.idx",    "lying.idx",
        "lying.idx.gz",     "huge.idx",       "overflow.idx",   "byte_overflow.idx", "short_body.idx",
        "trailing.idx",     "cut.idx.gz",     "crc.idx.gz",     "plain.csv",         "f64.csv",
        "semicolon.csv",    "tab.tsv",        "space.txt",      "skip.csv",          "single.csv",
        "numbers.csv",      "nan.csv",        "long.csv",       "long.csv.gz",       "ragged.csv",
        "ragged_short.csv", "word.csv",       "header.csv",     "junk.csv",          "exponent.csv",
        "inner_space.csv",  "quoted.csv",     "gap.csv",        "trailing.csv",      "leading.csv",
        "tab_gap.tsv",      "semicolons.csv", "long_field.csv", "only_header.csv",   "nothing.csv",
        "cut.csv.gz",       "any.csv"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        unlink(temp_path(names[i]));
    if (rmdir(temp_dir) != 0)
        fprintf(stderr, "test_data: %s was not empty; a test wrote an unlisted file\n", temp_dir);
}

int main(void) {
    snprintf(temp_dir, sizeof temp_dir, "/tmp/lunet_test_data_%ld", (long)getpid());
    if (mkdir(temp_dir, 0700) != 0) {
        perror(temp_dir);
        return 1;
    }
    RUN(test_idx_every_type);
    RUN(test_idx_large);
    RUN(test_idx_hostile);
    RUN(test_csv_layouts);
    RUN(test_csv_numbers_round_like_strtod);
    RUN(test_csv_nan);
    RUN(test_csv_long_lines_and_gzip);
    RUN(test_csv_bad_files);
    remove_temp_dir();
    return check_report("test_data");
}
