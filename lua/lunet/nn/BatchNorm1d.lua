--- BatchNorm1d(num_features, [options]): batch normalisation of (N, C) or (N, C, L) inputs.
-- Options as BatchNorm.
local BatchNorm = require("lunet.nn.BatchNorm")

local BatchNorm1d = BatchNorm:extend("BatchNorm1d")
BatchNorm1d.accepted_dims = { [2] = true, [3] = true }
BatchNorm1d.accepted_text = "(N, C) or (N, C, L)"

return BatchNorm1d
