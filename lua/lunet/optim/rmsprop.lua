--- RMSprop: torch.optim.RMSprop (1.13).  eps is added after the square root, as PyTorch does
-- (TensorFlow adds it inside).
--
--     local opt = optim.RMSprop(model:parameters(), {lr = 1e-2})
--
-- Options (PyTorch's names and defaults): lr = 1e-2, alpha = 0.99, eps = 1e-8,
-- weight_decay = 0, momentum = 0, centered = false, maximize = false.
-- State per parameter: step, square_avg, momentum_buffer (momentum > 0), grad_avg (centered).
local core = require("lunet.core")
local Optimizer = require("lunet.optim.optimizer")
local settings = require("lunet.optim.settings")

local RMSprop = Optimizer.class("RMSprop", {
  lr = 1e-2,
  alpha = 0.99,
  eps = 1e-8,
  weight_decay = 0,
  momentum = 0,
  centered = false,
  maximize = false,
})
RMSprop.required_state = { "step", "square_avg" }

function RMSprop.check_group(group)
  return settings.number(group, "lr", 0) or settings.number(group, "alpha", 0) or settings.number(group, "eps", 0)
    or settings.number(group, "weight_decay", 0) or settings.number(group, "momentum", 0)
    or settings.boolean(group, "centered") or settings.boolean(group, "maximize")
end

function RMSprop.init_state(_, param)
  return { step = 0, square_avg = core.zeros_like(param) }
end

function RMSprop.update(group, params, states)
  local square_avg, buffers, grad_avg = {}, nil, nil
  if group.momentum > 0 then buffers = {} end
  if group.centered then grad_avg = {} end
  for i, state in ipairs(states) do
    square_avg[i] = state.square_avg
    -- Made on first use, so that turning momentum or centering on later starts them at zero.
    if buffers then
      state.momentum_buffer = state.momentum_buffer or core.zeros_like(params[i])
      buffers[i] = state.momentum_buffer
    end
    if grad_avg then
      state.grad_avg = state.grad_avg or core.zeros_like(params[i])
      grad_avg[i] = state.grad_avg
    end
  end
  core.rmsprop_step(params, square_avg, buffers, grad_avg, group)
  for _, state in ipairs(states) do state.step = state.step + 1 end
end

return RMSprop
