/*
 * serve.c: the HTTP server of lunet.h for Lua:
 *
 *     core.serve(options, on_listen)   -- blocks until SIGTERM/SIGINT; on_listen(port) runs first
 *
 * options: host, port, max_connections, max_header_bytes, max_body_bytes, header_timeout_ms,
 * body_timeout_ms, idle_timeout_ms, quiet (lunet_server_options' names).
 */
#include "binding.h"

static lua_Integer int_field(lua_State *L, int idx, const char *name) {
    lua_getfield(L, idx, name);
    lua_Integer v = luaL_optinteger(L, -1, 0);
    if (v < 0) luaL_error(L, "serve: %s must not be negative, got %d", name, (int)v);
    lua_pop(L, 1);
    return v;
}

static int f_serve(lua_State *L) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lunet_server_options o = {0};
    lua_getfield(L, 1, "host");
    o.host = luaL_optstring(L, -1, "0.0.0.0"); /* stays on the stack (and alive) for the call */
    o.port = (int)int_field(L, 1, "port");
    o.max_connections = (int)int_field(L, 1, "max_connections");
    o.max_header_bytes = (size_t)int_field(L, 1, "max_header_bytes");
    o.max_body_bytes = (size_t)int_field(L, 1, "max_body_bytes");
    o.header_timeout_ms = (int)int_field(L, 1, "header_timeout_ms");
    o.body_timeout_ms = (int)int_field(L, 1, "body_timeout_ms");
    o.idle_timeout_ms = (int)int_field(L, 1, "idle_timeout_ms");
    lua_getfield(L, 1, "quiet");
    o.quiet = lua_toboolean(L, -1);
    lua_pop(L, 1);
    lunet_server *srv = NULL;
    if (lunet_server_create(&srv, &o) != LUNET_OK) return raise_status(L);
    if (!lua_isnoneornil(L, 2)) {
        lua_pushvalue(L, 2);
        lua_pushinteger(L, lunet_server_port(srv));
        if (lua_pcall(L, 1, 0, 0) != LUA_OK) {
            lunet_server_free(srv);
            return lua_error(L);
        }
    }
    lunet_server_run(srv);
    lunet_server_free(srv);
    return 0;
}

void serve_functions_register(lua_State *L) {
    static const luaL_Reg funcs[] = {{"serve", f_serve}, {NULL, NULL}};
    register_functions(L, funcs);
}
