/*
 * model_graph.c: the C model graph (lunet_model) as a Lua object.  lunet.compile builds one
 * from a module tree; this file only mirrors the C API, converting Lua's 1-based dims.
 *
 *     local g = core.model_graph("f32", {1, 28, 28})
 *     g:add_flatten(2, -1); g:add_linear(w, b); g:add_activation("relu"); g:add_linear(w2, b2)
 *     local logits = g:forward(x)
 */
#include "binding.h"

#include <stdlib.h>
#include <string.h>

#define MODEL_GRAPH_MT "lunet.ModelGraph"

typedef struct graph_box {
    lunet_model *model; /* NULL once freed */
    /* The tensors the graph was compiled from and their versions then (watch()). */
    lunet_tensor **watched;
    unsigned *versions;
    size_t n_watched;
} graph_box;

static void unwatch(graph_box *box) {
    for (size_t i = 0; i < box->n_watched; i++) lunet_tensor_release(box->watched[i]);
    free(box->watched);
    free(box->versions);
    box->watched = NULL;
    box->versions = NULL;
    box->n_watched = 0;
}

static lunet_model *graph_check(lua_State *L, int idx) {
    graph_box *box = luaL_checkudata(L, idx, MODEL_GRAPH_MT);
    if (!box->model) luaL_error(L, "model graph: used after free()");
    return box->model;
}

static int check_status(lua_State *L, lunet_status s) {
    if (s != LUNET_OK) return raise_status(L);
    lua_settop(L, 1); /* the graph, so that calls chain */
    return 1;
}

/* A Lua dim of the (N, ...) activation (1-based, or negative from the end) as the C API's. */
static int activation_dim(lua_State *L, int idx) {
    lua_Integer d = luaL_checkinteger(L, idx);
    if (d == 0) luaL_error(L, "model graph: dims are 1-based or negative, not 0");
    return (int)(d > 0 ? d - 1 : d);
}

/* The layer kind named at idx, one of `allowed` (a NULL-terminated list of names). */
static lunet_layer_kind kind_arg(lua_State *L, int idx, const char *const *allowed) {
    const char *name = luaL_checkstring(L, idx);
    for (const char *const *a = allowed; *a; a++)
        if (strcmp(name, *a) == 0)
            for (int k = 0; k < LUNET_LAYER_KIND_COUNT; k++)
                if (strcmp(lunet_layer_kind_name((lunet_layer_kind)k), name) == 0) return (lunet_layer_kind)k;
    luaL_error(L, "model graph: unknown layer kind %s", name);
    return LUNET_LAYER_KIND_COUNT;
}

/* model_graph(dtype, sample_shape) */
static int f_model_graph(lua_State *L) {
    lunet_dtype dtype = dtype_arg(L, 1, LUNET_DTYPE_F32, "model_graph");
    int64_t shape[LUNET_MAX_DIMS];
    int next, ndim = shape_arg(L, 2, shape, &next, "model_graph");
    graph_box *box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = (graph_box){0};
    luaL_setmetatable(L, MODEL_GRAPH_MT);
    if (lunet_model_create(&box->model, dtype, ndim, shape) != LUNET_OK) return raise_status(L);
    return 1;
}

static int m_add_linear(lua_State *L) {
    return check_status(L, lunet_model_add_linear(graph_check(L, 1), tensor_check(L, 2), tensor_opt(L, 3)));
}

/* add_conv2d(weight, [bias], [{stride, padding, dilation, groups}]) */
static int m_add_conv2d(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    lunet_conv2d_params p = conv2d_params_arg(L, 4, "conv2d");
    return check_status(L, lunet_model_add_conv2d(m, tensor_check(L, 2), tensor_opt(L, 3), &p));
}

/* add_batch_norm(running_mean, running_var, [weight], [bias], eps) */
static int m_add_batch_norm(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    return check_status(L, lunet_model_add_batch_norm(m, tensor_check(L, 2), tensor_check(L, 3), tensor_opt(L, 4),
                                                      tensor_opt(L, 5), luaL_optnumber(L, 6, 1e-5)));
}

/* add_pool2d("max_pool2d" | "avg_pool2d", {kernel_size, ...}) */
static int m_add_pool2d(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    static const char *const pools[] = {"max_pool2d", "avg_pool2d", NULL};
    lunet_layer_kind kind = kind_arg(L, 2, pools);
    lua_remove(L, 2); /* the options are now at 2, where pool2d_params_arg reads them */
    lunet_pool2d_params p = pool2d_params_arg(L, 2, lunet_layer_kind_name(kind));
    return check_status(L, lunet_model_add_pool2d(m, kind, &p));
}

static int m_add_adaptive_avg_pool2d(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    return check_status(L, lunet_model_add_adaptive_avg_pool2d(m, luaL_checkinteger(L, 2), luaL_checkinteger(L, 3)));
}

/* add_flatten(start_dim, end_dim), Lua dims of the (N, ...) activation */
static int m_add_flatten(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    return check_status(L, lunet_model_add_flatten(m, activation_dim(L, 2), activation_dim(L, 3)));
}

/* add_activation(name, [parameter]) */
static int m_add_activation(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    static const char *const activations[] = {"relu", "leaky_relu", "gelu", "sigmoid", "tanh", NULL};
    lunet_layer_kind kind = kind_arg(L, 2, activations);
    return check_status(L, lunet_model_add_activation(m, kind, luaL_optnumber(L, 3, 0)));
}

/* add_softmax("softmax" | "log_softmax", dim) */
static int m_add_softmax(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    static const char *const softmaxes[] = {"softmax", "log_softmax", NULL};
    lunet_layer_kind kind = kind_arg(L, 2, softmaxes);
    return check_status(L, lunet_model_add_softmax(m, kind, activation_dim(L, 3)));
}

/* add_quantize(scale, zero_point) */
static int m_add_quantize(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    lunet_qparams q = {(float)luaL_checknumber(L, 2), (int32_t)luaL_checkinteger(L, 3)};
    return check_status(L, lunet_model_add_quantize(m, q));
}

static int m_add_dequantize(lua_State *L) { return check_status(L, lunet_model_add_dequantize(graph_check(L, 1))); }

/* add_qlinear(layer): see bindings/quant.c for the layer table */
static int m_add_qlinear(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    lunet_qlayer_params p = qlayer_arg(L, 2);
    return check_status(L, lunet_model_add_qlinear(m, &p));
}

/* add_qconv2d(layer, [{stride, padding, dilation, groups}]) */
static int m_add_qconv2d(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    lunet_qlayer_params p = qlayer_arg(L, 2);
    lunet_conv2d_params c = conv2d_params_arg(L, 3, "qconv2d");
    return check_status(L, lunet_model_add_qconv2d(m, &p, &c));
}

/* add_linear_dynamic(weight, scale, [bias]) */
static int m_add_linear_dynamic(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    return check_status(L, lunet_model_add_linear_dynamic(m, tensor_check(L, 2), tensor_check(L, 3), tensor_opt(L, 4)));
}

static int m_forward(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    lunet_tensor *out = NULL;
    if (lunet_model_forward(&out, m, tensor_check(L, 2)) != LUNET_OK) return raise_status(L);
    tensor_push_new(L, out);
    return 1;
}

/* The sample shapes in and out. */
static int m_input_shape(lua_State *L) {
    int ndim;
    const int64_t *shape = lunet_model_input_shape(graph_check(L, 1), &ndim);
    push_int_list(L, ndim, shape);
    return 1;
}

static int m_output_shape(lua_State *L) {
    int ndim;
    const int64_t *shape = lunet_model_output_shape(graph_check(L, 1), &ndim);
    push_int_list(L, ndim, shape);
    return 1;
}

/* The layers as run: {{kind = "conv2d", activation = "relu"}, {kind = "max_pool2d"}, ...} */
static int m_layers(lua_State *L) {
    lunet_model *m = graph_check(L, 1);
    size_t n = lunet_model_layer_count(m);
    lua_createtable(L, (int)n, 0);
    for (size_t i = 0; i < n; i++) {
        lua_createtable(L, 0, 2);
        lua_pushstring(L, lunet_layer_kind_name(lunet_model_layer_kind(m, i)));
        lua_setfield(L, -2, "kind");
        lunet_layer_kind act = lunet_model_layer_activation(m, i);
        if (act != LUNET_LAYER_KIND_COUNT) {
            lua_pushstring(L, lunet_layer_kind_name(act));
            lua_setfield(L, -2, "activation");
        }
        lua_rawseti(L, -2, (lua_Integer)i + 1);
    }
    return 1;
}

static int m_dtype(lua_State *L) {
    lua_pushstring(L, lunet_dtype_name(lunet_model_dtype(graph_check(L, 1))));
    return 1;
}

/* watch({t1, t2, ...}): remembers the tensors the graph was compiled from and their versions. */
static int m_watch(lua_State *L) {
    graph_box *box = luaL_checkudata(L, 1, MODEL_GRAPH_MT);
    luaL_checktype(L, 2, LUA_TTABLE);
    size_t n = (size_t)luaL_len(L, 2);
    lunet_tensor **watched = calloc(n ? n : 1, sizeof *watched);
    unsigned *versions = calloc(n ? n : 1, sizeof *versions);
    if (!watched || !versions) {
        free(watched);
        free(versions);
        return luaL_error(L, "model graph: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, 2, (lua_Integer)i + 1);
        lunet_tensor *t = tensor_test(L, -1);
        lua_pop(L, 1);
        if (!t) {
            for (size_t k = 0; k < i; k++) lunet_tensor_release(watched[k]);
            free(watched);
            free(versions);
            return luaL_error(L, "model graph: watch: entry %d is not a tensor", (int)i + 1);
        }
        watched[i] = lunet_tensor_retain(t);
        versions[i] = lunet_tensor_version(t);
    }
    unwatch(box);
    box->watched = watched, box->versions = versions, box->n_watched = n;
    return 0;
}

/* True when no watched tensor was written since watch(). */
static int m_watched_unchanged(lua_State *L) {
    graph_box *box = luaL_checkudata(L, 1, MODEL_GRAPH_MT);
    bool same = true;
    for (size_t i = 0; same && i < box->n_watched; i++) same = lunet_tensor_version(box->watched[i]) == box->versions[i];
    lua_pushboolean(L, same);
    return 1;
}

lunet_model *model_graph_check(lua_State *L, int idx) { return graph_check(L, idx); }

void model_graph_release(lua_State *L, int idx) {
    graph_box *box = luaL_checkudata(L, idx, MODEL_GRAPH_MT);
    box->model = NULL;
    unwatch(box);
}

/* Frees the graph now rather than at collection. */
static int m_free(lua_State *L) {
    graph_box *box = luaL_checkudata(L, 1, MODEL_GRAPH_MT);
    lunet_model_free(box->model);
    box->model = NULL;
    unwatch(box);
    return 0;
}

static int m_tostring(lua_State *L) {
    graph_box *box = luaL_checkudata(L, 1, MODEL_GRAPH_MT);
    if (!box->model) lua_pushliteral(L, "lunet.ModelGraph (freed)");
    else lua_pushfstring(L, "lunet.ModelGraph (%d layers)", (int)lunet_model_layer_count(box->model));
    return 1;
}

void model_graph_functions_register(lua_State *L) {
    if (luaL_newmetatable(L, MODEL_GRAPH_MT)) {
        static const luaL_Reg methods[] = {
            {"add_linear", m_add_linear}, {"add_conv2d", m_add_conv2d}, {"add_batch_norm", m_add_batch_norm},
            {"add_pool2d", m_add_pool2d}, {"add_adaptive_avg_pool2d", m_add_adaptive_avg_pool2d},
            {"add_flatten", m_add_flatten}, {"add_activation", m_add_activation}, {"add_softmax", m_add_softmax},
            {"add_quantize", m_add_quantize}, {"add_dequantize", m_add_dequantize}, {"add_qlinear", m_add_qlinear},
            {"add_qconv2d", m_add_qconv2d}, {"add_linear_dynamic", m_add_linear_dynamic},
            {"forward", m_forward}, {"input_shape", m_input_shape}, {"output_shape", m_output_shape},
            {"layers", m_layers}, {"dtype", m_dtype}, {"watch", m_watch}, {"watched_unchanged", m_watched_unchanged},
            {"free", m_free}, {NULL, NULL}};
        lua_newtable(L);
        luaL_setfuncs(L, methods, 0);
        lua_setfield(L, -2, "__index");
        lua_pushcfunction(L, m_free);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, m_tostring);
        lua_setfield(L, -2, "__tostring");
    }
    lua_pop(L, 1);
    static const luaL_Reg funcs[] = {{"model_graph", f_model_graph}, {NULL, NULL}};
    register_functions(L, funcs);
}
