/*
 * serve.c: the HTTP server of lunet.h for Lua (lua/lunet/serve.lua drives it):
 *
 *     local server = core.server(options)      -- binds the port
 *     server:threads()                         -- graphs each model needs (one per event loop)
 *     server:add_model{name = "mlp", version = 1, graphs = {g1, g2}, labels = {"stable"},
 *                      max_batch_size = 64, ...}   -- adds, or replaces that version
 *     server:remove_model("mlp", 1)
 *     server:count_load("mlp", ok)             -- lunet_model_loads_total
 *     server:set_tokens{{token = "...", scopes = {"infer", "metrics"}}, ...}   -- nil: auth off
 *     server:port()
 *     server:start()                           -- the event loops run on threads of their own
 *     server:watch{"models", "models/mlp"}     -- true, or nil and why (then poll)
 *     server:wait(timeout_ms)                  -- "stopped", "changed", "hangup" or "timeout"
 *     server:run()                             -- start, then wait until stopped
 *
 * options: host, port, max_connections, max_header_bytes, max_body_bytes, max_write_queue_bytes,
 * header_timeout_ms, body_timeout_ms, idle_timeout_ms, quiet, threads, drain_delay_ms,
 * shutdown_timeout_ms, protect_health (lunet_server_options' names; 0 for the drain delays means
 * none rather than the default).  add_model hands the graphs to the server: they cannot be used from Lua
 * afterwards.
 */
#include "binding.h"

#include <limits.h>
#include <stdlib.h>

#define SERVER_MT "lunet.Server"

typedef struct server_box {
    lunet_server *server; /* NULL once freed */
} server_box;

static lunet_server *server_check(lua_State *L) {
    server_box *box = luaL_checkudata(L, 1, SERVER_MT);
    if (!box->server) luaL_error(L, "server: used after it stopped");
    return box->server;
}

static lua_Integer int_field(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    lua_Integer v = luaL_optinteger(L, -1, 0);
    if (v < 0) luaL_error(L, "serve: %s must not be negative, got %d", name, (int)v);
    lua_pop(L, 1);
    return v;
}

/* A delay in ms where Lua's 0 means none: C's -1 (C's 0, which nil gives, is the default). */
static int delay_field(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    bool given = !lua_isnil(L, -1);
    lua_pop(L, 1);
    lua_Integer v = int_field(L, idx, name);
    return given && v == 0 ? -1 : (int)v;
}

static int f_server(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lunet_server_options o = {0};
    lua_getfield(L, 1, "host");
    o.host = luaL_optstring(L, -1, "0.0.0.0"); /* stays on the stack (and alive) for the call */
    o.port = (int)int_field(L, 1, "port");
    o.max_connections = (int)int_field(L, 1, "max_connections");
    o.max_header_bytes = (size_t)int_field(L, 1, "max_header_bytes");
    o.max_body_bytes = (size_t)int_field(L, 1, "max_body_bytes");
    o.max_write_queue_bytes = (size_t)int_field(L, 1, "max_write_queue_bytes");
    o.header_timeout_ms = (int)int_field(L, 1, "header_timeout_ms");
    o.body_timeout_ms = (int)int_field(L, 1, "body_timeout_ms");
    o.idle_timeout_ms = (int)int_field(L, 1, "idle_timeout_ms");
    o.threads = (int)int_field(L, 1, "threads");
    o.drain_delay_ms = delay_field(L, 1, "drain_delay_ms");
    o.shutdown_timeout_ms = delay_field(L, 1, "shutdown_timeout_ms");
    lua_getfield(L, 1, "quiet");
    o.quiet = lua_toboolean(L, -1);
    lua_getfield(L, 1, "protect_health");
    o.protect_health = lua_toboolean(L, -1);
    lua_pop(L, 2);
    server_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    box->server = NULL;
    luaL_setmetatable(L, SERVER_MT);
    if (lunet_server_create(&box->server, &o) != LUNET_OK) return raise_status(L);
    return 1;
}

static int m_add_model(lua_State *L) {
    lunet_server *srv = server_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    lunet_server_model m = {0};
    lua_getfield(L, 2, "name");
    m.name = luaL_checkstring(L, -1);
    lua_getfield(L, 2, "input_name");
    m.input_name = luaL_optstring(L, -1, NULL);
    lua_getfield(L, 2, "output_name");
    m.output_name = luaL_optstring(L, -1, NULL);
    m.version = int_field(L, 2, "version");
    m.max_batch_size = (int)int_field(L, 2, "max_batch_size");
    m.max_queue_delay_us = int_field(L, 2, "max_queue_delay_us");
    m.max_queue_size = (int)int_field(L, 2, "max_queue_size");
    int threads = lunet_server_threads(srv);
    lua_getfield(L, 2, "graphs");
    int graphs_idx = lua_gettop(L);
    luaL_checktype(L, graphs_idx, LUA_TTABLE);
    if ((int)luaL_len(L, graphs_idx) != threads)
        return luaL_error(L, "serve: model %s needs %d graphs (one per event loop), got %d", m.name, threads,
                          (int)luaL_len(L, graphs_idx));
    lunet_model **graphs = lua_newuserdatauv(L, (size_t)threads * sizeof *graphs, 0); /* freed with the stack */
    for (int i = 0; i < threads; i++) {
        lua_geti(L, graphs_idx, i + 1);
        graphs[i] = model_graph_check(L, -1);
        lua_pop(L, 1);
    }
    m.graphs = graphs;
    lua_getfield(L, 2, "labels");
    int labels_idx = lua_gettop(L);
    if (!lua_isnil(L, labels_idx)) {
        luaL_checktype(L, labels_idx, LUA_TTABLE);
        m.n_labels = (int)luaL_len(L, labels_idx);
        if (m.n_labels > 8) return luaL_error(L, "serve: model %s: %d labels; at most 8", m.name, m.n_labels);
        const char **labels = lua_newuserdatauv(L, 8 * sizeof *labels, 0); /* freed with the stack */
        for (int i = 0; i < m.n_labels; i++) {
            lua_geti(L, labels_idx, i + 1);
            labels[i] = luaL_checkstring(L, -1); /* stays on the stack for the call */
        }
        m.labels = labels;
    }
    if (lunet_server_add_model(srv, &m) != LUNET_OK) return raise_status(L);
    for (int i = 0; i < threads; i++) {
        lua_geti(L, graphs_idx, i + 1);
        model_graph_release(L, -1);
        lua_pop(L, 1);
    }
    return 0;
}

static int m_remove_model(lua_State *L) {
    lunet_server *srv = server_check(L);
    if (lunet_server_remove_model(srv, luaL_checkstring(L, 2), luaL_checkinteger(L, 3)) != LUNET_OK)
        return raise_status(L);
    return 0;
}

static int m_count_load(lua_State *L) {
    lunet_server_count_load(server_check(L), luaL_checkstring(L, 2), lua_toboolean(L, 3));
    return 0;
}

/* {{token = "...", scopes = {"infer", ...}}, ...}, or nil for no auth. */
static int m_set_tokens(lua_State *L) {
    lunet_server *srv = server_check(L);
    if (lua_isnoneornil(L, 2)) {
        if (lunet_server_set_tokens(srv, NULL, -1) != LUNET_OK) return raise_status(L);
        return 0;
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = (int)luaL_len(L, 2);
    lunet_server_token *tokens = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *tokens, 0);
    static const char *const scope_names[] = {"infer", "metrics", "admin", NULL};
    for (int i = 0; i < n; i++) {
        lua_geti(L, 2, i + 1);
        int entry = lua_gettop(L);
        luaL_checktype(L, entry, LUA_TTABLE);
        lua_getfield(L, entry, "token");
        tokens[i].token = luaL_checkstring(L, -1); /* stays on the stack for the call */
        lua_getfield(L, entry, "scopes");
        luaL_checktype(L, -1, LUA_TTABLE);
        tokens[i].scopes = 0;
        for (int j = 1; j <= (int)luaL_len(L, -1); j++) {
            lua_geti(L, -1, j);
            tokens[i].scopes |= 1u << luaL_checkoption(L, -1, NULL, scope_names);
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    if (lunet_server_set_tokens(srv, tokens, n) != LUNET_OK) return raise_status(L);
    return 0;
}

static int m_start(lua_State *L) {
    if (lunet_server_start(server_check(L)) != LUNET_OK) return raise_status(L);
    return 0;
}

static int m_watch(lua_State *L) {
    lunet_server *srv = server_check(L);
    luaL_checktype(L, 2, LUA_TTABLE);
    int n = (int)luaL_len(L, 2);
    const char **paths = lua_newuserdatauv(L, (size_t)(n > 0 ? n : 1) * sizeof *paths, 0);
    for (int i = 0; i < n; i++) {
        lua_geti(L, 2, i + 1);
        paths[i] = luaL_checkstring(L, -1); /* stays on the stack for the call */
    }
    if (lunet_server_watch(srv, paths, n) != LUNET_OK) {
        lua_pushnil(L);
        lua_pushstring(L, lunet_last_error());
        return 2;
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int m_wait(lua_State *L) {
    lunet_server *srv = server_check(L);
    lua_Integer timeout = luaL_optinteger(L, 2, -1);
    lunet_server_event event;
    if (lunet_server_wait(srv, timeout < 0 ? -1 : timeout > INT_MAX ? INT_MAX : (int)timeout, &event) != LUNET_OK)
        return raise_status(L);
    static const char *const names[] = {"stopped", "timeout", "changed", "hangup"};
    lua_pushstring(L, names[event]);
    return 1;
}

static int m_threads(lua_State *L) {
    lua_pushinteger(L, lunet_server_threads(server_check(L)));
    return 1;
}

static int m_port(lua_State *L) {
    lua_pushinteger(L, lunet_server_port(server_check(L)));
    return 1;
}

static int m_run(lua_State *L) {
    if (lunet_server_run(server_check(L)) != LUNET_OK) return raise_status(L);
    return 0;
}

static int m_free(lua_State *L) {
    server_box *box = luaL_checkudata(L, 1, SERVER_MT);
    lunet_server_free(box->server);
    box->server = NULL;
    return 0;
}

void serve_functions_register(lua_State *L) {
    if (luaL_newmetatable(L, SERVER_MT)) {
        static const luaL_Reg methods[] = {{"add_model", m_add_model}, {"remove_model", m_remove_model},
                                           {"count_load", m_count_load}, {"set_tokens", m_set_tokens},
                                           {"threads", m_threads}, {"port", m_port}, {"start", m_start},
                                           {"watch", m_watch}, {"wait", m_wait}, {"run", m_run},
                                           {"free", m_free}, {NULL, NULL}};
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, m_free);
        lua_setfield(L, -2, "__gc");
    }
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {{"server", f_server}, {NULL, NULL}};
    register_functions(L, funcs);
}
