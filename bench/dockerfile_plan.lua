-- Reads a Dockerfile and prints its instructions as a bash plan for bench/dockerfile_steps.sh:
-- one line per instruction, a call of that script's step_* functions with each argument
-- single-quoted, in the file's order.  The script prints the plan and then sources it, so the
-- steps it runs are the Dockerfile's own and cannot drift from it.
--
--   lua5.4 bench/dockerfile_plan.lua Dockerfile
--
-- Handled: comments and line continuations (the escape character is the default \), FROM
-- [AS name], RUN, CMD, ENTRYPOINT (shell and JSON forms), COPY [--from=] [--chown=] (shell
-- and JSON forms), WORKDIR, ENV (key=value pairs, double quotes, or the old "key value"), USER,
-- EXPOSE, STOPSIGNAL, HEALTHCHECK [options] CMD ..., ARG and LABEL (recorded only).  Anything
-- else, and $variables outside RUN (Docker would substitute them; this does not), is an
-- error, so that the plan never silently differs from the file.
local cjson = require("cjson")

local function fail(line, message)
  io.stderr:write(string.format("dockerfile_plan.lua: line %d: %s\n", line, message))
  os.exit(1)
end

local function quote(s)
  if s:find("[%z\n]") then error("an argument holds a newline or NUL: " .. s) end
  return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function trim(s) return (s:gsub("^%s+", ""):gsub("%s+$", "")) end

-- The exec form: a JSON array of strings, else nil (the shell form).
local function json_array(text, line)
  if text:sub(1, 1) ~= "[" then return nil end
  local ok, value = pcall(cjson.decode, text)
  if not ok or type(value) ~= "table" then return nil end -- Docker, too, falls back to the shell form
  for i, v in ipairs(value) do
    if type(v) ~= "string" then fail(line, "element " .. i .. " of a JSON form is not a string") end
  end
  return value
end

-- Words separated by blanks, with double quotes and backslash escapes (ENV, COPY, EXPOSE).
local function words(text, line)
  local out, current, i, quoted, any = {}, {}, 1, false, false
  while i <= #text do
    local c = text:sub(i, i)
    if c == "\\" and i < #text then
      current[#current + 1], any, i = text:sub(i + 1, i + 1), true, i + 1
    elseif c == '"' then
      quoted, any = not quoted, true
    elseif not quoted and c:match("%s") then
      if any then out[#out + 1], current, any = table.concat(current), {}, false end
    else
      current[#current + 1], any = c, true
    end
    i = i + 1
  end
  if quoted then fail(line, "unterminated double quote") end
  if any then out[#out + 1] = table.concat(current) end
  return out
end

local function no_variables(args, line, keyword)
  if args:find("%$") then fail(line, keyword .. ": $variables are not substituted by this plan") end
end

-- Joins continued lines and drops comments: a list of {line = n, text = instruction}.
local function instructions(path)
  local f = assert(io.open(path, "r"))
  local out, pending, start, n = {}, nil, nil, 0
  for raw in f:lines() do
    n = n + 1
    local is_comment = raw:match("^%s*#")
    if not is_comment and not (pending and raw:match("^%s*$")) then
      local text = raw:gsub("%s+$", "")
      if not pending then pending, start = "", n end
      if text:sub(-1) == "\\" then
        pending = pending .. text:sub(1, -2)
      else
        pending = pending .. text
        if trim(pending) ~= "" then out[#out + 1] = { line = start, text = trim(pending) } end
        pending = nil
      end
    end
  end
  f:close()
  if pending and trim(pending) ~= "" then fail(start, "the file ends inside a continued line") end
  return out
end

-- "exec" and the arguments, or "shell" and the command.
local function command_form(args, line)
  local array = json_array(args, line)
  if array then return "exec", array end
  return "shell", { args }
end

local emit = {}

local function call(name, ...)
  local parts = { name }
  for _, v in ipairs({ ... }) do
    if type(v) == "table" then
      for _, w in ipairs(v) do parts[#parts + 1] = quote(w) end
    else
      parts[#parts + 1] = quote(v)
    end
  end
  emit[#emit + 1] = table.concat(parts, " ")
end

local handlers = {}

function handlers.FROM(args, line)
  no_variables(args, line, "FROM")
  local w = words(args, line)
  if #w == 1 then
    call("step_from", w[1], "")
  elseif #w == 3 and w[2]:upper() == "AS" then
    call("step_from", w[1], w[3])
  else
    fail(line, "FROM takes an image and optionally AS name")
  end
end

function handlers.RUN(args, line)
  if args:match("^%-%-") then fail(line, "RUN options are not handled") end
  local form, argv = command_form(args, line)
  call("step_run", form, argv)
end

function handlers.CMD(args, line)
  local form, argv = command_form(args, line)
  call("step_cmd", form, argv)
end

function handlers.ENTRYPOINT(args, line)
  local form, argv = command_form(args, line)
  call("step_entrypoint", form, argv)
end

function handlers.COPY(args, line)
  no_variables(args, line, "COPY")
  local from, chown = "", ""
  while true do
    local flag, value, rest = args:match("^%-%-(%w+)=(%S+)%s+(.*)$")
    if not flag then break end
    if flag == "from" then
      from = value
    elseif flag == "chown" then
      chown = value
    else
      fail(line, "COPY --" .. flag .. " is not handled")
    end
    args = rest
  end
  local paths = json_array(args, line) or words(args, line)
  if #paths < 2 then fail(line, "COPY takes at least one source and a destination") end
  call("step_copy", from, chown, paths)
end

-- Instructions whose whole argument goes to their step as it is.
for _, name in ipairs({ "WORKDIR", "USER", "STOPSIGNAL" }) do
  handlers[name] = function(args, line)
    no_variables(args, line, name)
    call("step_" .. name:lower(), args)
  end
end

function handlers.ENV(args, line)
  no_variables(args, line, "ENV")
  local w = words(args, line)
  local pairs_out = {}
  if w[1] and not w[1]:find("=") then
    -- the old form: ENV key value with spaces
    local key, value = args:match("^(%S+)%s+(.*)$")
    if not key then fail(line, "ENV takes key=value pairs") end
    pairs_out = { key, value }
  else
    for _, pair in ipairs(w) do
      local key, value = pair:match("^([^=]+)=(.*)$")
      if not key then fail(line, "ENV: " .. pair .. " is not key=value") end
      pairs_out[#pairs_out + 1], pairs_out[#pairs_out + 2] = key, value
    end
  end
  call("step_env", pairs_out)
end

function handlers.EXPOSE(args, line)
  no_variables(args, line, "EXPOSE")
  call("step_expose", words(args, line))
end

function handlers.HEALTHCHECK(args, line)
  if args:upper() == "NONE" then
    call("step_healthcheck", "NONE")
    return
  end
  local options = {}
  while true do
    local option, rest = args:match("^(%-%-%S+)%s+(.*)$")
    if not option then break end
    options[#options + 1], args = option, rest
  end
  local rest = args:match("^[Cc][Mm][Dd]%s+(.*)$")
  if not rest then fail(line, "HEALTHCHECK takes options and then CMD") end
  local form, argv = command_form(rest, line)
  call("step_healthcheck", options, "CMD", form, argv)
end

function handlers.ARG(args) call("step_record", "ARG", args) end
function handlers.LABEL(args) call("step_record", "LABEL", args) end

local path = arg[1] or "Dockerfile"
for _, instruction in ipairs(instructions(path)) do
  local keyword, args = instruction.text:match("^(%S+)%s*(.*)$")
  local handler = handlers[keyword:upper()]
  if not handler then fail(instruction.line, keyword .. " is not handled by this plan") end
  emit[#emit + 1] = string.format("step_line %d", instruction.line)
  handler(args, instruction.line)
end
io.stdout:write(table.concat(emit, "\n"), "\n")
