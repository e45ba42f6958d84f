"""Callbacks that watch one quantity of the epoch logs: :class:`EarlyStopping` and
:class:`ModelCheckpoint`, with :func:`monitor_mode`, which tells whether that quantity gets
better going down or going up.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

from minidl.callbacks.base import Callback, Logs

# Keras' "auto" mode: quantities that get better as they go down, and scores that get better
# as they go up. Anything else needs an explicit mode, because guessing wrong would silently
# stop training at the worst epoch.
_MINIMISED = {"loss", "mse", "mae", "relative_error", "mean_squared_error",
              "mean_absolute_error", "error", "crossentropy", "cross_entropy"}
_MAXIMISED = {"accuracy", "acc", "top_k_accuracy", "precision", "recall", "f1", "r2", "auc"}


def monitor_mode(monitor: str, mode: str) -> str:
    """Resolve ``mode`` ("min", "max" or "auto") for the monitored quantity ``monitor``."""
    if mode in ("min", "max"):
        return mode
    if mode != "auto":
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    name = monitor.removeprefix("val_")
    if name in _MINIMISED or name.endswith("_loss"):
        return "min"
    if name in _MAXIMISED:
        return "max"
    raise ValueError(
        f"cannot tell whether {monitor!r} should go up or down: pass mode='min' or mode='max'")


def _monitored(owner: Callback, monitor: str, logs: Logs | None) -> float | None:
    """The monitored value, or None with a warning that lists what the logs do have."""
    logs = logs or {}
    if monitor not in logs:
        warnings.warn(f"{type(owner).__name__}: {monitor!r} is not in the logs; available: "
                      f"{sorted(logs)}", RuntimeWarning, stacklevel=3)
        return None
    return logs[monitor]


class EarlyStopping(Callback):
    r"""Stop training when a monitored quantity has stopped improving (Keras 3 semantics).

    With ``mode="min"`` an epoch improves when :math:`current < best - |min\_delta|`
    (``"max"``: :math:`current > best + |min\_delta|`). After ``patience`` epochs without
    improvement training stops; ``stopped_epoch`` is that epoch and ``best_epoch`` the best
    one. With ``baseline``, the waiting counter only resets on epochs that also beat the
    baseline. Epochs before ``start_from_epoch`` are ignored (a warm-up). With
    ``restore_best_weights=True`` the best epoch's weights are put back when training ends,
    whether it stopped early or ran out of epochs.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__()
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.mode = monitor_mode(monitor, mode)
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.on_train_begin()

    def _improves(self, current: float, reference: float) -> bool:
        if self.mode == "min":
            return current < reference - self.min_delta
        return current > reference + self.min_delta

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.wait = 0
        self.stopped_epoch = 0
        self.best_epoch = 0
        self.best_weights: list[np.ndarray] | None = None
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        current = _monitored(self, self.monitor, logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # even an epoch that never improves leaves something to restore
            self.best_weights = self.model.get_weights()
        self.wait += 1
        if self._improves(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._improves(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.restore_best_weights and self.best_weights is not None:
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (with optimizer state) at the end of every epoch, or only the best ones.

    ``path`` may contain ``{epoch}`` (numbered from 1, like Keras' file names) and any key of
    the epoch's logs, e.g. ``"ckpt/epoch{epoch:03d}-{val_loss:.3f}.npz"``. The file also holds
    the epoch counter and the shuffling RNG state, so ``load_model(path)`` followed by
    ``fit(..., initial_epoch=k)`` continues exactly where this run was.
    """

    def __init__(self, path: str | os.PathLike, monitor: str = "val_loss",
                 save_best_only: bool = False, mode: str = "auto") -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = monitor_mode(monitor, mode) if save_best_only else mode
        # kept across fit calls (as in Keras): a second fit must not overwrite the best file
        # with its first, worse, epoch
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self.save_best_only:
            current = _monitored(self, self.monitor, logs)
            if current is None:
                return
            better = current < self.best if self.mode == "min" else current > self.best
            if not better:
                return
            self.best = current
        self.model.save(self.path.format(epoch=epoch + 1, **logs))
