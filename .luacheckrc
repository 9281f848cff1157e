-- luacheck configuration (Debian: lua-check).  `make lint` runs it.
std = "lua54"
max_line_length = 120
-- methods keep their self parameter even when a class does not use it (ReLU:forward(x))
self = false
-- specs spell out long expected messages on one line so that they can be searched for
files["spec/"] = { std = "+busted", max_line_length = 160 }
exclude_files = { "build/", "lunet/" }
