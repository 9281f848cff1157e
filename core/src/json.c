/*
 * json.c: the strict JSON parser and string writer described in json.h.
 *
 * One recursive-descent pass fills two arrays: the values (32 bytes each, grown by doubling
 * up to the caller's limit) and a pool that holds every decoded string, number literal and
 * packed array's text, NUL-terminated.  The pool is allocated once at the text's size plus
 * one: a string's decoded form is never longer than its quoted text, a number's literal plus
 * its NUL is at most its text plus the delimiter that ends it (or, for the last value, the
 * extra byte), and a packed array's text plus its NUL is at most its text plus the ':' before
 * it (it is always a member's value).
 *
 * A packed array is checked by a loop of its own, without recursion, that knows only numbers
 * and arrays.  Anything else in it (a string, an object, a literal, a grammar error, nesting
 * past the limit) sends the array back to the recursive parser from its '[', so the one
 * parser finds and words every error, and an array that is not all numbers becomes values.
 */
#define _GNU_SOURCE /* strtod_l and newlocale: numbers read the same in every locale */
#include "json.h"

#include <errno.h>
#include <locale.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct json_value {
    uint8_t type;
    bool integer;    /* numbers: written without a fraction or an exponent */
    bool packed;     /* arrays: a packed array (json.h), its elements kept as text */
    uint32_t pos;    /* byte position in the text */
    uint32_t count;  /* containers: elements or members; strings: decoded length; numbers: literal length */
    uint32_t end;    /* the index after this value's subtree */
    uint32_t parent; /* the container, or NONE for the root */
    uint32_t text;   /* strings, numbers and packed arrays: offset of the bytes in the pool */
    union {
        /* Numbers: the nearest double (infinite when the literal overflows one). */
        double number;
        /* Packed arrays: their numbers at every level of nesting, and their text's length. */
        struct {
            uint32_t numbers, length;
        };
    };
} json_value;

struct lunet__json_doc {
    json_value *values;
    uint32_t n_values;
    size_t cap_values;
    char *pool;
    size_t pool_len;
};

typedef struct json_parser {
    const unsigned char *text;
    size_t len, pos;
    lunet__json_doc *doc;
    const lunet__json_limits *limits;
    const char *context;
} json_parser;

/* ---- errors ----------------------------------------------------------------------------- */

static lunet_status parse_error(const json_parser *p, size_t pos, const char *fmt, ...) LUNET_PRINTF(3, 4);

static lunet_status parse_error(const json_parser *p, size_t pos, const char *fmt, ...) {
    char what[256];
    va_list args;
    va_start(args, fmt);
    vsnprintf(what, sizeof what, fmt, args);
    va_end(args);
    return lunet__fail(LUNET_ERR_FORMAT, "%s byte %zu: %s", p->context, pos, what);
}

/* What stands at pos, for "expected X, found Y" messages. */
static const char *found_str(char *buf, size_t size, const json_parser *p, size_t pos) {
    if (pos >= p->len) return "the end of the text";
    unsigned char c = p->text[pos];
    if (c >= 0x21 && c < 0x7F)
        snprintf(buf, size, "'%c'", c);
    else
        snprintf(buf, size, "byte 0x%02x", c);
    return buf;
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

/* The length of the valid UTF-8 sequence at s (n bytes available), or 0 when it is invalid. */
static size_t utf8_sequence(const unsigned char *s, size_t n) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    uint32_t min, cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2, min = 0x80, cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3, min = 0x800, cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4, min = 0x10000, cp = c & 0x07;
    } else {
        return 0; /* a continuation byte, an overlong lead (C0, C1) or a lead above U+10FFFF */
    }
    if (n < len) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

size_t lunet__json_utf8_check(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        size_t k = utf8_sequence(u + i, n - i);
        if (!k) return i;
        i += k;
    }
    return n;
}

static size_t utf8_encode(char *out, uint32_t cp) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* ---- values ----------------------------------------------------------------------------- */

static lunet_status new_value(lunet__json_ref *out, json_parser *p, lunet__json_type type,
                              lunet__json_ref parent) {
    lunet__json_doc *d = p->doc;
    if (d->n_values >= p->limits->max_values)
        return parse_error(p, p->pos, "more than %zu values (the limit for this text)",
                           p->limits->max_values);
    if (d->n_values == d->cap_values) {
        size_t cap = d->cap_values ? d->cap_values * 2 : 64;
        if (cap > p->limits->max_values) cap = p->limits->max_values;
        json_value *grown = realloc(d->values, cap * sizeof *grown);
        if (!grown) return lunet__nomem(p->context);
        d->values = grown;
        d->cap_values = cap;
    }
    json_value *v = &d->values[d->n_values];
    memset(v, 0, sizeof *v);
    v->type = (uint8_t)type;
    v->pos = (uint32_t)p->pos;
    v->parent = parent;
    *out = d->n_values++;
    return LUNET_OK;
}

/* The first compare settles the bytes that are not whitespace, which are most. */
static bool is_blank(unsigned char c) {
    return c <= ' ' && (c == ' ' || c == '\t' || c == '\n' || c == '\r');
}

/* The first position from i in s[0..len) that is not whitespace. */
static size_t skip_blanks(const unsigned char *s, size_t len, size_t i) {
    while (i < len && is_blank(s[i]))
        i++;
    return i;
}

static void skip_space(json_parser *p) { p->pos = skip_blanks(p->text, p->len, p->pos); }

static lunet_status parse_value(json_parser *p, lunet__json_ref parent, int depth);

/* ---- strings ---------------------------------------------------------------------------- */

static int hex_digit(unsigned char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* The four hex digits at pos (after "\u"). */
static lunet_status parse_hex4(uint32_t *out, const json_parser *p, size_t pos) {
    uint32_t v = 0;
    *out = 0; /* defined on every path, which gcc -O3 cannot otherwise prove */
    for (size_t i = 0; i < 4; i++) {
        int h = pos + i < p->len ? hex_digit(p->text[pos + i]) : -1;
        if (h < 0) return parse_error(p, pos - 2, "\\u must be followed by four hex digits");
        v = v << 4 | (uint32_t)h;
    }
    *out = v;
    return LUNET_OK;
}

/* A \u escape at p->pos (on the backslash), a surrogate pair taking two: the code point. */
static lunet_status parse_unicode_escape(uint32_t *cp, json_parser *p) {
    size_t start = p->pos;
    LUNET_TRY(parse_hex4(cp, p, start + 2));
    p->pos = start + 6;
    if (*cp >= 0xDC00 && *cp <= 0xDFFF)
        return parse_error(p, start, "\\u%04X is a low surrogate without a high surrogate before it", *cp);
    if (*cp < 0xD800 || *cp > 0xDBFF) return LUNET_OK;
    /* A high surrogate: a low one must follow, and the pair names one code point. */
    if (p->pos + 1 >= p->len || p->text[p->pos] != '\\' || p->text[p->pos + 1] != 'u')
        return parse_error(p, start, "\\u%04X is a high surrogate without a low surrogate after it", *cp);
    uint32_t low = 0; /* set by parse_hex4; gcc -O3 cannot see it */
    LUNET_TRY(parse_hex4(&low, p, p->pos + 2));
    if (low < 0xDC00 || low > 0xDFFF)
        return parse_error(p, start, "\\u%04X is a high surrogate followed by \\u%04X, not a low surrogate",
                           *cp, low);
    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (low - 0xDC00);
    p->pos += 6;
    return LUNET_OK;
}

/* One escape sequence at p->pos (on the backslash), decoded into the pool at *out. */
static lunet_status parse_escape(json_parser *p, char **out) {
    size_t start = p->pos;
    if (start + 1 >= p->len) return parse_error(p, start, "unterminated string");
    char c = (char)p->text[start + 1], decoded;
    switch (c) {
    case '"':
        decoded = '"';
        break;
    case '\\':
        decoded = '\\';
        break;
    case '/':
        decoded = '/';
        break;
    case 'b':
        decoded = '\b';
        break;
    case 'f':
        decoded = '\f';
        break;
    case 'n':
        decoded = '\n';
        break;
    case 'r':
        decoded = '\r';
        break;
    case 't':
        decoded = '\t';
        break;
    case 'u': {
        uint32_t cp;
        LUNET_TRY(parse_unicode_escape(&cp, p));
        *out += utf8_encode(*out, cp);
        return LUNET_OK;
    }
    default: {
        char found[16];
        return parse_error(p, start, "invalid escape: a backslash followed by %s",
                           found_str(found, sizeof found, p, start + 1));
    }
    }
    *(*out)++ = decoded;
    p->pos = start + 2;
    return LUNET_OK;
}

/* A string at p->pos (on the opening quote): decoded into the pool; *offset and *len locate it. */
static lunet_status parse_string_bytes(json_parser *p, uint32_t *offset, uint32_t *len) {
    size_t start = p->pos++;
    char *begin = p->doc->pool + p->doc->pool_len, *o = begin;
    for (;;) {
        if (p->pos >= p->len) return parse_error(p, start, "unterminated string");
        unsigned char c = p->text[p->pos];
        if (c == '"') break;
        if (c == '\\') {
            LUNET_TRY(parse_escape(p, &o));
        } else if (c < 0x20) {
            return parse_error(p, p->pos, "control character 0x%02x in a string (it must be escaped)", c);
        } else {
            size_t k = utf8_sequence(p->text + p->pos, p->len - p->pos);
            if (!k) return parse_error(p, p->pos, "invalid UTF-8 (byte 0x%02x) in a string", c);
            memcpy(o, p->text + p->pos, k);
            o += k;
            p->pos += k;
        }
    }
    p->pos++;
    *o++ = '\0';
    *offset = (uint32_t)p->doc->pool_len;
    *len = (uint32_t)(o - begin - 1);
    p->doc->pool_len += (size_t)(o - begin);
    return LUNET_OK;
}

static lunet_status parse_string(json_parser *p, lunet__json_ref parent) {
    lunet__json_ref v;
    LUNET_TRY(new_value(&v, p, LUNET__JSON_STRING, parent));
    uint32_t offset = 0, len = 0;
    LUNET_TRY(parse_string_bytes(p, &offset, &len));
    json_value *jv = &p->doc->values[v];
    jv->text = offset;
    jv->count = len;
    jv->end = v + 1;
    return LUNET_OK;
}

/* ---- numbers and literals ----------------------------------------------------------------- */

/* strtod follows LC_NUMERIC, which a program may have set to a decimal comma: numbers the
 * fast path leaves are read in a C locale made once. */
static locale_t c_numeric_locale;
static pthread_once_t c_numeric_once = PTHREAD_ONCE_INIT;
static void make_c_numeric_locale(void) { c_numeric_locale = newlocale(LC_NUMERIC_MASK, "C", (locale_t)0); }

/* True when the C locale that number_value may need exists (else the caller is out of memory). */
static bool have_c_numeric_locale(void) {
    pthread_once(&c_numeric_once, make_c_numeric_locale);
    return c_numeric_locale != (locale_t)0;
}

double lunet__json_strtod(const char *literal) {
    return strtod_l(literal, NULL, c_numeric_locale); /* overflow gives +-HUGE_VAL: infinite */
}

/* The nearest double of a checked literal, as strtod rounds it; false when strtod's locale
 * cannot be made (memory). */
static bool number_value(double *out, const lunet__json_digits *d, const char *literal) {
    if (!d->too_long && lunet__decimal_compose(out, d->negative, d->mantissa, d->exponent)) return true;
    if (!have_c_numeric_locale()) return false;
    *out = lunet__json_strtod(literal);
    return true;
}

/* The parse error for a number at start that lunet__json_scan_number stopped at p->pos. */
static lunet_status number_error_at(const json_parser *p, size_t start, lunet__json_number_error e) {
    static const char *const expected[] = {
        [LUNET__JSON_NUMBER_NO_DIGIT] = "expected a digit",
        [LUNET__JSON_NUMBER_NO_FRACTION] = "expected a digit after the decimal point",
        [LUNET__JSON_NUMBER_NO_EXPONENT] = "expected a digit in the exponent",
    };
    if (e == LUNET__JSON_NUMBER_LEADING_ZERO) return parse_error(p, start, "a number with a leading zero");
    char found[24];
    return parse_error(p, p->pos, "%s, found %s", expected[e], found_str(found, sizeof found, p, p->pos));
}

static lunet_status parse_number(json_parser *p, lunet__json_ref parent) {
    lunet__json_ref v;
    LUNET_TRY(new_value(&v, p, LUNET__JSON_NUMBER, parent));
    size_t start = p->pos;
    lunet__json_digits d;
    lunet__json_number_error e = lunet__json_scan_number(p->text, p->len, &p->pos, &d);
    if (e != LUNET__JSON_NUMBER_OK) return number_error_at(p, start, e);
    size_t n = p->pos - start;
    char *o = p->doc->pool + p->doc->pool_len;
    memcpy(o, p->text + start, n);
    o[n] = '\0';
    json_value *jv = &p->doc->values[v];
    if (!number_value(&jv->number, &d, o)) return lunet__nomem(p->context);
    jv->integer = d.integer;
    jv->text = (uint32_t)p->doc->pool_len;
    jv->count = (uint32_t)n;
    jv->end = v + 1;
    p->doc->pool_len += n + 1;
    return LUNET_OK;
}

static lunet_status parse_literal(json_parser *p, lunet__json_ref parent) {
    static const struct {
        const char *word;
        lunet__json_type type;
    } words[] = {{"null", LUNET__JSON_NULL}, {"true", LUNET__JSON_TRUE}, {"false", LUNET__JSON_FALSE}};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i].word);
        if (p->len - p->pos >= n && memcmp(p->text + p->pos, words[i].word, n) == 0) {
            lunet__json_ref v;
            LUNET_TRY(new_value(&v, p, words[i].type, parent));
            p->doc->values[v].end = v + 1;
            p->pos += n;
            return LUNET_OK;
        }
    }
    char found[24];
    return parse_error(p, p->pos, "expected a value, found %s", found_str(found, sizeof found, p, p->pos));
}

/* ---- containers ------------------------------------------------------------------------- */

/* Expects c (after optional whitespace) and consumes it. */
static lunet_status expect(json_parser *p, char c, const char *where) {
    skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == (unsigned char)c) {
        p->pos++;
        return LUNET_OK;
    }
    char found[24];
    return parse_error(p, p->pos, "expected '%c' %s, found %s", c, where,
                       found_str(found, sizeof found, p, p->pos));
}

/* True (and consumes it) when the next non-blank byte is c. */
static bool accept(json_parser *p, char c) {
    skip_space(p);
    if (p->pos < p->len && p->text[p->pos] == (unsigned char)c) {
        p->pos++;
        return true;
    }
    return false;
}

static lunet_status parse_array(json_parser *p, lunet__json_ref v, int depth) {
    p->pos++; /* '[' */
    uint32_t count = 0;
    if (!accept(p, ']')) {
        do {
            LUNET_TRY(parse_value(p, v, depth));
            count++;
        } while (accept(p, ','));
        LUNET_TRY(expect(p, ']', "or ',' in an array"));
    }
    p->doc->values[v].count = count;
    return LUNET_OK;
}

typedef struct key_entry {
    const char *s;
    uint32_t len, pos;
} key_entry;

static int compare_keys(const void *a, const void *b) {
    const key_entry *x = a, *y = b;
    uint32_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    if (c) return c;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Fails on the second of two equal keys in object v.  Sorting keeps this O(n log n), so an
 * object with a million members costs no more than reading it. */
static lunet_status check_duplicate_keys(json_parser *p, lunet__json_ref v) {
    const lunet__json_doc *d = p->doc;
    uint32_t n = d->values[v].count;
    if (n < 2) return LUNET_OK;
    key_entry *keys = malloc(n * sizeof *keys);
    if (!keys) return lunet__nomem(p->context);
    uint32_t i = 0;
    for (lunet__json_ref k = v + 1; i < n; k = d->values[k + 1].end, i++)
        keys[i] = (key_entry){d->pool + d->values[k].text, d->values[k].count, d->values[k].pos};
    qsort(keys, n, sizeof *keys, compare_keys);
    lunet_status s = LUNET_OK;
    for (i = 1; i < n && s == LUNET_OK; i++) {
        if (keys[i].len == keys[i - 1].len && memcmp(keys[i].s, keys[i - 1].s, keys[i].len) == 0) {
            char q[LUNET__JSON_QUOTE_BUF];
            s = parse_error(p, keys[i].pos, "duplicate key %s (first at byte %u)",
                            lunet__json_quote(q, sizeof q, keys[i].s, keys[i].len), keys[i - 1].pos);
        }
    }
    free(keys);
    return s;
}

/* ---- packed arrays ------------------------------------------------------------------------ */

/* True when key k (a string) is one of the caller's pack_keys. */
static bool is_pack_key(const json_parser *p, lunet__json_ref k) {
    const json_value *jk = &p->doc->values[k];
    for (const char *const *key = p->limits->pack_keys; key && *key; key++)
        if (strlen(*key) == jk->count && memcmp(*key, p->doc->pool + jk->text, jk->count) == 0) return true;
    return false;
}

/* Checks the array at p->pos (on its '[', with depth containers around it) as one that holds
 * only numbers and arrays of them, and counts its elements and its numbers at every level.
 * Returns the position after its ']', or 0 when it is anything else.  It reads what the
 * recursive parser would, in the same order and under the same depth limit, with a count of
 * open arrays in place of recursion. */
static size_t scan_packed(const json_parser *p, int depth, uint32_t *elements, uint32_t *numbers) {
    const unsigned char *s = p->text;
    size_t len = p->len, i = p->pos;
    uint32_t n_elements = 0, n_numbers = 0;
    int open = 0; /* arrays opened and not yet closed, the packed one included */
    for (;;) {
        /* At a value. */
        i = skip_blanks(s, len, i);
        if (i >= len) return 0;
        n_elements += open == 1;
        if (len - i >= 2 && s[i + 1] == ',' && lunet__json_is_digit(s[i])) {
            /* A one-digit number and its comma ("0,": most of an image), and while they go on,
             * three more from one load. */
            bool four =
                LUNET__JSON_SWAR && len - i >= 8 && lunet__json_is_four_digits(lunet__json_load8(s + i));
            n_elements += four && open == 1 ? 3 : 0;
            n_numbers += four ? 4 : 1;
            i += four ? 8 : 2;
            continue;
        }
        if (s[i] == '[') {
            if (depth + open >= p->limits->max_depth) return 0;
            open++;
            i = skip_blanks(s, len, i + 1);
            if (i >= len || s[i] != ']') continue;
            i++; /* an empty array is a whole value */
            if (--open == 0) break;
        } else {
            if ((s[i] != '-' && !lunet__json_is_digit(s[i])) ||
                lunet__json_scan_number(s, len, &i, NULL) != LUNET__JSON_NUMBER_OK)
                return 0;
            n_numbers++;
            if (i < len && s[i] == ',') { /* the usual next byte */
                i++;
                continue;
            }
        }
        /* After a value: ']' closes arrays until a ',' opens the way to the next value. */
        for (;;) {
            i = skip_blanks(s, len, i);
            if (i >= len) return 0;
            if (s[i] == ',') {
                i++;
                break;
            }
            if (s[i] != ']') return 0;
            i++;
            if (--open == 0) break;
        }
        if (open == 0) break;
    }
    *elements = n_elements;
    *numbers = n_numbers;
    return i;
}

/* The value of a member whose key is one of pack_keys: a packed array when it is one (then
 * *packed is set), else nothing is read and the caller parses it as usual. */
static lunet_status parse_packed(json_parser *p, lunet__json_ref parent, int depth, bool *packed) {
    *packed = false;
    skip_space(p);
    if (p->pos >= p->len || p->text[p->pos] != '[') return LUNET_OK;
    uint32_t elements, numbers;
    size_t end = scan_packed(p, depth, &elements, &numbers);
    if (!end) return LUNET_OK;
    /* A number of the array may need lunet__json_strtod when it is read: its locale must exist then. */
    if (!have_c_numeric_locale()) return lunet__nomem(p->context);
    lunet__json_ref v;
    LUNET_TRY(new_value(&v, p, LUNET__JSON_ARRAY, parent));
    size_t n = end - p->pos;
    char *o = p->doc->pool + p->doc->pool_len;
    memcpy(o, p->text + p->pos, n);
    o[n] = '\0';
    json_value *jv = &p->doc->values[v];
    jv->packed = true;
    jv->count = elements;
    jv->numbers = numbers;
    jv->length = (uint32_t)n;
    jv->text = (uint32_t)p->doc->pool_len;
    jv->end = v + 1;
    p->doc->pool_len += n + 1;
    p->pos = end;
    *packed = true;
    return LUNET_OK;
}

static lunet_status parse_member(json_parser *p, lunet__json_ref obj, int depth) {
    skip_space(p);
    if (p->pos >= p->len || p->text[p->pos] != '"') {
        char found[24];
        return parse_error(p, p->pos, "expected a string key in an object, found %s",
                           found_str(found, sizeof found, p, p->pos));
    }
    LUNET_TRY(parse_string(p, obj));
    lunet__json_ref key = p->doc->n_values - 1;
    LUNET_TRY(expect(p, ':', "after an object key"));
    if (is_pack_key(p, key)) {
        bool packed;
        LUNET_TRY(parse_packed(p, obj, depth, &packed));
        if (packed) return LUNET_OK;
    }
    return parse_value(p, obj, depth);
}

static lunet_status parse_object(json_parser *p, lunet__json_ref v, int depth) {
    p->pos++; /* '{' */
    uint32_t count = 0;
    if (!accept(p, '}')) {
        do {
            LUNET_TRY(parse_member(p, v, depth));
            count++;
        } while (accept(p, ','));
        LUNET_TRY(expect(p, '}', "or ',' in an object"));
    }
    p->doc->values[v].count = count;
    p->doc->values[v].end = p->doc->n_values; /* check_duplicate_keys walks the members */
    return check_duplicate_keys(p, v);
}

static lunet_status parse_container(json_parser *p, lunet__json_ref parent, int depth, bool object) {
    if (depth >= p->limits->max_depth)
        return parse_error(p, p->pos, "arrays and objects nested more than %d deep", p->limits->max_depth);
    lunet__json_ref v;
    LUNET_TRY(new_value(&v, p, object ? LUNET__JSON_OBJECT : LUNET__JSON_ARRAY, parent));
    LUNET_TRY(object ? parse_object(p, v, depth + 1) : parse_array(p, v, depth + 1));
    p->doc->values[v].end = p->doc->n_values;
    return LUNET_OK;
}

/* depth counts the containers around this value. */
static lunet_status parse_value(json_parser *p, lunet__json_ref parent, int depth) {
    skip_space(p);
    if (p->pos >= p->len) return parse_error(p, p->pos, "expected a value, found the end of the text");
    unsigned char c = p->text[p->pos];
    if (c == '{' || c == '[') return parse_container(p, parent, depth, c == '{');
    if (c == '"') return parse_string(p, parent);
    if (c == '-' || lunet__json_is_digit(c)) return parse_number(p, parent);
    return parse_literal(p, parent);
}

lunet_status lunet__json_parse(lunet__json_doc **out, const char *text, size_t len,
                               const lunet__json_limits *limits, const char *context) {
    *out = NULL;
    if (len >= UINT32_MAX)
        return lunet__fail(LUNET_ERR_FORMAT, "%s: %zu bytes of JSON is more than this parser reads", context,
                           len);
    lunet__json_doc *doc = calloc(1, sizeof *doc);
    char *pool = malloc(len + 1);
    if (!doc || !pool) {
        free(doc);
        free(pool);
        return lunet__nomem(context);
    }
    doc->pool = pool;
    json_parser p = {(const unsigned char *)text, len, 0, doc, limits, context};
    lunet_status s = parse_value(&p, LUNET__JSON_NONE, 0);
    if (s == LUNET_OK) {
        skip_space(&p);
        if (p.pos < p.len) {
            char found[24];
            s = parse_error(&p, p.pos, "%s after the end of the JSON value",
                            found_str(found, sizeof found, &p, p.pos));
        }
    }
    if (s != LUNET_OK) {
        lunet__json_free(doc);
        return s;
    }
    *out = doc;
    return LUNET_OK;
}

void lunet__json_free(lunet__json_doc *doc) {
    if (!doc) return;
    free(doc->values);
    free(doc->pool);
    free(doc);
}

/* ---- reading a document ----------------------------------------------------------------- */

lunet__json_type lunet__json_type_of(const lunet__json_doc *doc, lunet__json_ref v) {
    return (lunet__json_type)doc->values[v].type;
}

const char *lunet__json_type_name(lunet__json_type type) {
    switch (type) {
    case LUNET__JSON_NULL:
        return "null";
    case LUNET__JSON_FALSE:
        return "false";
    case LUNET__JSON_TRUE:
        return "true";
    case LUNET__JSON_NUMBER:
        return "a number";
    case LUNET__JSON_STRING:
        return "a string";
    case LUNET__JSON_ARRAY:
        return "an array";
    case LUNET__JSON_OBJECT:
        return "an object";
    }
    return "?";
}

size_t lunet__json_pos(const lunet__json_doc *doc, lunet__json_ref v) { return doc->values[v].pos; }

static bool is_container(const json_value *v) {
    return v->type == LUNET__JSON_ARRAY || v->type == LUNET__JSON_OBJECT;
}

size_t lunet__json_count(const lunet__json_doc *doc, lunet__json_ref v) {
    return is_container(&doc->values[v]) ? doc->values[v].count : 0;
}

lunet__json_ref lunet__json_first(const lunet__json_doc *doc, lunet__json_ref v) {
    const json_value *jv = &doc->values[v];
    return is_container(jv) && jv->count && !jv->packed ? v + 1 : LUNET__JSON_NONE;
}

lunet__json_ref lunet__json_next(const lunet__json_doc *doc, lunet__json_ref v) {
    const json_value *jv = &doc->values[v];
    if (jv->parent == LUNET__JSON_NONE) return LUNET__JSON_NONE;
    return jv->end < doc->values[jv->parent].end ? jv->end : LUNET__JSON_NONE;
}

lunet__json_ref lunet__json_get(const lunet__json_doc *doc, lunet__json_ref obj, const char *key) {
    if (doc->values[obj].type != LUNET__JSON_OBJECT) return LUNET__JSON_NONE;
    size_t n = strlen(key);
    for (lunet__json_ref k = lunet__json_first(doc, obj); k != LUNET__JSON_NONE;
         k = lunet__json_next(doc, k + 1)) {
        const json_value *jk = &doc->values[k];
        if (jk->count == n && memcmp(doc->pool + jk->text, key, n) == 0) return k + 1;
    }
    return LUNET__JSON_NONE;
}

const char *lunet__json_string(const lunet__json_doc *doc, lunet__json_ref v, size_t *len) {
    const json_value *jv = &doc->values[v];
    if (jv->type != LUNET__JSON_STRING) return NULL;
    if (len) *len = jv->count;
    return doc->pool + jv->text;
}

const char *lunet__json_number_text(const lunet__json_doc *doc, lunet__json_ref v) {
    const json_value *jv = &doc->values[v];
    return jv->type == LUNET__JSON_NUMBER ? doc->pool + jv->text : NULL;
}

lunet__json_uint_result lunet__json_get_uint(uint64_t *out, const lunet__json_doc *doc, lunet__json_ref v,
                                             uint64_t max) {
    const json_value *jv = &doc->values[v];
    if (jv->type != LUNET__JSON_NUMBER) return LUNET__JSON_UINT_NOT_NUMBER;
    const char *s = doc->pool + jv->text;
    if (s[0] == '-') return LUNET__JSON_UINT_NEGATIVE;
    if (!jv->integer) return LUNET__JSON_UINT_NOT_INTEGER;
    uint64_t value = 0;
    for (; *s; s++) {
        if (__builtin_mul_overflow(value, 10, &value) ||
            __builtin_add_overflow(value, (uint64_t)(*s - '0'), &value))
            return LUNET__JSON_UINT_TOO_LARGE;
    }
    if (value > max) return LUNET__JSON_UINT_TOO_LARGE;
    *out = value;
    return LUNET__JSON_UINT_OK;
}

const char *lunet__json_uint_result_str(lunet__json_uint_result result) {
    switch (result) {
    case LUNET__JSON_UINT_OK:
        return "is fine";
    case LUNET__JSON_UINT_NOT_NUMBER:
        return "is not a number";
    case LUNET__JSON_UINT_NEGATIVE:
        return "is negative";
    case LUNET__JSON_UINT_NOT_INTEGER:
        return "is not an integer";
    case LUNET__JSON_UINT_TOO_LARGE:
        return "is too large";
    }
    return "?";
}

bool lunet__json_get_f64(double *out, const lunet__json_doc *doc, lunet__json_ref v) {
    const json_value *jv = &doc->values[v];
    if (jv->type != LUNET__JSON_NUMBER || isinf(jv->number)) return false; /* underflow to 0 is fine */
    *out = jv->number;
    return true;
}

/* ---- packed arrays --------------------------------------------------------------------- */

bool lunet__json_is_packed(const lunet__json_doc *doc, lunet__json_ref v) { return doc->values[v].packed; }

size_t lunet__json_packed_numbers(const lunet__json_doc *doc, lunet__json_ref v) {
    return doc->values[v].packed ? doc->values[v].numbers : 0;
}

lunet__json_numbers lunet__json_numbers_of(const lunet__json_doc *doc, lunet__json_ref v) {
    const json_value *jv = &doc->values[v];
    if (!jv->packed) return (lunet__json_numbers){.text = ""};
    return (lunet__json_numbers){.text = doc->pool + jv->text, .len = jv->length, .pos = jv->pos};
}

/* ---- text helpers ----------------------------------------------------------------------- */

/* The escape for byte c inside a JSON string, written to e (at least 7 bytes); 0 when c stands
 * for itself. */
static size_t escape_byte(char *e, unsigned char c) {
    static const char short_forms[] = {
        ['"'] = '"', ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f', ['\n'] = 'n', ['\r'] = 'r', ['\t'] = 't'};
    if (c < sizeof short_forms && short_forms[c]) {
        e[0] = '\\';
        e[1] = short_forms[c];
        return 2;
    }
    if (c < 0x20 || c == 0x7F) {
        snprintf(e, 7, "\\u%04x", c);
        return 6;
    }
    return 0;
}

const char *lunet__json_quote(char *buf, size_t size, const char *s, size_t n) {
    size_t used = 0, room = size - 5; /* the quotes, "..." needs 3 more, and the NUL */
    buf[used++] = '"';
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        char e[8];
        size_t k = escape_byte(e, u[i]), take = 1;
        if (!k) {
            /* Valid multi-byte characters stay whole; any other byte is shown as \xNN. */
            take = utf8_sequence(u + i, n - i);
            if (take) {
                memcpy(e, u + i, take);
                k = take;
            } else {
                snprintf(e, sizeof e, "\\x%02x", u[i]);
                k = 4;
                take = 1;
            }
        }
        if (used + k > room) break;
        memcpy(buf + used, e, k);
        used += k;
        i += take;
    }
    buf[used++] = '"';
    if (i < n) {
        memcpy(buf + used, "...", 3);
        used += 3;
    }
    buf[used] = '\0';
    return buf;
}

/* ---- writing ---------------------------------------------------------------------------- */

static bool writer_reserve(lunet__json_writer *w, size_t n) {
    if (w->failed) return false;
    if (w->cap - w->len >= n) return true;
    size_t cap = w->cap ? w->cap : 256;
    while (cap - w->len < n) {
        if (cap > SIZE_MAX / 2) {
            w->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *grown = realloc(w->data, cap);
    if (!grown) {
        w->failed = true;
        return false;
    }
    w->data = grown;
    w->cap = cap;
    return true;
}

void lunet__json_write_raw(lunet__json_writer *w, const char *s, size_t n) {
    if (n == 0 || !writer_reserve(w, n)) return; /* memcpy must not see a NULL buffer, even for 0 bytes */
    memcpy(w->data + w->len, s, n);
    w->len += n;
}

void lunet__json_write_string(lunet__json_writer *w, const char *s, size_t n) {
    lunet__json_write_raw(w, "\"", 1);
    if (n == 0) {
        lunet__json_write_raw(w, "\"", 1);
        return;
    }
    size_t plain = 0; /* the start of the run of bytes that need no escape */
    for (size_t i = 0; i < n; i++) {
        char e[8];
        size_t k = escape_byte(e, (unsigned char)s[i]);
        if (!k) continue;
        lunet__json_write_raw(w, s + plain, i - plain);
        lunet__json_write_raw(w, e, k);
        plain = i + 1;
    }
    lunet__json_write_raw(w, s + plain, n - plain);
    lunet__json_write_raw(w, "\"", 1);
}

void lunet__json_write_uint(lunet__json_writer *w, uint64_t v) {
    char digits_buf[24];
    int n = snprintf(digits_buf, sizeof digits_buf, "%llu", (unsigned long long)v);
    lunet__json_write_raw(w, digits_buf, (size_t)n);
}

void lunet__json_writer_free(lunet__json_writer *w) {
    free(w->data);
    w->data = NULL;
    w->len = w->cap = 0;
    w->failed = false;
}
