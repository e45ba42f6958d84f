"""Callbacks: code that ``Sequential.fit`` calls at fixed points of training (Keras' protocol).

``fit`` calls, in order::

    set_model(model); set_params({"epochs": E, "steps": S, "verbose": v})
    on_train_begin(logs)                    # may set model._initial_epoch (BackupAndRestore)
    for each epoch:   on_epoch_begin(epoch, logs)
        for each batch:   on_batch_begin(batch, logs)
                          on_batch_end(batch, logs)      # logs: {"loss": batch loss, "size": rows}
        on_epoch_end(epoch, logs)                        # logs: {"loss", metrics, "val_loss", ...}
    on_train_end(logs)

A callback stops training by setting ``self.model.stop_training = True`` (checked after
every batch and every epoch). This package sits below the model: it knows it only through
that protocol (``get_weights``, ``set_weights``, ``save``, ``save_weights``, ``epoch``,
``optimizer.lr``, ``stop_training``). Callbacks named as Keras' behave as Keras 3's,
``verbose=1`` messages included.

One idea per module: :mod:`~minidl.callbacks.base` (the protocol: ``Callback``,
``CallbackList``, ``LambdaCallback``), :mod:`~minidl.callbacks.history` (``History``),
:mod:`~minidl.callbacks.monitoring` (``EarlyStopping``, ``TerminateOnNaN`` and
``monitor_mode``), :mod:`~minidl.callbacks.schedules` (``LearningRateScheduler``,
``ReduceLROnPlateau``), :mod:`~minidl.callbacks.checkpoints` (``ModelCheckpoint``,
``BackupAndRestore``), :mod:`~minidl.callbacks.csv_logger` (``CSVLogger``),
:mod:`~minidl.callbacks.pruning` (``OptunaPruningCallback``, for Optuna studies) and
:mod:`~minidl.callbacks.progress` (``ProgressBar``). Every public name is re-exported here.
"""

from minidl.callbacks.base import Callback, CallbackList, LambdaCallback, Logs
from minidl.callbacks.checkpoints import BackupAndRestore, ModelCheckpoint
from minidl.callbacks.csv_logger import CSVLogger
from minidl.callbacks.history import History
from minidl.callbacks.monitoring import EarlyStopping, TerminateOnNaN, monitor_mode
from minidl.callbacks.progress import ProgressBar
from minidl.callbacks.pruning import OptunaPruningCallback
from minidl.callbacks.schedules import LearningRateScheduler, ReduceLROnPlateau

__all__ = [
    "BackupAndRestore", "CSVLogger", "Callback", "CallbackList", "EarlyStopping", "History",
    "LambdaCallback", "LearningRateScheduler", "Logs", "ModelCheckpoint",
    "OptunaPruningCallback", "ProgressBar",
    "ReduceLROnPlateau", "TerminateOnNaN", "monitor_mode",
]
