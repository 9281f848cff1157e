/*
 * json.h: a small strict JSON parser and a JSON string writer, for the headers of the files
 * lunet reads and writes (safetensors today, the model graph's description next).
 *
 * The parser takes RFC 8259 JSON and nothing else: no comments, no trailing commas, no
 * NaN, no leading zeros, no unescaped control characters, no invalid UTF-8 (overlong forms,
 * surrogates, code points above U+10FFFF), no lone \u surrogates, no duplicate keys in an
 * object, no bytes after the root value but whitespace.  Every failure is LUNET_ERR_FORMAT
 * with a message "<context> byte <n>: <problem>", n counting bytes of the text from 0.
 *
 * It is built for input nobody vouches for: nesting is limited (the parser recurses once per
 * level), the number of values is limited (each costs 32 bytes), and every other allocation
 * is at most the size of the text, which the caller has already checked.
 *
 * Numbers are converted while they are read, to the nearest double as strtod gives it (short
 * decimals without strtod, see lunet__decimal_compose), so reading one back costs nothing.
 *
 * Packed arrays are for texts that are mostly numbers, such as the tensors of an inference
 * request.  A caller names keys (lunet__json_limits.pack_keys); an array that is the value of
 * a member with one of those keys and holds only numbers and arrays of them, at any nesting,
 * is checked as strictly as any other value but stored as ONE value: an array whose elements
 * are not values of the document (lunet__json_first gives NONE; lunet__json_count still gives
 * its elements).  Its numbers are read afterwards, in text order, with lunet__json_numbers_next,
 * which converts each exactly as the parser converts a number value.  An array under such a
 * key that holds anything else is parsed into values as usual, and every error is reported
 * as it would be without packing.
 *
 * The parse gives a document: an array of values in text order, each container followed by
 * its elements (an object's members as key, value, key, value, ...).  Values are named by
 * their index (lunet__json_ref); the root is 0.  Strings are decoded (escapes resolved) and
 * NUL-terminated, but may hold a NUL of their own from \u0000: callers that hand them on as
 * C strings check the length.
 *
 *     lunet__json_doc *doc;
 *     lunet__json_limits limits = {.max_depth = 64, .max_values = 1 << 20};
 *     LUNET_TRY(lunet__json_parse(&doc, text, len, &limits, "config.json"));
 *     for (lunet__json_ref k = lunet__json_first(doc, 0); k != LUNET__JSON_NONE;
 *          k = lunet__json_next(doc, lunet__json_next(doc, k)))
 *         printf("%s\n", lunet__json_string(doc, k, NULL));   // the value is next(k)
 *     lunet__json_free(doc);
 */
#ifndef LUNET_JSON_H
#define LUNET_JSON_H

#include "internal.h"

#include <string.h>

typedef enum lunet__json_type {
    LUNET__JSON_NULL = 0,
    LUNET__JSON_FALSE,
    LUNET__JSON_TRUE,
    LUNET__JSON_NUMBER,
    LUNET__JSON_STRING,
    LUNET__JSON_ARRAY,
    LUNET__JSON_OBJECT
} lunet__json_type;

/* A value of a document: its index.  LUNET__JSON_NONE stands for "no such value". */
typedef uint32_t lunet__json_ref;
#define LUNET__JSON_NONE UINT32_MAX

typedef struct lunet__json_limits {
    int max_depth;     /* arrays and objects nested deeper fail; the root is depth 1 */
    size_t max_values; /* every value counts one, keys included; a packed array counts one */
    /* Member keys whose arrays of numbers are packed, NULL-terminated (borrowed for the
     * parse); NULL packs none. */
    const char *const *pack_keys;
} lunet__json_limits;

typedef struct lunet__json_doc lunet__json_doc;

/* Parses len bytes of text (which need no terminating NUL and may be freed afterwards) into a
 * new document (*out, freed with lunet__json_free).  context starts every error message.
 * Texts of 4 GiB or more are refused. */
lunet_status lunet__json_parse(lunet__json_doc **out, const char *text, size_t len,
                               const lunet__json_limits *limits, const char *context);
void lunet__json_free(lunet__json_doc *doc);

lunet__json_type lunet__json_type_of(const lunet__json_doc *doc, lunet__json_ref v);
/* "null", "false", "true", "a number", "a string", "an array", "an object": for messages. */
const char *lunet__json_type_name(lunet__json_type type);
/* The byte position of v's first character in the text. */
size_t lunet__json_pos(const lunet__json_doc *doc, lunet__json_ref v);
/* Elements of an array (a packed one too), members (key-value pairs) of an object; 0 for
 * anything else. */
size_t lunet__json_count(const lunet__json_doc *doc, lunet__json_ref v);
/* The first element of an array or the first key of an object, or NONE (always for a packed
 * array, whose elements are not values). */
lunet__json_ref lunet__json_first(const lunet__json_doc *doc, lunet__json_ref v);
/* The value after v in its container, or NONE: in an object, a key's next is its value and a
 * value's next is the following key. */
lunet__json_ref lunet__json_next(const lunet__json_doc *doc, lunet__json_ref v);
/* The value of key in object obj, or NONE (a linear scan: meant for small objects). */
lunet__json_ref lunet__json_get(const lunet__json_doc *doc, lunet__json_ref obj, const char *key);

/* A string's decoded bytes, NUL-terminated (borrowed), and their count in *len (may be NULL);
 * NULL when v is not a string. */
const char *lunet__json_string(const lunet__json_doc *doc, lunet__json_ref v, size_t *len);
/* A number's literal as written in the text (borrowed); NULL when v is not a number. */
const char *lunet__json_number_text(const lunet__json_doc *doc, lunet__json_ref v);

typedef enum lunet__json_uint_result {
    LUNET__JSON_UINT_OK = 0,
    LUNET__JSON_UINT_NOT_NUMBER,
    LUNET__JSON_UINT_NEGATIVE,
    LUNET__JSON_UINT_NOT_INTEGER, /* a fraction or an exponent, even "1.0" or "1e2" */
    LUNET__JSON_UINT_TOO_LARGE
} lunet__json_uint_result;

/* v as an integer in [0, max], exactly as written. */
lunet__json_uint_result lunet__json_get_uint(uint64_t *out, const lunet__json_doc *doc, lunet__json_ref v,
                                             uint64_t max);
/* "is not a number", "is negative", "is not an integer", "is too large". */
const char *lunet__json_uint_result_str(lunet__json_uint_result result);
/* v as the nearest double (read in the C locale whatever the program's locale is); false when
 * v is not a number or its magnitude overflows a double. */
bool lunet__json_get_f64(double *out, const lunet__json_doc *doc, lunet__json_ref v);

/* ---- reading numbers ------------------------------------------------------------------------ */

/* The number reader that the parser and the readers of packed arrays share, so that a number
 * in a packed array reads exactly as the same number read as a value.  Callers outside json.c
 * use lunet__json_numbers_next (below), not these pieces.  They are inline, and forced so: a
 * decoder runs them once per number, and a number's parts then stay in registers (through
 * memory they cost a third of a packed array's reading). */
#define LUNET__JSON_INLINE static inline __attribute__((always_inline))

/* A number's parts as read: (-1)^negative * mantissa * 10^exponent while it has at most 19
 * digits, leading zeros counted (then a double from it is exact or one rounding away; see
 * lunet__decimal_compose); too_long when it has more, and then strtod reads it. */
typedef struct lunet__json_digits {
    uint64_t mantissa;
    int digits, exponent;
    bool too_long, negative, integer;
} lunet__json_digits;

/* What breaks a number's grammar (RFC 8259: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?). */
typedef enum lunet__json_number_error {
    LUNET__JSON_NUMBER_OK = 0,
    LUNET__JSON_NUMBER_LEADING_ZERO, /* "01", "-00" */
    LUNET__JSON_NUMBER_NO_DIGIT,     /* "-", "-x" */
    LUNET__JSON_NUMBER_NO_FRACTION,  /* "1.", "1.e5" */
    LUNET__JSON_NUMBER_NO_EXPONENT   /* "1e", "1e+" */
} lunet__json_number_error;

LUNET__JSON_INLINE bool lunet__json_is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The eight-byte steps below read text as little-endian words (x86-64, arm64); elsewhere they
 * are left out and the byte loops do all the work. */
#define LUNET__JSON_SWAR (__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)

/* Eight bytes of text as one word: the first byte lowest, as little-endian machines load it. */
LUNET__JSON_INLINE uint64_t lunet__json_load8(const unsigned char *s) {
    uint64_t v;
    memcpy(&v, s, 8);
    return v;
}

/* How many of the eight bytes of v (the first lowest) are digits before the first that is
 * not.  A byte below '0' borrows in the subtraction, one above '9' carries into its top bit in
 * the addition; a byte after a non-digit may be flagged wrongly, but only the first counts. */
LUNET__JSON_INLINE unsigned lunet__json_digit_run(uint64_t v) {
    uint64_t not_digit = ((v + 0x4646464646464646u) | (v - 0x3030303030303030u)) & 0x8080808080808080u;
    return not_digit ? (unsigned)__builtin_ctzll(not_digit) >> 3 : 8;
}

/* True when the eight bytes of v are four one-digit numbers, each with its comma ("0,0,0,0,"):
 * commas at the odd bytes, and digits at the even ones (the odd ones made '0' for that test). */
LUNET__JSON_INLINE bool lunet__json_is_four_digits(uint64_t v) {
    return (v & 0xFF00FF00FF00FF00u) == 0x2C002C002C002C00u &&
           lunet__json_digit_run((v & 0x00FF00FF00FF00FFu) | 0x3000300030003000u) == 8;
}

/* The value of the first k digits (1 to 8) of v: they are moved to the top of the word,
 * zeros (digit 0) fill the bottom, then pairs, fours and eights are summed with three
 * multiplies (the SWAR method of Lemire's fast_float). */
LUNET__JSON_INLINE uint64_t lunet__json_digits_value(uint64_t v, unsigned k) {
    v = (v << (8 * (8 - k))) & 0x0F0F0F0F0F0F0F0Fu;
    v = v * 10 + (v >> 8);
    uint64_t low = (v & 0x000000FF000000FFu) * (100 + (1000000ull << 32));
    uint64_t high = ((v >> 16) & 0x000000FF000000FFu) * (1 + (10000ull << 32));
    return (low + high) >> 32;
}

/* lunet__json_scan_digits's last step: the digits read into d, whose exponent drops by the
 * fraction_digits of them that followed a decimal point; returns i. */
LUNET__JSON_INLINE size_t lunet__json_digits_end(lunet__json_digits *d, uint64_t mantissa, int digits,
                                                 size_t fraction_digits, size_t i) {
    d->mantissa = mantissa;
    d->digits = digits;
    d->exponent -= (int)fraction_digits;
    return i;
}

/* Reads the digits from s[i] into d, each lowering d's exponent when fraction is set; returns
 * the position after them.  Digits past the 19th only set too_long.
 *
 * This and lunet__json_skip_digits are the JSON reader's innermost loops.  Runs of digits are
 * taken a word at a time while the mantissa has room: a run's length and value come from a
 * few word operations instead of a test and a branch per digit.  Two words are loaded at once
 * when they can be, because the second load does not wait for the first's length: a run of up
 * to 15 digits ("0.00392156886") is then one short chain of work, not two one after the other.
 * What is left (the text's last bytes, a run past 11 digits) goes digit by digit. */
LUNET__JSON_INLINE size_t lunet__json_scan_digits(const unsigned char *s, size_t len, size_t i,
                                                  lunet__json_digits *d, bool fraction) {
    static const uint64_t scale[9] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000};
    size_t first = i;
    uint64_t mantissa = d->mantissa;
    int digits = d->digits;
    while (LUNET__JSON_SWAR && digits <= 19 - 16 && len - i >= 16) {
        uint64_t v = lunet__json_load8(s + i), w = lunet__json_load8(s + i + 8);
        unsigned k = lunet__json_digit_run(v), kw = lunet__json_digit_run(w);
        if (k < 8) {
            mantissa = k ? mantissa * scale[k] + lunet__json_digits_value(v, k) : mantissa;
        } else {
            mantissa = mantissa * scale[8] + lunet__json_digits_value(v, 8);
            if (kw) mantissa = mantissa * scale[kw] + lunet__json_digits_value(w, kw);
            k += kw;
        }
        digits += (int)k;
        i += k;
        if (k < 16) return lunet__json_digits_end(d, mantissa, digits, fraction ? i - first : 0, i);
    }
    while (LUNET__JSON_SWAR && digits <= 19 - 8 && len - i >= 8) {
        uint64_t v = lunet__json_load8(s + i);
        unsigned k = lunet__json_digit_run(v);
        mantissa = k ? mantissa * scale[k] + lunet__json_digits_value(v, k) : mantissa;
        digits += (int)k;
        i += k;
        if (k < 8) return lunet__json_digits_end(d, mantissa, digits, fraction ? i - first : 0, i);
    }
    for (; digits < 19 && i < len && lunet__json_is_digit(s[i]); i++, digits++)
        mantissa = mantissa * 10 + (uint64_t)(s[i] - '0');
    size_t kept = i;
    if (i < len && lunet__json_is_digit(s[i])) { /* past the 19th: strtod will read the number */
        d->too_long = true;
        while (i < len && lunet__json_is_digit(s[i]))
            i++;
    }
    return lunet__json_digits_end(d, mantissa, digits, fraction ? kept - first : 0, i);
}

/* The position after the digits from s[i]: lunet__json_scan_digits's walk, reading nothing. */
LUNET__JSON_INLINE size_t lunet__json_skip_digits(const unsigned char *s, size_t len, size_t i) {
    while (LUNET__JSON_SWAR && len - i >= 16) {
        unsigned k = lunet__json_digit_run(lunet__json_load8(s + i));
        k += k == 8 ? lunet__json_digit_run(lunet__json_load8(s + i + 8)) : 0;
        i += k;
        if (k < 16) return i;
    }
    while (LUNET__JSON_SWAR && len - i >= 8) {
        unsigned k = lunet__json_digit_run(lunet__json_load8(s + i));
        i += k;
        if (k < 8) return i;
    }
    while (i < len && lunet__json_is_digit(s[i]))
        i++;
    return i;
}

/* Reads the number at s[*pos] (a '-' or a digit; len bytes in all) into *out and moves *pos
 * past it; or returns what breaks its grammar, with *pos on the byte that does (where a
 * message points; a leading zero's message points at the number).  With out NULL it only
 * checks the grammar, by the same steps. */
LUNET__JSON_INLINE lunet__json_number_error lunet__json_scan_number(const unsigned char *s, size_t len,
                                                                    size_t *pos, lunet__json_digits *out) {
    size_t i = *pos;
    lunet__json_digits d = {.negative = s[i] == '-', .integer = true};
    i += d.negative;
    if (i < len && s[i] == '0') {
        /* "0", and the "0" of "0.0039" (most of an image's values), with two compares. */
        i++;
        if (i < len && lunet__json_is_digit(s[i])) return LUNET__JSON_NUMBER_LEADING_ZERO;
    } else {
        size_t first = i;
        i = out ? lunet__json_scan_digits(s, len, i, &d, false) : lunet__json_skip_digits(s, len, i);
        *pos = i;
        if (i == first) return LUNET__JSON_NUMBER_NO_DIGIT;
    }
    if (i < len && s[i] == '.') {
        size_t first = ++i;
        d.integer = false;
        i = out ? lunet__json_scan_digits(s, len, i, &d, true) : lunet__json_skip_digits(s, len, i);
        *pos = i;
        if (i == first) return LUNET__JSON_NUMBER_NO_FRACTION;
    }
    if (i < len && (s[i] | 0x20) == 'e') { /* 'e' or 'E' */
        i++;
        d.integer = false;
        bool minus = i < len && s[i] == '-';
        if (i < len && (s[i] == '+' || s[i] == '-')) i++;
        size_t first = i;
        int exponent = 0;
        for (; i < len && lunet__json_is_digit(s[i]); i++) /* capped far beyond any double's range */
            if (exponent < 100000) exponent = exponent * 10 + (s[i] - '0');
        *pos = i;
        if (i == first) return LUNET__JSON_NUMBER_NO_EXPONENT;
        d.exponent += minus ? -exponent : exponent;
    }
    *pos = i;
    if (out) *out = d;
    return LUNET__JSON_NUMBER_OK;
}

/* The nearest double of a checked literal (followed by a byte that cannot continue it) by
 * strtod in the C locale, for the numbers lunet__decimal_compose leaves.  The locale exists
 * once a parse has packed an array (else the parse failed with LUNET_ERR_NOMEM). */
double lunet__json_strtod(const char *literal);

/* ---- packed arrays -------------------------------------------------------------------------- */

/* A packed array's numbers, in text order and flattened, as a decoder reads them:
 *
 *     lunet__json_numbers it = lunet__json_numbers_of(doc, v);
 *     lunet__json_number n;
 *     while (lunet__json_numbers_next(&it, &n))
 *         out[k++] = n.value;          // or n.magnitude, n.integer, n.negative for integers
 */

/* True when v is a packed array. */
bool lunet__json_is_packed(const lunet__json_doc *doc, lunet__json_ref v);
/* A packed array's numbers, at every level of nesting; 0 for any other value. */
size_t lunet__json_packed_numbers(const lunet__json_doc *doc, lunet__json_ref v);

/* One number of a packed array. */
typedef struct lunet__json_number {
    /* The nearest double, infinite when it overflows one (as lunet__json_get_f64 sees it). */
    double value;
    /* Integers: the absolute value, or UINT64_MAX past 19 digits (so at least 10^19). */
    uint64_t magnitude;
    bool negative;    /* written with a '-' ("-0" too) */
    bool integer;     /* written without a fraction or an exponent ("1.0" and "1e2" are not) */
    const char *text; /* the literal as written, len bytes, not NUL-terminated (in the document) */
    size_t len;
    size_t pos;     /* the literal's byte position in the text */
    size_t element; /* the packed array's element that holds it: for [[1, 2], [3]], 0, 0, 1 */
} lunet__json_number;

/* Where a reading of a packed array stands. */
typedef struct lunet__json_numbers {
    const char *text; /* the array's text, NUL-terminated, in the document */
    size_t len, i;    /* text's length, and the next byte to read */
    size_t pos;       /* text's byte position in the parsed text */
    size_t element;   /* of the packed array, at i */
    int depth;        /* arrays open at i */
} lunet__json_numbers;

/* A reading of packed array v's numbers, from the first (none when v is not a packed array). */
lunet__json_numbers lunet__json_numbers_of(const lunet__json_doc *doc, lunet__json_ref v);

/* The next number into *out, or false after the last.  The text was checked when it was
 * parsed: this only finds the numbers and reads each as the parser reads a number value. */
LUNET__JSON_INLINE bool lunet__json_numbers_next(lunet__json_numbers *it, lunet__json_number *out) {
    const unsigned char *s = (const unsigned char *)it->text;
    size_t i = it->i;
    unsigned char c;
    while (c = s[i], c != '-' && !lunet__json_is_digit(c)) { /* the NUL after the text ends the reading */
        if (c == '\0') {
            it->i = i;
            return false;
        }
        if (c == ',')
            it->element += it->depth == 1;
        else if (c == '[')
            it->depth++;
        else if (c == ']')
            it->depth--;
        i++;
    }
    size_t start = i, element = it->element;
    if (s[i + 1] == ',') { /* c is a digit: a '-' is followed by one */
        /* A one-digit number and its comma ("0,": most of an image): what lunet__json_scan_number
         * and lunet__decimal_compose would make of it, the comma counted as the loop above would. */
        uint64_t digit = (uint64_t)(c - '0');
        *out = (lunet__json_number){.value = (double)digit,
                                    .magnitude = digit,
                                    .integer = true,
                                    .text = it->text + start,
                                    .len = 1,
                                    .pos = it->pos + start,
                                    .element = element};
        it->element += it->depth == 1;
        it->i = i + 2;
        return true;
    }
    lunet__json_digits d = {0}; /* set by a scan that cannot fail here, as gcc cannot tell */
    lunet__json_number_error e = lunet__json_scan_number(s, it->len, &i, &d);
    LUNET_ASSERT(e == LUNET__JSON_NUMBER_OK);
    (void)e;
    if (d.too_long || !lunet__decimal_compose(&out->value, d.negative, d.mantissa, d.exponent))
        out->value = lunet__json_strtod(it->text + start);
    out->magnitude = d.too_long ? UINT64_MAX : d.mantissa;
    out->negative = d.negative;
    out->integer = d.integer;
    out->text = it->text + start;
    out->len = i - start;
    out->pos = it->pos + start;
    out->element = element;
    if (s[i] == ',') { /* the usual next byte, taken here as the loop above would take it */
        it->element += it->depth == 1;
        i++;
    }
    it->i = i;
    return true;
}

/* Four one-digit numbers in a row, each with its comma ("0,0,0,0,": an image's background),
 * read at once: their digits into digits[0..3] and true; false, with nothing read, when the
 * next numbers are not four of those.  A reader tries this before lunet__json_numbers_next. */
LUNET__JSON_INLINE bool lunet__json_numbers_four_digits(lunet__json_numbers *it, unsigned digits[4]) {
    if (!LUNET__JSON_SWAR || it->len - it->i < 8) return false;
    uint64_t v = lunet__json_load8((const unsigned char *)it->text + it->i);
    if (!lunet__json_is_four_digits(v)) return false;
    for (int j = 0; j < 4; j++)
        digits[j] = (unsigned)(v >> (16 * j) & 0x0F);
    it->element += it->depth == 1 ? 4 : 0;
    it->i += 8;
    return true;
}

/* ---- text helpers --------------------------------------------------------------------------- */

/* The offset of the first byte of s[0..n) that is not part of valid UTF-8 (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or n when all of it is valid. */
size_t lunet__json_utf8_check(const char *s, size_t n);

/* Writes s[0..n) into buf as a quoted JSON string for an error message: escaped, so that a
 * hostile name cannot forge lines or terminal escapes, and cut with "..." to fit size (at
 * least 8).  Returns buf. */
const char *lunet__json_quote(char *buf, size_t size, const char *s, size_t n);
#define LUNET__JSON_QUOTE_BUF 80

/* ---- writing -------------------------------------------------------------------------------- */

/* A growing text buffer.  Zero-initialise it; appends after an allocation failure do nothing
 * and leave failed set, so a writer checks once at the end. */
typedef struct lunet__json_writer {
    char *data;
    size_t len, cap;
    bool failed;
} lunet__json_writer;

void lunet__json_write_raw(lunet__json_writer *w, const char *s, size_t n);
/* s[0..n) as a quoted JSON string: '"', '\\' and control characters escaped, other bytes as
 * they are (so s must be valid UTF-8; check it with lunet__json_utf8_check). */
void lunet__json_write_string(lunet__json_writer *w, const char *s, size_t n);
void lunet__json_write_uint(lunet__json_writer *w, uint64_t v);
void lunet__json_writer_free(lunet__json_writer *w);

#endif /* LUNET_JSON_H */
