"""Callbacks: code that ``Sequential.fit`` calls at fixed points of training (Keras' protocol).

``fit`` calls, in order::

    set_model(model); set_params({"epochs": E, "steps": S, "verbose": v})
    on_train_begin(logs)
    for each epoch:   on_epoch_begin(epoch, logs)
        for each batch:   on_batch_end(batch, logs)      # logs: {"loss": batch loss, "size": rows}
        on_epoch_end(epoch, logs)                        # logs: {"loss", metrics, "val_loss", ...}
    on_train_end(logs)

A callback stops training by setting ``self.model.stop_training = True``. This package sits
on the ground floor: it knows the model only through that protocol (``get_weights``,
``set_weights``, ``save``, ``optimizer.lr``, ``stop_training``).

One idea per module: :mod:`~minidl.callbacks.base` (the protocol: ``Callback``,
``CallbackList``, ``LambdaCallback``), :mod:`~minidl.callbacks.history` (``History``),
:mod:`~minidl.callbacks.monitoring` (``EarlyStopping``, ``ModelCheckpoint`` and
``monitor_mode``), :mod:`~minidl.callbacks.progress` (``ProgressBar``) and
:mod:`~minidl.callbacks.schedules` (``LearningRateScheduler``). Every public name is
re-exported here.
"""

from minidl.callbacks.base import Callback, CallbackList, LambdaCallback, Logs
from minidl.callbacks.history import History
from minidl.callbacks.monitoring import EarlyStopping, ModelCheckpoint, monitor_mode
from minidl.callbacks.progress import ProgressBar
from minidl.callbacks.schedules import LearningRateScheduler

__all__ = [
    "Callback", "CallbackList", "EarlyStopping", "History", "LambdaCallback",
    "LearningRateScheduler", "Logs", "ModelCheckpoint", "ProgressBar", "monitor_mode",
]
