--- Callbacks for model:fit.  A callback is any table with some of these methods:
--   on_train_begin(trainer), on_epoch_begin(trainer, epoch),
--   on_epoch_end(trainer, epoch, logs), on_train_end(trainer, history)
-- where trainer has fields model, optimizer, history, log_order and stop_training (set it to
-- true to stop after this epoch), and logs maps names (loss, accuracy, val_loss, ...) to values.
return {
  EarlyStopping = require("lunet.callbacks.EarlyStopping"),
  ModelCheckpoint = require("lunet.callbacks.ModelCheckpoint"),
  CSVLogger = require("lunet.callbacks.CSVLogger"),
}
