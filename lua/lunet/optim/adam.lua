--- Adam: torch.optim.Adam (1.13).
--
--     local opt = optim.Adam(model:parameters(), {lr = 1e-3})
--
-- Options (PyTorch's names and defaults): lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8,
-- weight_decay = 0 (L2, added to the gradient; see AdamW for decoupled decay),
-- amsgrad = false, maximize = false.
-- State per parameter: step, exp_avg, exp_avg_sq, and max_exp_avg_sq with amsgrad.
local core = require("lunet.core")
local Optimizer = require("lunet.optim.optimizer")
local settings = require("lunet.optim.settings")

local Adam = Optimizer.class("Adam", {
  lr = 1e-3,
  betas = { 0.9, 0.999 },
  eps = 1e-8,
  weight_decay = 0,
  amsgrad = false,
  maximize = false,
})
Adam.required_state = { "step", "exp_avg", "exp_avg_sq" }

function Adam.check_group(group)
  return settings.number(group, "lr", 0) or settings.betas(group) or settings.number(group, "eps", 0)
    or settings.number(group, "weight_decay", 0) or settings.boolean(group, "amsgrad")
    or settings.boolean(group, "maximize")
end

function Adam.init_state(_, param)
  return { step = 0, exp_avg = core.zeros_like(param), exp_avg_sq = core.zeros_like(param) }
end

--- The update shared with AdamW; options is what core.adam_step reads (the group itself for
-- Adam).
function Adam.run(group, params, states, options)
  for _, batch in ipairs(Optimizer.batches_by_step(params, states)) do
    local exp_avg, exp_avg_sq, max_exp_avg_sq = {}, {}, nil
    if group.amsgrad then max_exp_avg_sq = {} end
    for i, state in ipairs(batch.states) do
      exp_avg[i], exp_avg_sq[i] = state.exp_avg, state.exp_avg_sq
      if max_exp_avg_sq then
        state.max_exp_avg_sq = state.max_exp_avg_sq or core.zeros_like(batch.params[i])
        max_exp_avg_sq[i] = state.max_exp_avg_sq
      end
    end
    core.adam_step(batch.params, exp_avg, exp_avg_sq, max_exp_avg_sq, batch.step, options)
    for _, state in ipairs(batch.states) do state.step = batch.step end
  end
end

function Adam.update(group, params, states)
  Adam.run(group, params, states, group)
end

return Adam
