/* status.c: status names and messages, and the per-thread "last error" detail. */
#include "internal.h"

#include <stdarg.h>
#include <stdlib.h>

#define LUNET__ERROR_CAPACITY 512

static _Thread_local char last_error[LUNET__ERROR_CAPACITY];

const char *lunet_status_name(lunet_status status) {
    switch (status) {
#define LUNET__STATUS_NAME(name, value, text)                                              \
    case LUNET_##name:                                                                     \
        return "LUNET_" #name;
        LUNET_STATUS_LIST(LUNET__STATUS_NAME)
#undef LUNET__STATUS_NAME
    }
    return "unknown";
}

const char *lunet_status_str(lunet_status status) {
    switch (status) {
#define LUNET__STATUS_TEXT(name, value, text)                                              \
    case LUNET_##name:                                                                     \
        return text;
        LUNET_STATUS_LIST(LUNET__STATUS_TEXT)
#undef LUNET__STATUS_TEXT
    }
    return "unknown status";
}

const char *lunet_last_error(void) { return last_error; }

lunet_status lunet__fail(lunet_status status, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, args);
    va_end(args);
    return status;
}

lunet_status lunet__nomem(const char *op) {
    return lunet__fail(LUNET_ERR_NOMEM, "%s: out of memory", op);
}

void lunet__assert_fail(const char *cond, const char *file, int line) {
    /* An internal invariant broke: this is a lunet bug, not bad input, so stop loudly. */
    fprintf(stderr, "lunet: internal error: %s (%s:%d)\n", cond, file, line);
    abort();
}
