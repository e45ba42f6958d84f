"""Learning-rate schedules during ``fit``: :class:`LearningRateScheduler` sets the
optimizer's rate at the start of each epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from minidl.callbacks.base import Callback, Logs


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch: ``lr = schedule(epoch, lr)``.

    ``schedule`` is any callable of (epoch from 0, current lr), e.g. the decays in
    ``minidl.optim``. The rate in force is recorded in the logs as ``"lr"``.
    """

    def __init__(self, schedule: Callable[[int, float], float]) -> None:
        super().__init__()
        self.schedule = schedule

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        lr = float(self.schedule(epoch, float(self.model.optimizer.lr)))
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateScheduler: schedule returned {lr} at epoch {epoch}; "
                             "a learning rate must be finite and >= 0")
        self.model.optimizer.lr = lr

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if logs is not None:
            logs["lr"] = float(self.model.optimizer.lr)
