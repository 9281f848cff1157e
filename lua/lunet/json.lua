--- JSON for the small documents lunet keeps in file metadata (a model's architecture).
--
-- encode writes objects with their keys sorted, so the same value always gives the same text
-- (and a model saved twice gives the same file); numbers keep every bit (the shortest of
-- %.15g, %.16g and %.17g that reads back exactly), integers stay
-- integers.  decode is lua-cjson's strict parser with a nesting limit, for text nobody vouches
-- for; it returns nil and a message on bad input instead of raising.
local cjson = require("cjson")

local json = {}

local decoder = cjson.new()
decoder.decode_max_depth(64)
decoder.decode_invalid_numbers(false) -- no NaN, Infinity or hexadecimal numbers

local ESCAPES = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r",
  ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return ESCAPES[c] or string.format("\\u%04x", c:byte()) end) .. '"'
end

local function is_list(t)
  local n = #t
  for k in pairs(t) do
    if not (math.type(k) == "integer" and k >= 1 and k <= n) then return false end
  end
  return true
end

local function encode(v, out, depth)
  local kind = type(v)
  if kind == "table" then
    if depth > 64 then error("json.encode: nested more than 64 deep", 0) end
    if is_list(v) then -- an empty table is written as an empty list
      out[#out + 1] = "["
      for i = 1, #v do
        if i > 1 then out[#out + 1] = "," end
        encode(v[i], out, depth + 1)
      end
      out[#out + 1] = "]"
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" then error("json.encode: object keys must be strings, got " .. type(k), 0) end
        keys[#keys + 1] = k
      end
      table.sort(keys)
      out[#out + 1] = "{"
      for i, k in ipairs(keys) do
        if i > 1 then out[#out + 1] = "," end
        out[#out + 1] = encode_string(k)
        out[#out + 1] = ":"
        encode(v[k], out, depth + 1)
      end
      out[#out + 1] = "}"
    end
  elseif kind == "string" then
    out[#out + 1] = encode_string(v)
  elseif math.type(v) == "integer" then
    out[#out + 1] = string.format("%d", v)
  elseif kind == "number" then
    if v ~= v or v == math.huge or v == -math.huge then
      error("json.encode: " .. tostring(v) .. " has no JSON form", 0)
    end
    local text = string.format("%.15g", v) -- the shortest of these that reads back as v
    if tonumber(text) ~= v then text = string.format("%.16g", v) end
    if tonumber(text) ~= v then text = string.format("%.17g", v) end
    if not text:find("[%.eEn]") then text = text .. ".0" end -- stays a float when read back
    out[#out + 1] = text
  elseif kind == "boolean" then
    out[#out + 1] = tostring(v)
  else
    error("json.encode: cannot encode a " .. kind, 0)
  end
end

--- The JSON text of v (tables of strings, numbers, booleans and tables).  Raises for values
-- JSON cannot hold (functions, NaN, mixed tables).
function json.encode(v)
  local out = {}
  encode(v, out, 1)
  return table.concat(out)
end

--- The value of a JSON text, or nil and a message saying what is wrong with it.
function json.decode(text)
  if type(text) ~= "string" then return nil, "expected a string, got " .. type(text) end
  local ok, value = pcall(decoder.decode, text)
  if not ok then return nil, tostring(value) end
  return value
end

return json
