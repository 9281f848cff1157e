--- Stochastic gradient descent with optional momentum, Nesterov momentum and weight decay:
-- torch.optim.SGD (1.13).
--
--     local opt = optim.SGD(model:parameters(), {lr = 0.1, momentum = 0.9})
--
-- Options (PyTorch's names and defaults): lr (required), momentum = 0, dampening = 0,
-- weight_decay = 0 (L2, added to the gradient), nesterov = false, maximize = false.
-- State per parameter: momentum_buffer, made from the first gradient when momentum is on.
local core = require("lunet.core")
local Optimizer = require("lunet.optim.optimizer")
local settings = require("lunet.optim.settings")

local SGD = Optimizer.class("SGD", {
  lr = Optimizer.required,
  momentum = 0,
  dampening = 0,
  weight_decay = 0,
  nesterov = false,
  maximize = false,
})

function SGD.check_group(group)
  local message = settings.number(group, "lr", 0) or settings.number(group, "momentum", 0)
    or settings.number(group, "dampening", -math.huge) or settings.number(group, "weight_decay", 0)
    or settings.boolean(group, "nesterov") or settings.boolean(group, "maximize")
  if message then return message end
  if group.nesterov and (group.momentum <= 0 or group.dampening ~= 0) then
    return "nesterov momentum needs momentum > 0 and dampening 0"
  end
end

function SGD.init_state()
  return {}
end

--- One C call, or two in the step where some parameters get their first momentum buffer:
-- a new buffer starts as the gradient itself (the C step's `step == 1`), an existing one
-- decays (any later step).
function SGD.update(group, params, states)
  if group.momentum == 0 then
    core.sgd_step(params, nil, 1, group)
    return
  end
  local fresh = { params = {}, buffers = {}, states = {} }
  local running = { params = {}, buffers = {} }
  for i, state in ipairs(states) do
    local p = params[i]
    if state.momentum_buffer == nil then
      fresh.params[#fresh.params + 1] = p
      fresh.buffers[#fresh.buffers + 1] = core.zeros_like(p)
      fresh.states[#fresh.states + 1] = state
    else
      running.params[#running.params + 1] = p
      running.buffers[#running.buffers + 1] = state.momentum_buffer
    end
  end
  if #running.params > 0 then core.sgd_step(running.params, running.buffers, 2, group) end
  if #fresh.params > 0 then
    core.sgd_step(fresh.params, fresh.buffers, 1, group)
    for i, state in ipairs(fresh.states) do state.momentum_buffer = fresh.buffers[i] end
  end
end

return SGD
