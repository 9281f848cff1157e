-- Writes a seed corpus for `make fuzz`: a few valid safetensors files of different shapes,
-- dtypes and metadata, into the directory given as the first argument.
local lunet = require("lunet")
local safetensors = require("lunet.safetensors")

local dir = assert(arg[1], "usage: lua5.4 spec/scripts/fuzz_seeds.lua DIR")
lunet.manual_seed(0)
safetensors.write(dir .. "/small.safetensors", { w = lunet.randn({ 2, 3 }), b = lunet.zeros({ 3 }) })
safetensors.write(dir .. "/dtypes.safetensors", {
  f64 = lunet.ones({ 2 }, "f64"), i64 = lunet.arange(4, "i64"), i32 = lunet.ones({ 1, 1 }, "i32"),
  i8 = lunet.full({ 3 }, -2, "i8"), u8 = lunet.full({ 2, 2 }, 7, "u8"),
}, { ["lunet.format"] = "1", note = "quotes \" and \\ and \n" })
safetensors.write(dir .. "/empty.safetensors", { scalar = lunet.tensor(1.5), none = lunet.zeros({ 0, 4 }) })
print("fuzz seeds written to " .. dir)
