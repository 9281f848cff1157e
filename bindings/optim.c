/* optim.c: the optimizer steps, exposed to lua/lunet/optim/. */
#include "binding.h"

void optim_functions_register(lua_State *L) { (void)L; }
