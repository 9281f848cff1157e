/*
 * decimal.c: reading a decimal number without strtod when that is exact (lunet__decimal_fast
 * in internal.h), for the CSV reader and the JSON numbers of requests.
 */
#include "internal.h"

#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

const double lunet__powers_of_ten[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                         1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                         1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A plain decimal ([+-]digits[.digits][e[+-]digits]) whose mantissa and power of ten are
 * exact doubles: one IEEE multiply or divide then rounds correctly.  Returns the end of the
 * number, or NULL when the text needs the general parser. */
const char *lunet__decimal_fast(double *out, const char *p, const char *end) {
    bool negative = false;
    if (p < end && (*p == '-' || *p == '+')) negative = *p++ == '-';
    uint64_t mantissa = 0;
    int digits = 0, exponent = 0;
    bool any = false;
    for (; p < end && IS_DIGIT(*p); p++, any = true) {
        if (digits == 19) return NULL;
        mantissa = mantissa * 10 + (uint64_t)(*p - '0');
        digits += mantissa != 0;
    }
    if (p < end && *p == '.') {
        for (p++; p < end && IS_DIGIT(*p); p++, any = true) {
            if (digits == 19) return NULL;
            mantissa = mantissa * 10 + (uint64_t)(*p - '0');
            digits += mantissa != 0;
            exponent--;
        }
    }
    if (!any) return NULL;
    if (p < end && (*p == 'e' || *p == 'E')) {
        const char *q = p + 1;
        bool negative_exponent = false;
        if (q < end && (*q == '-' || *q == '+')) negative_exponent = *q++ == '-';
        if (q == end || !IS_DIGIT(*q)) return NULL; /* "1e" is not a number; let strtod say where it ends */
        int e = 0;
        for (; q < end && IS_DIGIT(*q); q++)
            if (e < 10000) e = e * 10 + (*q - '0');
        exponent += negative_exponent ? -e : e;
        p = q;
    }
    return lunet__decimal_compose(out, negative, mantissa, exponent) ? p : NULL;
}
