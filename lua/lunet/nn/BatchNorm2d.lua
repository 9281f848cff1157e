--- BatchNorm2d(num_features, [options]): batch normalisation of (N, C, H, W) inputs.
-- Options as BatchNorm.
local BatchNorm = require("lunet.nn.BatchNorm")

local BatchNorm2d = BatchNorm:extend("BatchNorm2d")
BatchNorm2d.accepted_dims = { [4] = true }
BatchNorm2d.accepted_text = "(N, C, H, W)"

return BatchNorm2d
