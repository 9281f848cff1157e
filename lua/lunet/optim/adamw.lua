--- AdamW, Adam with decoupled weight decay: torch.optim.AdamW (1.13).  Each step first
-- multiplies the weights by 1 - lr * weight_decay, then takes Adam's step without decay.
--
--     local opt = optim.AdamW(model:parameters(), {lr = 1e-3, weight_decay = 1e-2})
--
-- Options (PyTorch's names and defaults): lr = 1e-3, betas = {0.9, 0.999}, eps = 1e-8,
-- weight_decay = 1e-2, amsgrad = false, maximize = false.  State: as Adam's.
local Optimizer = require("lunet.optim.optimizer")
local Adam = require("lunet.optim.adam")

local AdamW = Optimizer.class("AdamW", {
  lr = 1e-3,
  betas = { 0.9, 0.999 },
  eps = 1e-8,
  weight_decay = 1e-2,
  amsgrad = false,
  maximize = false,
})
AdamW.required_state = Adam.required_state
AdamW.check_group = Adam.check_group
AdamW.init_state = Adam.init_state

function AdamW.update(group, params, states)
  Adam.run(group, params, states, {
    lr = group.lr,
    betas = group.betas,
    eps = group.eps,
    weight_decay = group.weight_decay,
    amsgrad = group.amsgrad,
    maximize = group.maximize,
    decoupled_weight_decay = true,
  })
end

return AdamW
