--- GlobalAvgPool2d(): each channel's mean, (N, C, H, W) -> (N, C), like Keras's
-- GlobalAveragePooling2D (AdaptiveAvgPool2d(1) followed by a flatten).
local core = require("lunet.core")
local Module = require("lunet.nn.Module")

local GlobalAvgPool2d = Module:extend("GlobalAvgPool2d")

function GlobalAvgPool2d:forward(x) return core.adaptive_avg_pool2d(x, 1):flatten(2) end

return GlobalAvgPool2d
