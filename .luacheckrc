-- luacheck configuration (Debian: lua-check).  `make lint` runs it.
std = "lua54"
max_line_length = 120
-- specs spell out long expected messages on one line so that they can be searched for
files["spec/"] = { std = "+busted", max_line_length = 160 }
exclude_files = { "build/", "lunet/" }
