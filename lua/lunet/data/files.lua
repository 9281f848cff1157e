--- Reading data files into tensors: data.read_idx and data.read_csv.
-- Both raise an error naming the file and the problem; the C readers (core.idx_read,
-- core.csv_read) return nil, message, code instead, for callers that want to recover.
local core = require("lunet.core")

local files = {}

--- An IDX file (the MNIST format), gzip-compressed or not, as a tensor of the file's shape.
-- u8, i8, i32, f32 and f64 keep their dtype; i16 becomes i32.
function files.read_idx(path)
  if type(path) ~= "string" then error("read_idx: path must be a string, got " .. type(path), 2) end
  local t, message = core.idx_read(path)
  if not t then error(message, 2) end
  return t
end

-- The fields of one header line: split at the delimiter (at runs of blanks for " "), blanks
-- and double quotes around each name removed.
local function split_names(line, delimiter)
  local names = {}
  local function add(field) names[#names + 1] = field:match("^%s*\"?(.-)\"?%s*$") end
  if delimiter == " " then
    for field in line:gmatch("%S+") do add(field) end
    return names
  end
  local start = 1
  while true do
    local at = line:find(delimiter, start, true)
    if not at then break end
    add(line:sub(start, at - 1))
    start = at + 1
  end
  add(line:sub(start))
  return names
end

-- The header line of path: the line after skip_rows lines.
local function read_header(path, delimiter, skip_rows)
  local file, message = io.open(path, "rb")
  if not file then error("read_csv: " .. message, 4) end
  local line = file:read("l")
  if line and line:sub(1, 2) == "\31\139" then
    file:close()
    error("read_csv: " .. path .. ": header = true needs an uncompressed file (this one is gzip)", 4)
  end
  for _ = 1, skip_rows do line = line and file:read("l") end
  file:close()
  if not line then error(string.format("read_csv: %s: no header line (line %d)", path, skip_rows + 1), 4) end
  return split_names(line:gsub("\r$", ""), delimiter)
end

--- A CSV file of numbers as a (rows, columns) tensor.
-- Blanks around fields are ignored, empty lines skipped, and every row must have the same
-- number of fields; a delimiter of " " means any run of spaces and tabs.
-- @param path the file (gzip-compressed files work when header is false)
-- @param[opt] options header (false): the first line (after skip_rows) names the columns;
--   delimiter (","), skip_rows (0): lines to skip first, dtype ("f32" or "f64")
-- @return the tensor, and the list of column names when header is true
function files.read_csv(path, options)
  if type(path) ~= "string" then error("read_csv: path must be a string, got " .. type(path), 2) end
  options = options or {}
  local delimiter, skip_rows = options.delimiter or ",", options.skip_rows or 0
  local names
  if options.header then
    names = read_header(path, delimiter, skip_rows)
    skip_rows = skip_rows + 1
  end
  local t, message = core.csv_read(path, { delimiter = delimiter, skip_rows = skip_rows, dtype = options.dtype })
  if not t then error(message, 2) end
  if names and #names ~= t:size(2) then
    error(string.format("read_csv: %s: the header names %d columns but the rows have %d", path, #names, t:size(2)), 2)
  end
  return t, names
end

return files
