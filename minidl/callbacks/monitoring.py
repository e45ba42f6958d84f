"""Callbacks that watch the logs: :class:`EarlyStopping` (one quantity of the epoch logs)
and :class:`TerminateOnNaN` (the loss of every batch), with :func:`monitor_mode`, which
tells whether a quantity gets better going down or going up.

What ``verbose=1`` prints goes to stdout with Keras 3's words; the progress bar is on stderr.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from minidl.callbacks.base import Callback, Logs

# Keras' "auto" mode: quantities that get better as they go down, and scores that get better
# as they go up. Anything else needs an explicit mode, because guessing wrong would silently
# stop training at the worst epoch.
_MINIMISED = {"loss", "mse", "mae", "mape", "msle", "relative_error", "mean_squared_error",
              "mean_absolute_error", "mean_absolute_percentage_error",
              "mean_squared_logarithmic_error", "error", "crossentropy", "cross_entropy"}
_MAXIMISED = {"accuracy", "acc", "binary_accuracy", "categorical_accuracy",
              "sparse_categorical_accuracy", "top_k_accuracy", "top_k_categorical_accuracy",
              "sparse_top_k_categorical_accuracy", "precision", "recall", "f1", "f1_score",
              "fbeta_score", "f_beta_score", "r2", "r2_score", "auc"}


def checked_mode(mode: str) -> str:
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"mode must be 'auto', 'min' or 'max', got {mode!r}")
    return mode


def monitor_mode(monitor: str, mode: str) -> str:
    """Resolve ``mode`` ("min", "max" or "auto") for the monitored quantity ``monitor``."""
    if checked_mode(mode) != "auto":
        return mode
    name = monitor.removeprefix("val_").lower()  # Keras' "MSE" is "mse"
    if name in _MINIMISED or name.endswith("_loss"):
        return "min"
    if name in _MAXIMISED:
        return "max"
    raise ValueError(
        f"cannot tell whether {monitor!r} should go up or down: pass mode='min' or mode='max'")


def monitored(owner: Callback, monitor: str, logs: Logs | None) -> float | None:
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
    one (with ``verbose=1`` it prints ``Epoch N: early stopping`` when training ends). With
    ``baseline``, the waiting counter only resets on epochs that also beat the baseline.
    Epochs before ``start_from_epoch`` are ignored (a warm-up). With
    ``restore_best_weights=True`` the best epoch's weights are put back when training ends,
    whether it stopped early or ran out of epochs.
    """

    def __init__(self, monitor: str = "val_loss", min_delta: float = 0.0, patience: int = 0,
                 verbose: int = 0, mode: str = "auto", baseline: float | None = None,
                 restore_best_weights: bool = False, start_from_epoch: int = 0) -> None:
        super().__init__()
        if patience < 0:
            raise ValueError(f"EarlyStopping: patience must be >= 0, got {patience}")
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
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
        current = monitored(self, self.monitor, logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # even an epoch that never improves leaves something to restore
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
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
        if self.stopped_epoch > 0 and self.verbose > 0:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping", flush=True)
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose > 0:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.", flush=True)
            self.model.set_weights(self.best_weights)


class TerminateOnNaN(Callback):
    """Stop training at the first batch whose loss is NaN or infinite (Keras 3.15).

    By default it prints ``Batch N: Invalid loss, terminating training`` (always, as Keras
    does) and sets ``model.stop_training``: ``fit`` then skips that batch's step, ends
    quietly and keeps the weights of the last finite step, with every ``on_train_end``
    run. With ``raise_error=True`` it raises a RuntimeError instead, which ends ``fit``
    with that error (a ``BackupAndRestore`` backup is then kept for the next run).
    """

    def __init__(self, raise_error: bool = False) -> None:
        super().__init__()
        self.raise_error = raise_error

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                               f"{loss}. Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training", flush=True)
        self.model.stop_training = True
