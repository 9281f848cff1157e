/*
 * safetensors.c: reading and writing safetensors files (Hugging Face's format).
 *
 * The layout, byte by byte:
 *
 *     bytes 0-7        N, the header's length, a little-endian u64
 *     bytes 8..8+N     the header: UTF-8 JSON, an object that starts with '{'; writers pad
 *                      it with spaces so that the data starts at a multiple of 8
 *     the rest         the data section: every tensor's elements, C order, little-endian
 *
 *     {"__metadata__": {"key": "value", ...},                     optional, strings only
 *      "fc.weight": {"dtype": "F32", "shape": [10, 20], "data_offsets": [0, 800]}, ...}
 *
 * data_offsets are [begin, end) in the data section.  As the reference implementation does,
 * the reader demands that the tensors tile the data section exactly: sorted by offset, each
 * begins where the one before ended, the first at 0, the last at the section's end, and each
 * holds exactly shape product times dtype size bytes.  Fields of a tensor entry other than
 * these three are ignored, like the reference does.  "File order" is the order of the
 * header's entries, which for this writer and the reference's is also the data's order.
 *
 * The reader never allocates from a number it has not checked: the header length is capped
 * (100 MB, the reference's limit) and checked against the file's size before it is read;
 * every tensor's size is overflow-checked and checked against the data section, which is
 * bytes that really are in the file, before the tensor is allocated.  Tensor bytes go
 * straight from the file into the tensors' storage (pread), so reading a model needs no
 * second copy of it in memory.
 *
 * Bytes are copied as they are: this file assumes a little-endian host (every platform lunet
 * builds on) and refuses to compile elsewhere.
 */
#define _POSIX_C_SOURCE 200809L /* pread, fsync, O_CLOEXEC, O_NOFOLLOW, O_DIRECTORY */
#include "internal.h"
#include "json.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c copies tensor bytes unchanged, which is right on little-endian hosts only"
#endif

/* The reference implementation's limit on the header. */
#define ST_MAX_HEADER ((uint64_t)100000000)
/* A tensor entry is three levels deep; anything much deeper is an attack, not a model. */
#define ST_MAX_DEPTH 64
/* At most 100 MB of parsed JSON values.  A tensor entry takes at least 10 values (its key,
 * its object, three keys, dtype, shape, data_offsets and two offsets), so this also bounds
 * the tensors a header can ask for at about 400,000, and the memory their headers take. */
#define ST_MAX_VALUES ((size_t)4 << 20)
/* Shape entries and offsets above 2^53 are refused: no file holds that many bytes, and
 * readers that go through doubles (JavaScript, Lua numbers) could not represent them. */
#define ST_MAX_INTEGER ((uint64_t)1 << 53)

/* ---- dtypes ----------------------------------------------------------------------------- */

static const struct {
    const char *name;
    lunet_dtype dtype;
} st_dtypes[] = {{"F32", LUNET_DTYPE_F32}, {"F64", LUNET_DTYPE_F64}, {"I64", LUNET_DTYPE_I64},
                 {"I32", LUNET_DTYPE_I32}, {"I8", LUNET_DTYPE_I8},   {"U8", LUNET_DTYPE_U8}};

/* Dtypes the format defines that lunet has no tensors for: a file using them is valid, just
 * not readable here, and the message says so rather than calling the dtype unknown. */
static const char *const st_unsupported[] = {"BOOL", "F16",     "BF16",    "I16",     "U16",
                                             "U32",  "U64",     "F8_E4M3", "F8_E5M2", "F8_E8M0",
                                             "F4",   "F6_E2M3", "F6_E3M2", "C64"};

static const char *st_dtype_name(lunet_dtype dtype) {
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (st_dtypes[i].dtype == dtype) return st_dtypes[i].name;
    return NULL;
}

/* ---- the result ---------------------------------------------------------------------------- */

struct lunet_safetensors {
    size_t count, metadata_count;
    const char **names;          /* count entries, into strings */
    lunet_tensor **tensors;      /* count entries, owned */
    lunet_string_pair *metadata; /* metadata_count entries, into strings */
    char *strings;               /* every name, key and value, NUL-terminated */
};

size_t lunet_safetensors_count(const lunet_safetensors *file) { return file->count; }
const char *lunet_safetensors_name(const lunet_safetensors *file, size_t i) {
    return i < file->count ? file->names[i] : NULL;
}
const lunet_tensor *lunet_safetensors_tensor(const lunet_safetensors *file, size_t i) {
    return i < file->count ? file->tensors[i] : NULL;
}
size_t lunet_safetensors_metadata_count(const lunet_safetensors *file) { return file->metadata_count; }
const char *lunet_safetensors_metadata_key(const lunet_safetensors *file, size_t i) {
    return i < file->metadata_count ? file->metadata[i].key : NULL;
}
const char *lunet_safetensors_metadata_value(const lunet_safetensors *file, size_t i) {
    return i < file->metadata_count ? file->metadata[i].value : NULL;
}

const char *lunet_safetensors_metadata_get(const lunet_safetensors *file, const char *key) {
    for (size_t i = 0; i < file->metadata_count; i++)
        if (strcmp(file->metadata[i].key, key) == 0) return file->metadata[i].value;
    return NULL;
}

void lunet_safetensors_free(lunet_safetensors *file) {
    if (!file) return;
    for (size_t i = 0; i < file->count; i++)
        lunet_tensor_release(file->tensors ? file->tensors[i] : NULL);
    free(file->names);
    free(file->tensors);
    free(file->metadata);
    free(file->strings);
    free(file);
}

/* ---- reading: the source ------------------------------------------------------------------- */

/* Where the bytes come from: a file descriptor, or memory (the fuzzer's entry point). */
typedef struct st_source {
    const char *path; /* names the source in messages */
    int fd;           /* -1 for memory */
    const unsigned char *bytes;
    uint64_t size;
} st_source;

/* Reads n bytes at offset, which the caller has checked lie within the source's size. */
static lunet_status source_read(const st_source *src, void *dst, uint64_t offset, size_t n) {
    if (src->fd < 0) {
        if (n) memcpy(dst, src->bytes + offset, n);
        return LUNET_OK;
    }
    size_t done = 0;
    while (done < n) {
        ssize_t r = pread(src->fd, (char *)dst + done, n - done, (off_t)(offset + done));
        if (r < 0 && errno == EINTR) continue;
        if (r < 0)
            return lunet__fail(LUNET_ERR_IO, "safetensors: %s: read failed: %s", src->path, strerror(errno));
        if (r == 0)
            return lunet__fail(LUNET_ERR_IO, "safetensors: %s: the file shrank while it was being read",
                               src->path);
        done += (size_t)r;
    }
    return LUNET_OK;
}

/* ---- reading: the header ------------------------------------------------------------------- */

/* One tensor entry of the header, checked. */
typedef struct st_entry {
    const char *name; /* into the JSON document */
    size_t name_len;
    lunet_dtype dtype;
    int ndim;
    int64_t shape[LUNET_MAX_DIMS];
    uint64_t begin, end;
} st_entry;

typedef struct st_reader {
    const st_source *src;
    uint64_t header_len, data_len; /* the data section starts at 8 + header_len */
    lunet__json_doc *doc;
    st_entry *entries;
    size_t n_entries, cap_entries;
    lunet__json_ref metadata; /* the __metadata__ object, or NONE */
} st_reader;

static lunet_status header_error(const st_reader *r, const char *fmt, ...) LUNET_PRINTF(2, 3);

/* A format error: "safetensors: <path>: <what>". */
static lunet_status header_error(const st_reader *r, const char *fmt, ...) {
    char what[400];
    va_list args;
    va_start(args, fmt);
    vsnprintf(what, sizeof what, fmt, args);
    va_end(args);
    return lunet__fail(LUNET_ERR_FORMAT, "safetensors: %s: %s", r->src->path, what);
}

/* "[10, 20]" into buf. */
static const char *shape_str(char *buf, size_t size, int ndim, const int64_t *shape) {
    size_t used = (size_t)snprintf(buf, size, "[");
    for (int i = 0; i < ndim && used < size; i++)
        used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (used < size) snprintf(buf + used, size - used, "]");
    return buf;
}

/* What a JSON value is, for messages: a number's literal (cut short) or its type. */
static const char *value_str(char *buf, size_t size, const lunet__json_doc *doc, lunet__json_ref v) {
    const char *text = lunet__json_number_text(doc, v);
    if (!text) return lunet__json_type_name(lunet__json_type_of(doc, v));
    snprintf(buf, size, "%.*s%s", 32, text, strlen(text) > 32 ? "..." : "");
    return buf;
}

/* Reads v as an integer in [0, 2^53]; what names it in the message ("shape entry 2"). */
static lunet_status entry_uint(uint64_t *out, const st_reader *r, lunet__json_ref v, const char *qname,
                               const char *what) {
    lunet__json_uint_result res = lunet__json_get_uint(out, r->doc, v, ST_MAX_INTEGER);
    if (res == LUNET__JSON_UINT_OK) return LUNET_OK;
    char shown[48];
    return header_error(r, "tensor %s: %s (%s) %s%s", qname, what, value_str(shown, sizeof shown, r->doc, v),
                        lunet__json_uint_result_str(res),
                        res == LUNET__JSON_UINT_TOO_LARGE ? " (above 2^53)" : "");
}

/* The member key of the entry, which must be there. */
static lunet_status entry_field(lunet__json_ref *out, const st_reader *r, lunet__json_ref obj,
                                const char *key, lunet__json_type type, const char *qname) {
    *out = lunet__json_get(r->doc, obj, key);
    if (*out == LUNET__JSON_NONE) return header_error(r, "tensor %s: no \"%s\" field", qname, key);
    lunet__json_type t = lunet__json_type_of(r->doc, *out);
    if (t != type)
        return header_error(r, "tensor %s: \"%s\" is %s, it must be %s", qname, key, lunet__json_type_name(t),
                            lunet__json_type_name(type));
    return LUNET_OK;
}

static lunet_status entry_dtype(st_entry *e, const st_reader *r, lunet__json_ref obj, const char *qname) {
    lunet__json_ref v;
    LUNET_TRY(entry_field(&v, r, obj, "dtype", LUNET__JSON_STRING, qname));
    size_t len;
    const char *name = lunet__json_string(r->doc, v, &len);
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++) {
        if (strlen(st_dtypes[i].name) == len && memcmp(st_dtypes[i].name, name, len) == 0) {
            e->dtype = st_dtypes[i].dtype;
            return LUNET_OK;
        }
    }
    char q[LUNET__JSON_QUOTE_BUF];
    lunet__json_quote(q, sizeof q, name, len);
    for (size_t i = 0; i < sizeof st_unsupported / sizeof st_unsupported[0]; i++)
        if (strlen(st_unsupported[i]) == len && memcmp(st_unsupported[i], name, len) == 0)
            return header_error(
                r, "tensor %s: dtype %s is not supported (lunet reads F32, F64, I64, I32, I8 and U8)", qname,
                st_unsupported[i]);
    return header_error(r, "tensor %s: unknown dtype %s", qname, q);
}

static lunet_status entry_shape(st_entry *e, const st_reader *r, lunet__json_ref obj, const char *qname) {
    lunet__json_ref v;
    LUNET_TRY(entry_field(&v, r, obj, "shape", LUNET__JSON_ARRAY, qname));
    size_t ndim = lunet__json_count(r->doc, v);
    if (ndim > LUNET_MAX_DIMS)
        return header_error(r, "tensor %s: shape has %zu dims, lunet supports at most %d", qname, ndim,
                            LUNET_MAX_DIMS);
    e->ndim = (int)ndim;
    int i = 0;
    for (lunet__json_ref d = lunet__json_first(r->doc, v); d != LUNET__JSON_NONE;
         d = lunet__json_next(r->doc, d)) {
        char what[32];
        snprintf(what, sizeof what, "shape entry %d", i);
        uint64_t size;
        LUNET_TRY(entry_uint(&size, r, d, qname, what));
        e->shape[i++] = (int64_t)size;
    }
    return LUNET_OK;
}

static lunet_status entry_offsets(st_entry *e, const st_reader *r, lunet__json_ref obj, const char *qname) {
    lunet__json_ref v;
    LUNET_TRY(entry_field(&v, r, obj, "data_offsets", LUNET__JSON_ARRAY, qname));
    if (lunet__json_count(r->doc, v) != 2)
        return header_error(r, "tensor %s: data_offsets has %zu entries, it must be [begin, end]", qname,
                            lunet__json_count(r->doc, v));
    lunet__json_ref b = lunet__json_first(r->doc, v);
    LUNET_TRY(entry_uint(&e->begin, r, b, qname, "data_offsets begin"));
    LUNET_TRY(entry_uint(&e->end, r, lunet__json_next(r->doc, b), qname, "data_offsets end"));
    if (e->end < e->begin)
        return header_error(r, "tensor %s: data_offsets [%llu, %llu] end before they begin", qname,
                            (unsigned long long)e->begin, (unsigned long long)e->end);
    if (e->end > r->data_len)
        return header_error(
            r,
            "tensor %s: data_offsets [%llu, %llu] run past the end of the data section, which "
            "holds %llu bytes (is the file truncated?)",
            qname, (unsigned long long)e->begin, (unsigned long long)e->end, (unsigned long long)r->data_len);
    return LUNET_OK;
}

/* The bytes the shape and dtype need must be what the offsets hold. */
static lunet_status entry_size(const st_entry *e, const st_reader *r, const char *qname) {
    char s[16 * LUNET_MAX_DIMS + 8];
    shape_str(s, sizeof s, e->ndim, e->shape);
    const char *dtype = st_dtype_name(e->dtype);
    uint64_t numel = 1, nbytes;
    for (int i = 0; i < e->ndim; i++)
        if (__builtin_mul_overflow(numel, (uint64_t)e->shape[i], &numel))
            return header_error(r, "tensor %s: shape %s overflows a 64-bit element count", qname, s);
    if (__builtin_mul_overflow(numel, (uint64_t)lunet_dtype_size(e->dtype), &nbytes))
        return header_error(r, "tensor %s: %s %s overflows a 64-bit byte count", qname, dtype, s);
    if (nbytes != e->end - e->begin)
        return header_error(r, "tensor %s: data_offsets [%llu, %llu] hold %llu bytes but %s %s needs %llu",
                            qname, (unsigned long long)e->begin, (unsigned long long)e->end,
                            (unsigned long long)(e->end - e->begin), dtype, s, (unsigned long long)nbytes);
    return LUNET_OK;
}

/* A name, key or value that the C API will hand out as a C string: no NUL inside. */
static lunet_status check_c_string(const st_reader *r, const char *s, size_t len, const char *what) {
    if (memchr(s, '\0', len)) {
        char q[LUNET__JSON_QUOTE_BUF];
        return header_error(r, "%s %s contains a NUL character", what,
                            lunet__json_quote(q, sizeof q, s, len));
    }
    return LUNET_OK;
}

static lunet_status parse_entry(st_entry *e, const st_reader *r, lunet__json_ref key) {
    size_t len;
    const char *name = lunet__json_string(r->doc, key, &len);
    LUNET_TRY(check_c_string(r, name, len, "tensor name"));
    char qname[LUNET__JSON_QUOTE_BUF];
    lunet__json_quote(qname, sizeof qname, name, len);
    e->name = name;
    e->name_len = len;
    lunet__json_ref obj = lunet__json_next(r->doc, key);
    lunet__json_type t = lunet__json_type_of(r->doc, obj);
    if (t != LUNET__JSON_OBJECT)
        return header_error(
            r, "tensor %s: the entry is %s, it must be an object with dtype, shape and data_offsets", qname,
            lunet__json_type_name(t));
    LUNET_TRY(entry_dtype(e, r, obj, qname));
    LUNET_TRY(entry_shape(e, r, obj, qname));
    LUNET_TRY(entry_offsets(e, r, obj, qname));
    return entry_size(e, r, qname);
}

/* __metadata__: an object of strings, or null (which the reference also takes for none). */
static lunet_status check_metadata(st_reader *r, lunet__json_ref v) {
    lunet__json_type t = lunet__json_type_of(r->doc, v);
    if (t == LUNET__JSON_NULL) return LUNET_OK;
    if (t != LUNET__JSON_OBJECT)
        return header_error(r, "__metadata__ is %s, it must be an object of strings",
                            lunet__json_type_name(t));
    for (lunet__json_ref k = lunet__json_first(r->doc, v); k != LUNET__JSON_NONE;
         k = lunet__json_next(r->doc, lunet__json_next(r->doc, k))) {
        size_t klen, vlen;
        const char *key = lunet__json_string(r->doc, k, &klen);
        LUNET_TRY(check_c_string(r, key, klen, "__metadata__ key"));
        lunet__json_ref value = lunet__json_next(r->doc, k);
        const char *text = lunet__json_string(r->doc, value, &vlen);
        char q[LUNET__JSON_QUOTE_BUF];
        if (!text)
            return header_error(r, "__metadata__ value of %s is %s, it must be a string",
                                lunet__json_quote(q, sizeof q, key, klen),
                                lunet__json_type_name(lunet__json_type_of(r->doc, value)));
        LUNET_TRY(check_c_string(r, text, vlen, "__metadata__ value"));
    }
    r->metadata = v;
    return LUNET_OK;
}

/* Room for one more entry.  The array grows with the entries that pass their checks, so a header
 * of a million broken members costs nothing before the first one fails. */
static lunet_status reserve_entry(st_reader *r) {
    if (r->n_entries < r->cap_entries) return LUNET_OK;
    size_t cap = r->cap_entries ? 2 * r->cap_entries : 16;
    st_entry *grown = realloc(r->entries, cap * sizeof *grown);
    if (!grown) return lunet__nomem("safetensors");
    r->entries = grown;
    r->cap_entries = cap;
    return LUNET_OK;
}

/* Every member of the root object: the tensor entries and __metadata__. */
static lunet_status parse_root(st_reader *r) {
    for (lunet__json_ref k = lunet__json_first(r->doc, 0); k != LUNET__JSON_NONE;
         k = lunet__json_next(r->doc, lunet__json_next(r->doc, k))) {
        size_t len;
        const char *key = lunet__json_string(r->doc, k, &len);
        if (len == 12 && memcmp(key, "__metadata__", 12) == 0) {
            LUNET_TRY(check_metadata(r, lunet__json_next(r->doc, k)));
            continue;
        }
        LUNET_TRY(reserve_entry(r));
        LUNET_TRY(parse_entry(&r->entries[r->n_entries], r, k));
        r->n_entries++;
    }
    return LUNET_OK;
}

static int compare_by_offsets(const void *a, const void *b) {
    const st_entry *x = *(const st_entry *const *)a, *y = *(const st_entry *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return x < y ? -1 : x > y; /* stable: header order */
}

/* The tensors must tile the data section: no overlap, no hole, nothing after the last. */
static lunet_status check_layout(const st_reader *r) {
    const st_entry **sorted = malloc((r->n_entries ? r->n_entries : 1) * sizeof *sorted);
    if (!sorted) return lunet__nomem("safetensors");
    for (size_t i = 0; i < r->n_entries; i++)
        sorted[i] = &r->entries[i];
    qsort(sorted, r->n_entries, sizeof *sorted, compare_by_offsets);
    lunet_status s = LUNET_OK;
    uint64_t covered = 0;
    const st_entry *previous = NULL;
    char q1[LUNET__JSON_QUOTE_BUF], q2[LUNET__JSON_QUOTE_BUF];
    for (size_t i = 0; i < r->n_entries && s == LUNET_OK; i++) {
        const st_entry *e = sorted[i];
        lunet__json_quote(q1, sizeof q1, e->name, e->name_len);
        if (e->begin < covered)
            s = header_error(r, "tensor %s: data_offsets [%llu, %llu] overlap tensor %s [%llu, %llu]", q1,
                             (unsigned long long)e->begin, (unsigned long long)e->end,
                             lunet__json_quote(q2, sizeof q2, previous->name, previous->name_len),
                             (unsigned long long)previous->begin, (unsigned long long)previous->end);
        else if (e->begin > covered)
            s = header_error(
                r, "bytes [%llu, %llu) of the data section belong to no tensor (a hole before tensor %s)",
                (unsigned long long)covered, (unsigned long long)e->begin, q1);
        covered = e->end;
        previous = e;
    }
    free(sorted);
    if (s == LUNET_OK && covered != r->data_len)
        s = header_error(
            r, "the data section holds %llu bytes but the tensors end at byte %llu (trailing bytes)",
            (unsigned long long)r->data_len, (unsigned long long)covered);
    return s;
}

/* The 8-byte length and the header itself: read, checked, parsed. */
static lunet_status read_header(st_reader *r) {
    const st_source *src = r->src;
    if (src->size < 8)
        return header_error(r, "the file holds %llu bytes, too few for the 8-byte header length",
                            (unsigned long long)src->size);
    unsigned char prefix[8];
    LUNET_TRY(source_read(src, prefix, 0, 8));
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--)
        n = n << 8 | prefix[i];
    if (n < 2)
        return header_error(r, "the header length is %llu; the smallest header, {}, is 2",
                            (unsigned long long)n);
    if (n > ST_MAX_HEADER)
        return header_error(r, "the header length %llu is above the limit of %llu bytes",
                            (unsigned long long)n, (unsigned long long)ST_MAX_HEADER);
    if (n > src->size - 8)
        return header_error(
            r, "the header length %llu runs past the end of the file (%llu bytes after the length)",
            (unsigned long long)n, (unsigned long long)(src->size - 8));
    r->header_len = n;
    r->data_len = src->size - 8 - n;
    char *text = malloc((size_t)n);
    if (!text) return lunet__nomem("safetensors");
    lunet_status s = source_read(src, text, 8, (size_t)n);
    if (s == LUNET_OK && text[0] != '{')
        s = header_error(r, "the header does not start with '{' (its first byte is 0x%02x)",
                         (unsigned char)text[0]);
    if (s == LUNET_OK) {
        char context[512]; /* as long as any message lunet keeps */
        snprintf(context, sizeof context, "safetensors: %s: header", src->path);
        lunet__json_limits limits = {.max_depth = ST_MAX_DEPTH, .max_values = ST_MAX_VALUES};
        s = lunet__json_parse(&r->doc, text, (size_t)n, &limits, context);
    }
    free(text);
    return s;
}

/* ---- reading: the tensors ------------------------------------------------------------------ */

/* Names and metadata strings, copied into one block so that the result outlives the JSON. */
static lunet_status copy_strings(lunet_safetensors *f, const st_reader *r) {
    size_t total = 1;
    for (size_t i = 0; i < r->n_entries; i++)
        total += r->entries[i].name_len + 1;
    size_t n_meta = r->metadata == LUNET__JSON_NONE ? 0 : lunet__json_count(r->doc, r->metadata);
    lunet__json_ref first = n_meta ? lunet__json_first(r->doc, r->metadata) : LUNET__JSON_NONE;
    for (lunet__json_ref k = first; k != LUNET__JSON_NONE;
         k = lunet__json_next(r->doc, lunet__json_next(r->doc, k))) {
        size_t klen, vlen;
        lunet__json_string(r->doc, k, &klen);
        lunet__json_string(r->doc, lunet__json_next(r->doc, k), &vlen);
        total += klen + vlen + 2;
    }
    f->strings = malloc(total);
    f->names = calloc(r->n_entries ? r->n_entries : 1, sizeof *f->names);
    f->tensors = calloc(r->n_entries ? r->n_entries : 1, sizeof *f->tensors);
    f->metadata = calloc(n_meta ? n_meta : 1, sizeof *f->metadata);
    if (!f->strings || !f->names || !f->tensors || !f->metadata) return lunet__nomem("safetensors");
    char *o = f->strings;
    for (size_t i = 0; i < r->n_entries; i++) {
        f->names[i] = o;
        memcpy(o, r->entries[i].name, r->entries[i].name_len + 1);
        o += r->entries[i].name_len + 1;
    }
    for (lunet__json_ref k = first; k != LUNET__JSON_NONE;
         k = lunet__json_next(r->doc, lunet__json_next(r->doc, k))) {
        size_t klen, vlen;
        const char *key = lunet__json_string(r->doc, k, &klen);
        const char *value = lunet__json_string(r->doc, lunet__json_next(r->doc, k), &vlen);
        lunet_string_pair *pair = &f->metadata[f->metadata_count++];
        pair->key = memcpy(o, key, klen + 1);
        o += klen + 1;
        pair->value = memcpy(o, value, vlen + 1);
        o += vlen + 1;
    }
    return LUNET_OK;
}

/* Allocates each tensor (its size is checked by now) and reads its bytes into it. */
static lunet_status read_tensors(lunet_safetensors *f, const st_reader *r) {
    for (size_t i = 0; i < r->n_entries; i++) {
        const st_entry *e = &r->entries[i];
        LUNET_TRY(lunet__tensor_new(&f->tensors[i], e->dtype, e->ndim, e->shape, "safetensors"));
        f->count = i + 1; /* so that lunet_safetensors_free releases it on a later failure */
        LUNET_TRY(source_read(r->src, lunet__data(f->tensors[i]), 8 + r->header_len + e->begin,
                              (size_t)(e->end - e->begin)));
    }
    f->count = r->n_entries;
    return LUNET_OK;
}

static lunet_status read_source(lunet_safetensors **out, const st_source *src) {
    *out = NULL;
    st_reader r = {src, 0, 0, NULL, NULL, 0, 0, LUNET__JSON_NONE};
    lunet_status s = read_header(&r);
    if (s == LUNET_OK) s = parse_root(&r);
    if (s == LUNET_OK) s = check_layout(&r);
    lunet_safetensors *f = NULL;
    if (s == LUNET_OK) {
        f = calloc(1, sizeof *f);
        s = f ? copy_strings(f, &r) : lunet__nomem("safetensors");
    }
    if (s == LUNET_OK) s = read_tensors(f, &r);
    free(r.entries);
    lunet__json_free(r.doc);
    if (s != LUNET_OK) {
        lunet_safetensors_free(f);
        return s;
    }
    *out = f;
    return LUNET_OK;
}

lunet_status lunet_safetensors_read(lunet_safetensors **out, const char *path) {
    *out = NULL;
    if (!path) return lunet__fail(LUNET_ERR_ARG, "safetensors: path is NULL");
    /* O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return lunet__fail(LUNET_ERR_IO, "safetensors: %s: %s", path, strerror(errno));
    struct stat st;
    lunet_status s = LUNET_OK;
    if (fstat(fd, &st) != 0)
        s = lunet__fail(LUNET_ERR_IO, "safetensors: %s: %s", path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        s = lunet__fail(LUNET_ERR_IO, "safetensors: %s: not a regular file", path);
    if (s == LUNET_OK) {
        st_source src = {path, fd, NULL, (uint64_t)st.st_size};
        s = read_source(out, &src);
    }
    close(fd);
    return s;
}

lunet_status lunet__safetensors_read_memory(lunet_safetensors **out, const void *bytes, size_t n,
                                            const char *name) {
    *out = NULL;
    st_source src = {name, -1, bytes, n};
    return read_source(out, &src);
}

/* ---- writing ------------------------------------------------------------------------------- */

typedef struct st_name {
    const char *name;
    size_t index;
} st_name;

static int compare_names(const void *a, const void *b) {
    const st_name *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Fails on the second of two equal strings in names (sorted, so a large model costs
 * O(n log n)); what is "tensor name" or "metadata key". */
static lunet_status check_unique(st_name *names, size_t n, const char *path, const char *what) {
    qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 1; i < n; i++) {
        if (strcmp(names[i].name, names[i - 1].name) == 0) {
            char q[LUNET__JSON_QUOTE_BUF];
            return lunet__fail(LUNET_ERR_ARG, "safetensors: %s: %s %s is given twice (entries %zu and %zu)",
                               path, what,
                               lunet__json_quote(q, sizeof q, names[i].name, strlen(names[i].name)),
                               names[i - 1].index + 1, names[i].index + 1);
        }
    }
    return LUNET_OK;
}

/* A string that goes into the header: valid UTF-8, since the reader demands it. */
static lunet_status check_utf8(const char *s, const char *path, const char *what, size_t index) {
    size_t n = strlen(s), bad = lunet__json_utf8_check(s, n);
    if (bad == n) return LUNET_OK;
    char q[LUNET__JSON_QUOTE_BUF];
    return lunet__fail(LUNET_ERR_ARG, "safetensors: %s: %s %zu (%s) is not valid UTF-8 (byte %zu)", path,
                       what, index + 1, lunet__json_quote(q, sizeof q, s, n), bad);
}

static lunet_status check_tensors(const char *path, const lunet_named_tensor *tensors, size_t n) {
    st_name *names = malloc((n ? n : 1) * sizeof *names);
    if (!names) return lunet__nomem("safetensors");
    lunet_status s = LUNET_OK;
    for (size_t i = 0; i < n && s == LUNET_OK; i++) {
        const char *name = tensors[i].name;
        const lunet_tensor *t = tensors[i].tensor;
        if (!name || !name[0])
            s = lunet__fail(LUNET_ERR_ARG, "safetensors: %s: tensor %zu has %s name", path, i + 1,
                            name ? "an empty" : "a NULL");
        else if (strcmp(name, "__metadata__") == 0)
            s = lunet__fail(LUNET_ERR_ARG, "safetensors: %s: tensor %zu: the name __metadata__ is reserved",
                            path, i + 1);
        else if (!t)
            s = lunet__fail(LUNET_ERR_ARG, "safetensors: %s: tensor %zu (%s) is NULL", path, i + 1, name);
        else if (!st_dtype_name(t->dtype))
            s = lunet__fail(LUNET_ERR_DTYPE,
                            "safetensors: %s: tensor %zu has dtype %d, which the format lacks", path, i + 1,
                            (int)t->dtype);
        else
            s = check_utf8(name, path, "tensor name", i);
        names[i] = (st_name){name, i};
    }
    if (s == LUNET_OK) s = check_unique(names, n, path, "tensor name");
    free(names);
    return s;
}

static lunet_status check_metadata_pairs(const char *path, const lunet_string_pair *metadata, size_t n) {
    st_name *keys = malloc((n ? n : 1) * sizeof *keys);
    if (!keys) return lunet__nomem("safetensors");
    lunet_status s = LUNET_OK;
    for (size_t i = 0; i < n && s == LUNET_OK; i++) {
        if (!metadata[i].key || !metadata[i].value)
            s = lunet__fail(LUNET_ERR_ARG, "safetensors: %s: metadata entry %zu has a NULL %s", path, i + 1,
                            metadata[i].key ? "value" : "key");
        else if ((s = check_utf8(metadata[i].key, path, "metadata key", i)) == LUNET_OK)
            s = check_utf8(metadata[i].value, path, "metadata value", i);
        keys[i] = (st_name){metadata[i].key, i};
    }
    if (s == LUNET_OK) s = check_unique(keys, n, path, "metadata key");
    free(keys);
    return s;
}

/* The header, padded with spaces to a multiple of 8, and the data section's size. */
static lunet_status build_header(lunet__json_writer *w, const char *path, const lunet_named_tensor *tensors,
                                 size_t n, const lunet_string_pair *metadata, size_t n_metadata) {
    lunet__json_write_raw(w, "{", 1);
    if (n_metadata) {
        lunet__json_write_raw(w, "\"__metadata__\":{", 16);
        for (size_t i = 0; i < n_metadata; i++) {
            if (i) lunet__json_write_raw(w, ",", 1);
            lunet__json_write_string(w, metadata[i].key, strlen(metadata[i].key));
            lunet__json_write_raw(w, ":", 1);
            lunet__json_write_string(w, metadata[i].value, strlen(metadata[i].value));
        }
        lunet__json_write_raw(w, "}", 1);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < n; i++) {
        const lunet_tensor *t = tensors[i].tensor;
        uint64_t nbytes = (uint64_t)t->numel * lunet_dtype_size(t->dtype);
        if (i || n_metadata) lunet__json_write_raw(w, ",", 1);
        lunet__json_write_string(w, tensors[i].name, strlen(tensors[i].name));
        lunet__json_write_raw(w, ":{\"dtype\":\"", 11);
        const char *dtype = st_dtype_name(t->dtype);
        lunet__json_write_raw(w, dtype, strlen(dtype));
        lunet__json_write_raw(w, "\",\"shape\":[", 11);
        for (int d = 0; d < t->ndim; d++) {
            if (d) lunet__json_write_raw(w, ",", 1);
            lunet__json_write_uint(w, (uint64_t)t->shape[d]);
        }
        lunet__json_write_raw(w, "],\"data_offsets\":[", 18);
        lunet__json_write_uint(w, offset);
        lunet__json_write_raw(w, ",", 1);
        lunet__json_write_uint(w, offset + nbytes);
        lunet__json_write_raw(w, "]}", 2);
        offset += nbytes; /* cannot overflow: each term is memory this process holds */
    }
    lunet__json_write_raw(w, "}", 1);
    while (!w->failed && w->len % 8)
        lunet__json_write_raw(w, " ", 1);
    if (w->failed) return lunet__nomem("safetensors");
    if (w->len > ST_MAX_HEADER)
        return lunet__fail(LUNET_ERR_ARG,
                           "safetensors: %s: the header would be %zu bytes, above the limit of %llu", path,
                           w->len, (unsigned long long)ST_MAX_HEADER);
    return LUNET_OK;
}

typedef struct safetensors_contents {
    const lunet__json_writer *header;
    const lunet_named_tensor *tensors;
    size_t n;
} safetensors_contents;

/* The 8-byte header length, the header, then each tensor's bytes (lunet__write_fn). */
static lunet_status write_contents(FILE *f, const char *tmp, void *ctx) {
    const safetensors_contents *c = ctx;
    unsigned char prefix[8];
    for (int i = 0; i < 8; i++)
        prefix[i] = (unsigned char)((uint64_t)c->header->len >> (8 * i));
    LUNET_TRY(lunet__fwrite(f, prefix, 8, "safetensors", tmp));
    LUNET_TRY(lunet__fwrite(f, c->header->data, c->header->len, "safetensors", tmp));
    for (size_t i = 0; i < c->n; i++) {
        lunet_tensor *t = NULL; /* the tensor itself when it is contiguous: no copy */
        LUNET_TRY(lunet__contiguous_nograd(&t, c->tensors[i].tensor));
        lunet_status s = lunet__fwrite(f, lunet__data(t), (size_t)t->numel * lunet_dtype_size(t->dtype), "safetensors", tmp);
        lunet_tensor_release(t);
        LUNET_TRY(s);
    }
    return LUNET_OK;
}

lunet_status lunet_safetensors_write(const char *path, const lunet_named_tensor *tensors, size_t n_tensors,
                                     const lunet_string_pair *metadata, size_t n_metadata) {
    if (!path || !path[0])
        return lunet__fail(LUNET_ERR_ARG, "safetensors: the path is %s", path ? "empty" : "NULL");
    if ((n_tensors && !tensors) || (n_metadata && !metadata))
        return lunet__fail(LUNET_ERR_ARG, "safetensors: %s: %s is NULL but its count is not 0", path,
                           n_tensors && !tensors ? "tensors" : "metadata");
    LUNET_TRY(check_tensors(path, tensors, n_tensors));
    LUNET_TRY(check_metadata_pairs(path, metadata, n_metadata));
    lunet__json_writer header = {0};
    lunet_status s = build_header(&header, path, tensors, n_tensors, metadata, n_metadata);
    safetensors_contents contents = {&header, tensors, n_tensors};
    if (s == LUNET_OK) s = lunet__write_atomically(path, "safetensors", write_contents, &contents);
    lunet__json_writer_free(&header);
    return s;
}
