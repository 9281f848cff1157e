/*
 * auth.c: bearer tokens (lunet.h's lunet_server_set_tokens).  The tokens are part of the
 * published table (models.c), so a new token file takes effect on every loop at once and
 * without a lock per request.
 *
 * A given token is held against every token, every byte of each up to the longest allowed, so
 * the time a check takes says nothing about how much of a guess was right, nor which token it
 * was near.
 */
#include "serve.h"

#include <stdlib.h>
#include <string.h>

#define TOKEN_MIN 16
#define TOKEN_MAX 256
#define ALL_SCOPES (LUNET_SCOPE_INFER | LUNET_SCOPE_METRICS | LUNET_SCOPE_ADMIN)

/* All-ones when given equals k, else 0, in a time that depends on neither. */
static unsigned same_secret(const char *given, size_t given_len, const serve_token *k) {
    unsigned diff = (unsigned)(given_len ^ k->len);
    for (size_t i = 0; i < TOKEN_MAX; i++) {
        unsigned char a = i < given_len ? (unsigned char)given[i] : 0;
        unsigned char b = i < k->len ? (unsigned char)k->secret[i] : 0;
        diff |= (unsigned)(a ^ b);
    }
    return (unsigned)0 - (unsigned)(diff == 0);
}

static const char *scope_name(unsigned scope) {
    return scope == LUNET_SCOPE_INFER ? "infer" : scope == LUNET_SCOPE_METRICS ? "metrics" : "admin";
}

bool serve_authorized(const serve_table *t, serve_conn *c, unsigned scope) {
    if (!t->auth || (!scope && !conn_loop(c)->server->protect_health)) return true;
    const serve_request *r = conn_request(c);
    unsigned known = 0, scopes = 0;
    for (int i = 0; i < t->n_tokens; i++) {
        unsigned match = same_secret(r->bearer, r->bearer_len, &t->tokens[i]);
        known |= match;
        scopes |= match & t->tokens[i].scopes;
    }
    if (!r->bearer_len || !known) {
        if (r->has_authorization)
            conn_respond_error(c, 401, "WWW-Authenticate: Bearer realm=\"lunet\", error=\"invalid_token\"\r\n",
                               "the Authorization header holds no valid bearer token");
        else
            conn_respond_error(c, 401, "WWW-Authenticate: Bearer realm=\"lunet\"\r\n",
                               "this route needs an Authorization: Bearer token");
        return false;
    }
    if (scopes & LUNET_SCOPE_ADMIN) scopes = ALL_SCOPES;
    if (scope && !(scopes & scope)) {
        char msg[96];
        snprintf(msg, sizeof msg, "this token does not have the %s scope", scope_name(scope));
        conn_respond_error(c, 403, NULL, msg);
        return false;
    }
    return true;
}

static bool visible_ascii(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~') return false;
    return true;
}

lunet_status lunet_server_set_tokens(lunet_server *s, const lunet_server_token *tokens, int n) {
    for (int i = 0; i < n; i++) {
        size_t len = tokens[i].token ? strlen(tokens[i].token) : 0;
        if (len < TOKEN_MIN || len > TOKEN_MAX || !visible_ascii(tokens[i].token, len))
            return lunet__fail(LUNET_ERR_ARG, "serve: token %d is not %d to %d visible ASCII characters", i + 1,
                               TOKEN_MIN, TOKEN_MAX);
        if (!tokens[i].scopes || (tokens[i].scopes & ~(unsigned)ALL_SCOPES))
            return lunet__fail(LUNET_ERR_ARG, "serve: token %d: scopes %u are not LUNET_SCOPE_* bits", i + 1,
                               tokens[i].scopes);
    }
    serve_table *t = serve_table_copy(s->table, 0, false);
    serve_token *keys = n > 0 ? calloc((size_t)n, sizeof *keys) : NULL;
    bool ok = t && (n <= 0 || keys);
    for (int i = 0; ok && i < n; i++) {
        keys[i].len = strlen(tokens[i].token);
        keys[i].scopes = tokens[i].scopes;
        ok = (keys[i].secret = malloc(keys[i].len + 1)) != NULL;
        if (ok) memcpy(keys[i].secret, tokens[i].token, keys[i].len + 1);
    }
    if (!ok) {
        for (int i = 0; keys && i < n; i++) free(keys[i].secret);
        free(keys);
        if (t) serve_table_free(t);
        return lunet__nomem("serve");
    }
    t->tokens = keys;
    t->n_tokens = n > 0 ? n : 0;
    t->auth = n >= 0;
    serve_table_publish(s, t);
    return LUNET_OK;
}
