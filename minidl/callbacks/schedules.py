"""The learning rate during ``fit``: :class:`LearningRateScheduler` sets it at the start of
each epoch from a function of the epoch, :class:`ReduceLROnPlateau` lowers it when a
monitored quantity stops improving. Both follow Keras 3, record the rate in the epoch logs
as ``"learning_rate"`` and print Keras' messages to stdout with ``verbose=1``.

An optimizer whose ``lr`` is a schedule (``Adam(params, lr=CosineDecay(...))``) changes it
every step by itself; its ``lr`` cannot be set, so both callbacks raise a TypeError with it,
as in Keras.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from minidl.callbacks.base import Callback, Logs
from minidl.callbacks.monitoring import monitor_mode, monitored


class LearningRateScheduler(Callback):
    """Set the optimizer's learning rate at the start of each epoch (Keras 3 semantics).

    ``schedule`` is ``schedule(epoch, lr) -> new lr`` or ``schedule(epoch) -> new lr``, epochs
    counted from 0: e.g. ``lambda epoch, lr: lr * 0.9``, or any schedule of
    ``minidl.optim.schedules`` (``StepDecay(0.1, step_size=10)``, ``CosineDecay(0.1, 50)``),
    which then counts epochs instead of steps. Like Keras it tells the two forms apart by
    calling ``schedule(epoch, lr)`` first and ``schedule(epoch)`` if that raises a TypeError.
    The result must be a float (as Keras requires), finite and >= 0. The rate in force is
    recorded in the epoch logs as ``"learning_rate"``. ``verbose=1`` prints
    ``Epoch N: LearningRateScheduler setting learning rate to X.`` at each epoch.
    """

    def __init__(self, schedule: Callable[..., float], verbose: int = 0) -> None:
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be callable, "
                            f"got {type(schedule).__name__}")
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        optimizer = self.model.optimizer
        try:
            lr = self.schedule(epoch, float(optimizer.lr))
        except TypeError:  # a schedule of the epoch only
            lr = self.schedule(epoch)
        if not isinstance(lr, (float, np.floating)):
            raise ValueError(f"The output of the `schedule` function should be a float. "
                             f"Got: {lr}")
        if not math.isfinite(lr) or lr < 0:
            raise ValueError(f"LearningRateScheduler: schedule returned {lr} at epoch {epoch}; "
                             "a learning rate must be finite and >= 0")
        optimizer.lr = float(lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.",
                  flush=True)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.lr)


class ReduceLROnPlateau(Callback):
    r"""Multiply the learning rate by ``factor`` when the monitored quantity has not
    improved for ``patience`` epochs (Keras 3 semantics).

    With ``mode="min"`` an epoch improves when :math:`current < best - |min\_delta|`
    (``"max"``: :math:`current > best + |min\_delta|`); the first epoch always does. After
    ``patience`` epochs without improvement the rate becomes
    :math:`\max(lr \cdot factor, min\_lr)`, unless it is already at ``min_lr``; then the
    next ``cooldown`` epochs do not count. The rate of each epoch (before a reduction) is
    recorded in its logs as ``"learning_rate"``; ``verbose=1`` prints
    ``Epoch N: ReduceLROnPlateau reducing learning rate to X.`` at each reduction.
    """

    def __init__(self, monitor: str = "val_loss", factor: float = 0.1, patience: int = 10,
                 verbose: int = 0, mode: str = "auto", min_delta: float = 1e-4,
                 cooldown: int = 0, min_lr: float = 0.0) -> None:
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. "
                             f"Received factor={factor}")
        for name, value in (("factor", factor), ("patience", patience),
                            ("cooldown", cooldown), ("min_lr", min_lr)):
            if not value >= 0:  # negated so that NaN fails too
                raise ValueError(f"ReduceLROnPlateau: {name} must be >= 0, got {value}")
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.mode = monitor_mode(monitor, mode)
        self.min_delta = abs(min_delta)
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.on_train_begin()

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.best: float | None = None
        self.wait = 0
        self.cooldown_counter = 0

    def in_cooldown(self) -> bool:
        return self.cooldown_counter > 0

    def _improves(self, current: float) -> bool:
        if self.best is None:
            return True
        if self.mode == "min":
            return current < self.best - self.min_delta
        return current > self.best + self.min_delta

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        optimizer = self.model.optimizer
        lr = float(optimizer.lr)
        if logs is not None:
            logs["learning_rate"] = lr
        current = monitored(self, self.monitor, logs)
        if current is None:
            return
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._improves(current):
            self.best = current
            self.wait = 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        if self.wait >= self.patience and lr > self.min_lr:
            new_lr = max(lr * self.factor, self.min_lr)
            optimizer.lr = new_lr
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                      f"{new_lr}.", flush=True)
            self.cooldown_counter = self.cooldown
            self.wait = 0
