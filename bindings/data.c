/* data.c: the data-file readers, exposed to lua/lunet/data.lua. */
#include "binding.h"

void data_functions_register(lua_State *L) { (void)L; }
