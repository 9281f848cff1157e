/*
 * float_text.c: a float as text, fast.  The server writes every output value of a JSON
 * response this way, and snprintf's "%.9g" was a tenth of a small model's request.
 *
 * The text is exactly what "%.9g" prints (9 significant digits, the fewest that always read
 * back as the same float; trailing zeros dropped; an exponent past 1e9 or below 1e-4), which
 * is the reference a test holds it to over random bit patterns.  The digits come from one
 * product in double: the float times a power of ten (exact in double up to 1e22) lands in
 * [1e8, 1e9) with a relative error of at most 2^-53, so rounding it to an integer gives the
 * correctly rounded 9 digits unless it lies within 1e-6 of a half.  That rare case, and floats
 * too small or large for an exact power of ten, go to snprintf.
 */
#include "internal.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* a * 10^k (|k| <= 22): one rounding. */
static double scale(double a, int k) { return k >= 0 ? a * lunet__powers_of_ten[k] : a / lunet__powers_of_ten[-k]; }

static size_t by_snprintf(char *out, float v) { return (size_t)snprintf(out, LUNET__F32_TEXT_MAX, "%.9g", (double)v); }

size_t lunet__f32_text(char *out, float v) {
    double a = fabs((double)v);
    if (a == 0) return by_snprintf(out, v); /* "0" or "-0" */
    if (!isfinite(a)) return by_snprintf(out, v);
    int exp10 = (int)floor(log10(a)); /* may be one off: corrected below */
    int k = 8 - exp10;
    if (k < -22 || k > 22) return by_snprintf(out, v);
    double s = scale(a, k);
    if (s >= 1e9 || s < 1e8) {
        exp10 += s >= 1e9 ? 1 : -1;
        k = 8 - exp10;
        if (k < -22 || k > 22) return by_snprintf(out, v);
        s = scale(a, k);
    }
    double whole = floor(s), frac = s - whole;
    if (fabs(frac - 0.5) < 1e-6) return by_snprintf(out, v); /* too near a tie to round by s */
    uint32_t digits = (uint32_t)whole + (frac > 0.5);
    if (digits == 1000000000u) digits = 100000000u, exp10++;
    char d[9];
    for (int i = 8; i >= 0; i--) d[i] = (char)('0' + digits % 10), digits /= 10;
    int n = 9; /* significant digits, trailing zeros dropped */
    while (n > 1 && d[n - 1] == '0') n--;
    char *p = out;
    if (v < 0) *p++ = '-';
    if (exp10 >= -4 && exp10 < 9) { /* fixed: "%g" with precision 9 */
        if (exp10 >= 0) {
            memcpy(p, d, (size_t)exp10 + 1), p += exp10 + 1;
            if (n > exp10 + 1) *p++ = '.', memcpy(p, d + exp10 + 1, (size_t)(n - exp10 - 1)), p += n - exp10 - 1;
        } else {
            *p++ = '0', *p++ = '.';
            for (int i = 0; i < -exp10 - 1; i++) *p++ = '0';
            memcpy(p, d, (size_t)n), p += n;
        }
    } else { /* scientific: d.ddde+XX */
        *p++ = d[0];
        if (n > 1) *p++ = '.', memcpy(p, d + 1, (size_t)n - 1), p += n - 1;
        *p++ = 'e';
        *p++ = exp10 < 0 ? '-' : '+';
        int e = exp10 < 0 ? -exp10 : exp10;
        if (e >= 100) *p++ = (char)('0' + e / 100);
        *p++ = (char)('0' + e / 10 % 10), *p++ = (char)('0' + e % 10);
    }
    *p = '\0';
    return (size_t)(p - out);
}
