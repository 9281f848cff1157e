/* safetensors.c: reading and writing safetensors files, exposed to lua/lunet/safetensors.lua. */
#include "binding.h"

void safetensors_functions_register(lua_State *L) { (void)L; }
