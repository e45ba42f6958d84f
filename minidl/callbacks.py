"""Callbacks: code that ``Sequential.fit`` calls at fixed points of training (Keras' protocol).

``fit`` calls, in order::

    set_model(model); set_params({"epochs": E, "steps": S, "verbose": v})
    on_train_begin(logs)
    for each epoch:   on_epoch_begin(epoch, logs)
        for each batch:   on_batch_end(batch, logs)      # logs: {"loss": batch loss, "size": rows}
        on_epoch_end(epoch, logs)                        # logs: {"loss", metrics, "val_loss", ...}
    on_train_end(logs)

A callback stops training by setting ``self.model.stop_training = True``. This module sits on
the ground floor: it knows the model only through that protocol (``get_weights``,
``set_weights``, ``save``, ``optimizer.lr``, ``stop_training``).
"""

from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

Logs = dict[str, float]

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


class Callback:
    """Base class: every hook does nothing, so a subclass overrides only what it needs."""

    def __init__(self) -> None:
        self.model: Any = None
        self.params: dict[str, Any] = {}

    def set_model(self, model: Any) -> None:
        self.model = model

    def set_params(self, params: dict[str, Any]) -> None:
        self.params = params

    def on_train_begin(self, logs: Logs | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        pass

    def on_train_end(self, logs: Logs | None = None) -> None:
        pass


class CallbackList:
    """Calls each hook of ``callbacks`` in order (Keras' ``CallbackList``): the model calls
    one list, never each callback.

    ``on_batch_end`` runs every batch, so only the callbacks that override it are called:
    calling every inherited no-op would cost a small model several percent of its step.
    """

    def __init__(self, callbacks: list[Callback], model: Any, params: dict[str, Any]) -> None:
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)
        inherited = Callback.on_batch_end
        self._batch_callbacks = [c for c in self.callbacks
                                 if getattr(c.on_batch_end, "__func__", None) is not inherited]

    def on_train_begin(self, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_begin(logs)

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_begin(epoch, logs)

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        for callback in self._batch_callbacks:
            callback.on_batch_end(batch, logs)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_epoch_end(epoch, logs)

    def on_train_end(self, logs: Logs | None = None) -> None:
        for callback in self.callbacks:
            callback.on_train_end(logs)


class History(Callback):
    """Records every epoch's logs: ``history["loss"][i]`` is the training loss of epoch ``i``.

    ``epoch`` lists the epoch numbers (they start at ``initial_epoch`` when training resumes).
    """

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, list[float]] = {}
        self.epoch: list[int] = []

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)

    def plot(self, keys: list[str] | None = None, restored_epoch: int | None = None) -> Any:
        """Draw the curves and return the matplotlib ``Figure``.

        One panel per quantity (loss, then each metric), training and validation curves
        together, over epochs numbered from 1 as the progress bar counts them. ``keys``
        limits the panels to those names (without ``val_``). ``restored_epoch`` (an entry of
        ``epoch``: ``EarlyStopping.best_epoch`` with ``restore_best_weights``) draws a dashed
        line at the epoch whose weights the model kept.
        """
        try:
            import matplotlib.pyplot as plt
        except ImportError as error:
            raise ImportError("History.plot needs matplotlib: "
                              "pip install 'minidl[plot]'") from error
        if not self.history:
            raise ValueError("History.plot: the history is empty (call fit first)")
        names = [k for k in self.history if not k.startswith("val_") and k != "lr"]
        if keys is not None:
            unknown = [k for k in keys if k not in names]
            if unknown:
                raise ValueError(f"History.plot: unknown keys {unknown}; recorded: {names}")
            names = list(keys)
        if restored_epoch is not None and restored_epoch not in self.epoch:
            raise ValueError(f"History.plot: restored_epoch {restored_epoch} was not recorded; "
                             f"recorded epochs: {self.epoch[0]}..{self.epoch[-1]}")
        epochs = [epoch + 1 for epoch in self.epoch]
        figure, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.5), squeeze=False)
        for axis, name in zip(axes[0], names, strict=True):
            axis.plot(epochs, self.history[name], label="train")
            if "val_" + name in self.history:
                axis.plot(epochs, self.history["val_" + name], label="validation")
            if restored_epoch is not None:
                axis.axvline(restored_epoch + 1, color="grey", linestyle="--",
                             label=f"restored (epoch {restored_epoch + 1})")
            axis.xaxis.get_major_locator().set_params(integer=True)
            axis.set_xlabel("epoch")
            axis.set_title(name)
            axis.legend()
        figure.tight_layout()
        return figure


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


def _format_value(value: float) -> str:
    # four decimals, as Keras prints them, or scientific notation where they would be all zeros
    return f"{value:.4e}" if 0 < abs(value) < 1e-3 else f"{value:.4f}"


def _redraws_in_place(stream: Any) -> bool:
    """Whether a carriage return on ``stream`` redraws the line: a terminal or a Jupyter
    output (ipykernel's streams say they are not a terminal, but a notebook redraws)."""
    return stream.isatty() or type(stream).__module__.startswith("ipykernel.")


def _terminal_size(stream: Any) -> tuple[int, int]:
    """``(columns, lines)`` of the terminal behind ``stream``, 80 × 24 where it tells none or
    reports 0 (as the pseudo-terminals of some containers and CI runners do)."""
    try:
        columns, lines = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no file descriptor, or not a terminal
        columns, lines = 0, 0
    return columns or 80, lines or 24


class ProgressBar(Callback):
    """Keras-style progress on stderr: during an epoch a tqdm bar with the running loss, at
    its end one line with every logged value::

        Epoch 3/10 - 0.21s - loss: 0.4123 - accuracy: 0.9012 - val_loss: 0.4500

    The bar fits the terminal (80 columns if the terminal tells none) and is erased when the
    epoch ends, so that the line is written whole: a long one wraps, it is never cut. Where
    stderr is not redrawn in place (a file, a pipe, a CI log) there is no bar, only that one
    line per epoch.

    Plain ``tqdm`` (not ``tqdm.auto``) draws text, which works the same in a terminal and in a
    notebook and needs no widget library. ``sys.stderr`` is looked up at each epoch, so a
    redirection made after the callback was created is followed.
    """

    def __init__(self) -> None:
        super().__init__()
        self.bar: Any = None
        self._stream: Any = None
        self._started = 0.0
        self._loss_sum = 0.0
        self._rows = 0

    def on_epoch_begin(self, epoch: int, logs: Logs | None = None) -> None:
        from tqdm import tqdm

        self._stream = sys.stderr
        self._started = time.monotonic()
        self._loss_sum, self._rows = 0.0, 0
        if _redraws_in_place(self._stream):
            # the size is given, not left to tqdm, which takes a reported 0 for -1 and then
            # hides the bar; one column short of the edge, as tqdm does, because a line that
            # fills the last column makes some terminals wrap
            columns, lines = _terminal_size(self._stream)
            self.bar = tqdm(total=self.params.get("steps"), desc=self._epoch_name(epoch),
                            unit="batch", file=self._stream, ncols=columns - 1, nrows=lines,
                            leave=False)

    def on_batch_end(self, batch: int, logs: Logs | None = None) -> None:
        if self.bar is None:
            return
        logs = logs or {}
        size = int(logs.get("size", 1))
        self._loss_sum += logs.get("loss", 0.0) * size
        self._rows += size
        self.bar.update(1)
        # refreshing the text on every batch would cost more than a small model's step
        if batch % 10 == 0:
            running_loss = self._loss_sum / max(self._rows, 1)
            self.bar.set_postfix_str(f"loss: {_format_value(running_loss)}", refresh=False)

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        if self.bar is not None:
            self.bar.close()  # erases the bar: the line below takes its place
            self.bar = None
        seconds = time.monotonic() - self._started
        values = [f"{key}: {_format_value(value)}" for key, value in (logs or {}).items()]
        line = " - ".join([self._epoch_name(epoch), f"{seconds:.2f}s", *values])
        self._stream.write(line + "\n")
        self._stream.flush()

    def on_train_end(self, logs: Logs | None = None) -> None:
        if self.bar is not None:  # training stopped mid-epoch (error or KeyboardInterrupt)
            self.bar.leave = True  # keep the bar where it stopped, above the traceback
            self.bar.close()
            self.bar = None

    def _epoch_name(self, epoch: int) -> str:
        return f"Epoch {epoch + 1}/{self.params.get('epochs', '?')}"


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


class LambdaCallback(Callback):
    """A callback made of plain functions, for one-off hooks in scripts and notebooks.

    ``LambdaCallback(on_epoch_end=lambda epoch, logs: print(epoch, logs["loss"]))``
    """

    def __init__(self, on_train_begin: Callable | None = None,
                 on_epoch_begin: Callable | None = None, on_batch_end: Callable | None = None,
                 on_epoch_end: Callable | None = None,
                 on_train_end: Callable | None = None) -> None:
        super().__init__()
        hooks = {"on_train_begin": on_train_begin, "on_epoch_begin": on_epoch_begin,
                 "on_batch_end": on_batch_end, "on_epoch_end": on_epoch_end,
                 "on_train_end": on_train_end}
        for name, function in hooks.items():
            if function is not None:
                setattr(self, name, function)
