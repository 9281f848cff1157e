/*
 * binding.h: what the files of lunet/core.so share.
 *
 * The binding's state (binding_context) is a userdata in the Lua registry, so no state lives
 * in C globals.  Indices and dims arrive 1-based from Lua and are converted here, and only
 * here, to the C API's 0-based convention.
 */
#ifndef LUNET_BINDING_H
#define LUNET_BINDING_H

#include "lunet.h"

#include <lauxlib.h>
#include <lua.h>

#define LUNET_TENSOR_MT "lunet.Tensor"

/* Per-interpreter state, kept in the registry. */
typedef struct binding_context {
    /* C bytes allocated for Lua-visible tensors and not yet reported to Lua's collector. */
    size_t unreported_bytes;
    /* C bytes handed to Lua since the last full collection lunet forced, and the amount that
     * forces the next one. */
    size_t bytes_since_collect, collect_threshold;
} binding_context;

/* The context of this interpreter (created by luaopen_lunet_core). */
binding_context *binding_context_get(lua_State *L);
/* Creates the context in the registry; called once by luaopen_lunet_core. */
void binding_context_open(lua_State *L);

/* ---- tensor userdata (tensor_object.c) --------------------------------------------------- */

/* The tensor at idx; raises a clear error for a non-tensor or a released tensor. */
lunet_tensor *tensor_check(lua_State *L, int idx);
/* The tensor at idx, or NULL when the argument is nil or absent (raises for anything else). */
lunet_tensor *tensor_opt(lua_State *L, int idx);
/* The tensor at idx, or NULL when it is not a tensor (raises only for a released one). */
lunet_tensor *tensor_test(lua_State *L, int idx);
/* Pushes t, taking over the caller's reference.  push_new also tells Lua's collector about
 * the storage bytes, so that memory held by unreachable tensors is reclaimed in step with
 * allocation; views (shared storage) use push_view. */
void tensor_push_new(lua_State *L, lunet_tensor *t);
void tensor_push_view(lua_State *L, lunet_tensor *t);
/* Raises lunet_last_error() as a Lua error.  Release C temporaries before calling it. */
int raise_status(lua_State *L);
/* Registers the metatable and the methods table; leaves the methods table on the stack. */
void tensor_object_open(lua_State *L);

/* ---- arguments (args.c) --------------------------------------------------------------------- */

/* Reads a shape given as a table {2, 3} or as integers from idx on.  Returns the number of
 * dims; *next is the first argument after the shape. */
int shape_arg(lua_State *L, int idx, int64_t *shape, int *next, const char *op);
/* A dtype name at idx (nil: dflt). */
lunet_dtype dtype_arg(lua_State *L, int idx, lunet_dtype dflt, const char *op);
/* A Lua dim (1..ndim or -ndim..-1; extra = 1 allows ndim+1 for unsqueeze) as a C dim. */
int dim_arg(lua_State *L, int idx, int ndim, int extra, const char *op);
/* A 1-based (or negative, from the end) Lua index into a dim of size: the 0-based index. */
int64_t index_arg(lua_State *L, int idx, int64_t size, int lua_dim, const char *op);
/* The value of field name in the options table at idx (pushed; nil when absent). */
int opt_field(lua_State *L, int idx, const char *name);
/* Creation options: a dtype name or a table {dtype=, requires_grad=} at idx. */
typedef struct create_options {
    lunet_dtype dtype;
    bool requires_grad;
} create_options;
create_options create_options_arg(lua_State *L, int idx, const char *op);
/* Pushes *t as a new tensor with requires_grad applied, or raises when s failed.  t is passed
 * by address so that a call like push_created(L, &t, ctor(&t, ...), o) reads it only after
 * ctor has run (C leaves the order of argument evaluation open). */
int push_created(lua_State *L, lunet_tensor **t, lunet_status s, create_options o);

/* Convolution options {stride, padding, dilation, groups} at idx (nn.c). */
lunet_conv2d_params conv2d_params_arg(lua_State *L, int idx, const char *op);
/* Pooling options {kernel_size (required), stride, padding, dilation, ceil_mode,
 * count_include_pad} at idx (nn.c). */
lunet_pool2d_params pool2d_params_arg(lua_State *L, int idx, const char *op);

/* ---- conversions between Lua values and tensors (convert.c) --------------------------------- */

/* A tensor from a number or nested table at idx, in dtype. */
lunet_status tensor_from_lua(lua_State *L, int idx, lunet_dtype dtype, lunet_tensor **out);
/* Pushes the element at byte address p as an integer or a float. */
void push_element(lua_State *L, const void *p, lunet_dtype dtype);
/* Pushes a list of n integers, such as a shape, as a Lua table. */
void push_int_list(lua_State *L, int n, const int64_t *v);
/* Pushes the tensor as nested tables (a number for a 0-d tensor). */
void push_table(lua_State *L, const lunet_tensor *t);
/* A tensor operand at idx: the tensor itself (retained) or, for a Lua number, a 0-d tensor
 * typed like `like` (a float number next to an integer tensor becomes f32). */
lunet_tensor *operand_arg(lua_State *L, int idx, const lunet_tensor *like, const char *op);

/* ---- registration ---------------------------------------------------------------------------- */

/* Adds the tensor methods (tensor_methods.c) to the table on top of the stack. */
void tensor_methods_register(lua_State *L);
/* Adds __add, __sub, __mul, __div, __pow and __unm to the metatable on top of the stack. */
void tensor_metamethods_register(lua_State *L);
/* Adds the module functions (module.c) to the table on top of the stack. */
void module_functions_register(lua_State *L);
/* Adds Generator and randperm (random.c). */
void random_functions_register(lua_State *L);
/* Adds the neural-network ops (nn.c). */
void nn_functions_register(lua_State *L);
/* Adds safetensors_read and safetensors_write (safetensors.c). */
void safetensors_functions_register(lua_State *L);
/* Adds the data-file readers (data.c). */
void data_functions_register(lua_State *L);
/* Adds the optimizer steps and clip_grad_norm (optim.c). */
void optim_functions_register(lua_State *L);
/* Adds model_graph, the compiled-model constructor (model_graph.c). */
void model_graph_functions_register(lua_State *L);
/* The graph at idx (an error if it is not one, or freed). */
lunet_model *model_graph_check(lua_State *L, int idx);
/* Lets go of the graph at idx without freeing it: something else (a server) owns it now. */
void model_graph_release(lua_State *L, int idx);
/* The end of a binding of an op that makes a tensor: raises on failure, else pushes *out.  out
 * is passed by address: push_op_result(L, &out, op(&out, ...)) must read it after op ran. */
int push_op_result(lua_State *L, lunet_tensor **out, lunet_status s);
/* quant.c: the int8 ops (quantize, qlinear, qconv2d, ...). */
void quant_functions_register(lua_State *L);
/* serve.c: the HTTP server */
void serve_functions_register(lua_State *L);
/* A quantized layer's table ({weight, scale, bias, output_scale, output_zero_point, relu}). */
lunet_qlayer_params qlayer_arg(lua_State *L, int idx);
/* The lunet.Generator at idx. */
lunet_generator *generator_check(lua_State *L, int idx);
/* Sets funcs into the table on top of the stack. */
void register_functions(lua_State *L, const luaL_Reg *funcs);

#endif /* LUNET_BINDING_H */
