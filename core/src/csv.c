/*
 * csv.c: reading a CSV file of numbers into a (rows, columns) tensor in one pass.
 *
 * The file streams through one buffer (gzread, so a .csv.gz works too) and numbers go
 * straight into a growing array of the output dtype; nothing is allocated per line or per
 * field.  Most fields are short decimals, which lunet__decimal_fast turns into the correctly rounded
 * double with one multiplication or division (Clinger's fast path); anything else (long
 * mantissas, large exponents, inf, nan, hex) goes to strtod_l in the C locale, so a program
 * that set a locale with a decimal comma still reads "0.5" as one half.
 *
 * Rules: fields are separated by the delimiter, blanks (spaces, tabs) around a field are
 * ignored, a trailing '\r' is dropped, lines that are empty or blank are skipped, and every
 * row must have the first row's number of fields.  A space delimiter means "any run of
 * blanks", the way whitespace-separated data files are written.  Line numbers in messages
 * count every line of the file from 1; columns count fields from 1.
 */
#define _GNU_SOURCE /* strtod_l and newlocale */
#include "internal.h"

#include <errno.h>
#include <locale.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define CSV_BUFFER ((size_t)1 << 20)
#define CSV_SHOWN 40 /* characters of a bad field quoted in a message */

typedef struct csv_reader {
    gzFile f;
    const char *path;
    char *buf; /* cap + 1 bytes; buf[len] is always '\0', so strtod stops at the data's end */
    size_t cap, len, pos;
    bool eof;
} csv_reader;

typedef struct csv_values {
    lunet_dtype dtype;
    size_t count, cap;
    void *data; /* float or double */
} csv_values;

typedef struct csv_parser {
    const char *path;
    char delimiter;
    bool blank_runs; /* the delimiter is a space: runs of blanks separate fields */
    locale_t c_locale;
    int64_t line, rows, columns; /* columns is 0 until the first row */
    int64_t first_row_line;
    csv_values values;
} csv_parser;

static inline bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* Spaces and tabs around fields are ignored, except a tab that is the delimiter itself. */
static inline bool is_blank(const csv_parser *ps, char c) {
    return (c == ' ' || c == '\t') && (c != ps->delimiter || ps->blank_runs);
}

/* True when p ends a field: the line's end, a blank or the delimiter. */
static inline bool ends_field(const csv_parser *ps, const char *p, const char *end) {
    return p == end || is_blank(ps, *p) || *p == ps->delimiter;
}

/* ---- lines ------------------------------------------------------------------------------ */

static lunet_status read_failure(csv_reader *r) {
    int code;
    const char *text = gzerror(r->f, &code);
    if (code == Z_ERRNO)
        return lunet__fail(LUNET_ERR_IO, "csv: %s: read failed: %s", r->path, strerror(errno));
    if (code == Z_MEM_ERROR) return lunet__nomem("csv");
    if (code == Z_BUF_ERROR)
        return lunet__fail(LUNET_ERR_FORMAT, "csv: %s: the gzip stream is cut short", r->path);
    return lunet__fail(LUNET_ERR_FORMAT, "csv: %s: corrupt gzip data (%s)", r->path, text);
}

/* The next line as [*start, *end), without its '\n'; *has is false at the end of the file. */
static lunet_status next_line(bool *has, char **start, char **end, csv_reader *r) {
    for (;;) {
        char *nl = memchr(r->buf + r->pos, '\n', r->len - r->pos);
        if (nl || (r->eof && r->pos < r->len)) {
            *start = r->buf + r->pos;
            *end = nl ? nl : r->buf + r->len;
            r->pos = nl ? (size_t)(nl - r->buf) + 1 : r->len;
            *has = true;
            return LUNET_OK;
        }
        if (r->eof) {
            *has = false;
            return LUNET_OK;
        }
        /* Keep the partial line, growing the buffer when one line fills it. */
        size_t rest = r->len - r->pos;
        memmove(r->buf, r->buf + r->pos, rest);
        r->len = rest;
        r->pos = 0;
        if (r->len == r->cap) {
            size_t cap = r->cap * 2;
            char *grown = cap > r->cap ? realloc(r->buf, cap + 1) : NULL;
            if (!grown) return lunet__nomem("csv");
            r->buf = grown;
            r->cap = cap;
        }
        size_t want = r->cap - r->len < ((size_t)1 << 30) ? r->cap - r->len : ((size_t)1 << 30);
        int got = gzread(r->f, r->buf + r->len, (unsigned)want);
        if (got < 0) return read_failure(r);
        if (got == 0) {
            /* A gzip stream that stops early reads as an end of file, with Z_BUF_ERROR. */
            int code;
            gzerror(r->f, &code);
            if (code != Z_OK) return read_failure(r);
            r->eof = true;
        }
        r->len += (size_t)got;
        r->buf[r->len] = '\0';
    }
}

/* ---- numbers ---------------------------------------------------------------------------- */

/* The number at p; NULL when the field is not one number. */
static const char *parse_number(double *out, const csv_parser *ps, const char *p, const char *end) {
    const char *q = lunet__decimal_fast(out, p, end);
    if (q && ends_field(ps, q, end)) return q;
    /* strtod skips leading white space, which would read past an empty field (a tab
     * delimiter) or past the line's end. */
    if (p == end || strchr(" \t\n\v\f\r", *p)) return NULL;
    char *stop;
    *out = strtod_l(p, &stop, ps->c_locale);
    if (stop == p || stop > end || !ends_field(ps, stop, end)) return NULL;
    return stop;
}

/* ---- rows ------------------------------------------------------------------------------- */

static lunet_status push_value(csv_values *v, double x) {
    if (v->count == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4096, size = lunet_dtype_size(v->dtype);
        void *grown = cap > v->cap && cap <= SIZE_MAX / size ? realloc(v->data, cap * size) : NULL;
        if (!grown) return lunet__nomem("csv");
        v->data = grown;
        v->cap = cap;
    }
    if (v->dtype == LUNET_DTYPE_F32)
        ((float *)v->data)[v->count++] = (float)x;
    else
        ((double *)v->data)[v->count++] = x;
    return LUNET_OK;
}

static lunet_status bad_field(const csv_parser *ps, int64_t column, const char *p, const char *end) {
    if (p == end || *p == ps->delimiter)
        return lunet__fail(LUNET_ERR_FORMAT, "csv: %s: line %lld, column %lld: empty field", ps->path,
                           (long long)ps->line, (long long)column);
    const char *q = p;
    while (q < end && *q != ps->delimiter && !(ps->blank_runs && is_blank(ps, *q)))
        q++;
    int shown = q - p > CSV_SHOWN ? CSV_SHOWN : (int)(q - p);
    return lunet__fail(LUNET_ERR_FORMAT, "csv: %s: line %lld, column %lld: \"%.*s%s\" is not a number",
                       ps->path, (long long)ps->line, (long long)column, shown, p,
                       q - p > CSV_SHOWN ? "..." : "");
}

/* Parses one line of the file; blank lines add nothing. */
static lunet_status parse_line(csv_parser *ps, const char *p, const char *end) {
    while (end > p && (end[-1] == '\r' || is_blank(ps, end[-1])))
        end--;
    while (p < end && is_blank(ps, *p))
        p++;
    if (p == end) return LUNET_OK;
    int64_t column = 0;
    for (;;) {
        column++;
        double x;
        const char *field = p, *q = parse_number(&x, ps, p, end);
        if (!q) return bad_field(ps, column, field, end);
        LUNET_TRY(push_value(&ps->values, x));
        /* parse_number stopped at a blank, the delimiter or the end; in blank-run mode the
         * blanks are the delimiter. */
        for (p = q; p < end && is_blank(ps, *p);)
            p++;
        if (p == end) break;
        if (!ps->blank_runs) {
            if (*p != ps->delimiter) return bad_field(ps, column, field, end);
            for (p++; p < end && is_blank(ps, *p);)
                p++;
        }
    }
    if (ps->columns == 0) {
        ps->columns = column;
        ps->first_row_line = ps->line;
    } else if (column != ps->columns) {
        return lunet__fail(LUNET_ERR_FORMAT, "csv: %s: line %lld has %lld fields, but line %lld has %lld",
                           ps->path, (long long)ps->line, (long long)column, (long long)ps->first_row_line,
                           (long long)ps->columns);
    }
    ps->rows++;
    return LUNET_OK;
}

static lunet_status parse_file(csv_parser *ps, csv_reader *r, int64_t skip_rows) {
    bool has;
    char *start = NULL, *end = NULL;
    for (;;) {
        LUNET_TRY(next_line(&has, &start, &end, r));
        if (!has) break;
        ps->line++;
        if (ps->line > skip_rows) LUNET_TRY(parse_line(ps, start, end));
    }
    if (ps->rows == 0)
        return lunet__fail(LUNET_ERR_FORMAT,
                           "csv: %s: no rows of numbers (the file has %lld lines, %lld skipped)", ps->path,
                           (long long)ps->line, (long long)skip_rows);
    return LUNET_OK;
}

/* ---- the reader ------------------------------------------------------------------------- */

static lunet_status check_options(lunet_csv_options *o, const lunet_csv_options *given) {
    lunet_csv_options defaults = {',', 0, LUNET_DTYPE_F32};
    *o = given ? *given : defaults;
    if (o->delimiter == 0) o->delimiter = ',';
    if (strchr("\n\r\"0123456789.+-eE", o->delimiter))
        return lunet__fail(LUNET_ERR_ARG, "csv: '%c' cannot be a delimiter between numbers", o->delimiter);
    if (o->skip_rows < 0)
        return lunet__fail(LUNET_ERR_ARG, "csv: skip_rows must be >= 0, got %lld", (long long)o->skip_rows);
    if (o->dtype != LUNET_DTYPE_F32 && o->dtype != LUNET_DTYPE_F64)
        return lunet__fail(LUNET_ERR_DTYPE, "csv: dtype %s is not supported (f32 or f64)",
                           lunet_dtype_name(o->dtype));
    return LUNET_OK;
}

lunet_status lunet_csv_read(lunet_tensor **out, const char *path, const lunet_csv_options *options) {
    *out = NULL;
    if (!path) return lunet__fail(LUNET_ERR_ARG, "csv: path is NULL");
    lunet_csv_options o;
    LUNET_TRY(check_options(&o, options));
    csv_parser ps = {.path = path,
                     .delimiter = o.delimiter,
                     .blank_runs = o.delimiter == ' ',
                     .values = {.dtype = o.dtype}};
    csv_reader r = {.path = path, .cap = CSV_BUFFER};
    ps.c_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0);
    r.buf = malloc(r.cap + 1);
    if (!ps.c_locale || !r.buf) {
        if (ps.c_locale) freelocale(ps.c_locale);
        free(r.buf);
        return lunet__nomem("csv");
    }
    r.buf[0] = '\0';
    errno = 0;
    r.f = gzopen(path, "rb");
    lunet_status s;
    if (!r.f) {
        s = errno ? lunet__fail(LUNET_ERR_IO, "csv: %s: %s", path, strerror(errno)) : lunet__nomem("csv");
    } else {
        gzbuffer(r.f, 1 << 17);
        s = parse_file(&ps, &r, o.skip_rows);
        gzclose_r(r.f);
    }
    if (s == LUNET_OK) {
        int64_t shape[2] = {ps.rows, ps.columns};
        s = lunet__tensor_new(out, o.dtype, 2, shape, "csv");
        if (s == LUNET_OK)
            memcpy(lunet__data(*out), ps.values.data, ps.values.count * lunet_dtype_size(o.dtype));
    }
    free(ps.values.data);
    free(r.buf);
    freelocale(ps.c_locale);
    return s;
}
