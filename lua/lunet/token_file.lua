-- lunet.token_file: the server's bearer tokens, read from a file (lunet.serve's token_file).
--
--   # comments and blank lines are skipped
--   <token> <scope>[,<scope>...]        scopes: infer, metrics, admin (admin allows all)
--
-- A token is 16 to 256 visible ASCII characters.  read(path) raises "path:line: why" on the
-- first bad line, so a broken file never half-applies.
local M = {}

local SCOPES = { infer = true, metrics = true, admin = true }

function M.read(path)
  local f, problem = io.open(path, "r")
  if not f then error("cannot read the token file: " .. tostring(problem), 0) end
  local tokens, n = {}, 0
  for line in f:lines() do
    n = n + 1
    local text = line:gsub("#.*$", "")
    local token, scopes = text:match("^%s*(%S+)%s+(%S+)%s*$")
    if not token and text:match("%S") then
      f:close()
      error(string.format("%s:%d: a line is <token> <scope>[,<scope>...]", path, n), 0)
    end
    if token then
      if #token < 16 or #token > 256 or not token:match("^[\33-\126]+$") then
        f:close()
        error(string.format("%s:%d: a token is 16 to 256 visible ASCII characters", path, n), 0)
      end
      local list = {}
      for scope in scopes:gmatch("[^,]+") do
        if not SCOPES[scope] then
          f:close()
          error(string.format("%s:%d: %s is not a scope (infer, metrics, admin)", path, n, scope), 0)
        end
        list[#list + 1] = scope
      end
      tokens[#tokens + 1] = { token = token, scopes = list }
    end
  end
  f:close()
  return tokens
end

return M
