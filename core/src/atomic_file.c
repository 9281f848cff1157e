/*
 * atomic_file.c: writing a file so that a crash at any moment leaves either the old file or
 * the whole new one.  The contents go to a temporary file beside the target (same directory,
 * so the same filesystem), which is flushed and fsync'd before rename() puts it in place;
 * then the directory is fsync'd so that the rename itself survives a power cut.  Model files,
 * checkpoints and ONNX exports are all written this way.
 */
#define _POSIX_C_SOURCE 200809L /* fsync, strndup, O_CLOEXEC, O_NOFOLLOW, O_DIRECTORY */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

lunet_status lunet__fwrite(FILE *f, const void *bytes, size_t n, const char *op, const char *tmp) {
    if (n == 0) return LUNET_OK;
    errno = 0;
    if (fwrite(bytes, 1, n, f) != n)
        return lunet__fail(LUNET_ERR_IO, "%s: writing %s failed: %s", op, tmp, errno ? strerror(errno) : "short write");
    return LUNET_OK;
}

/* Makes the rename durable.  Filesystems that cannot sync a directory say EINVAL; there is
 * nothing more to do on those. */
static lunet_status sync_directory(const char *path, const char *op) {
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir) return lunet__nomem(op);
    lunet_status s = LUNET_OK;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || (fsync(fd) != 0 && errno != EINVAL))
        s = lunet__fail(LUNET_ERR_IO, "%s: %s: written, but syncing its directory %s failed: %s", op, path, dir,
                        strerror(errno));
    if (fd >= 0) close(fd);
    free(dir);
    return s;
}

/* The contents, flushed and on disk: the data must be there before the rename makes it the
 * file, or a crash could leave a renamed but empty file behind. */
static lunet_status write_and_sync(FILE *f, const char *tmp, const char *op, lunet__write_fn write, void *ctx) {
    LUNET_TRY(write(f, tmp, ctx));
    if (fflush(f) != 0) return lunet__fail(LUNET_ERR_IO, "%s: writing %s failed: %s", op, tmp, strerror(errno));
    if (fsync(fileno(f)) != 0) return lunet__fail(LUNET_ERR_IO, "%s: syncing %s failed: %s", op, tmp, strerror(errno));
    return LUNET_OK;
}

lunet_status lunet__write_atomically(const char *path, const char *op, lunet__write_fn write, void *ctx) {
    if (!path || !path[0]) return lunet__fail(LUNET_ERR_ARG, "%s: the path is %s", op, path ? "empty" : "NULL");
    size_t tmp_size = strlen(path) + 32;
    char *tmp = malloc(tmp_size);
    if (!tmp) return lunet__nomem(op);
    snprintf(tmp, tmp_size, "%s.tmp.%ld", path, (long)getpid());
    /* O_NOFOLLOW: a symlink planted at the temporary name must not redirect the write. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0666);
    if (fd < 0) {
        lunet_status s = lunet__fail(LUNET_ERR_IO, "%s: %s: cannot create the temporary file %s: %s", op, path, tmp,
                                     strerror(errno));
        free(tmp);
        return s;
    }
    FILE *f = fdopen(fd, "wb");
    lunet_status s = f ? write_and_sync(f, tmp, op, write, ctx) : lunet__fail(LUNET_ERR_IO, "%s: %s: %s", op, tmp, strerror(errno));
    if ((f ? fclose(f) : close(fd)) != 0 && s == LUNET_OK)
        s = lunet__fail(LUNET_ERR_IO, "%s: closing %s failed: %s", op, tmp, strerror(errno));
    if (s == LUNET_OK && rename(tmp, path) != 0)
        s = lunet__fail(LUNET_ERR_IO, "%s: %s: cannot rename %s over it: %s", op, path, tmp, strerror(errno));
    if (s != LUNET_OK) unlink(tmp);
    else s = sync_directory(path, op);
    free(tmp);
    return s;
}

typedef struct byte_span {
    const void *bytes;
    size_t n;
} byte_span;

static lunet_status write_span(FILE *f, const char *tmp, void *ctx) {
    const byte_span *span = ctx;
    return lunet__fwrite(f, span->bytes, span->n, "write_file", tmp);
}

lunet_status lunet_write_file_atomic(const char *path, const void *bytes, size_t n) {
    if (n && !bytes) return lunet__fail(LUNET_ERR_ARG, "write_file: %s: bytes is NULL but n is %zu", path ? path : "?", n);
    byte_span span = {bytes, n};
    return lunet__write_atomically(path, "write_file", write_span, &span);
}
