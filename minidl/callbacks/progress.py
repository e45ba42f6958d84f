"""Progress on stderr: :class:`ProgressBar`, and the helpers that ask the stream whether it
redraws in place and how wide the terminal is.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

import numpy as np

from minidl.callbacks.base import Callback, Logs


def _format_value(value: float | np.ndarray) -> str:
    # four decimals, as Keras prints them, or scientific notation where they would be all
    # zeros; a metric with one value per class prints them all
    if isinstance(value, np.ndarray):
        return "[" + " ".join(_format_value(float(v)) for v in value.ravel()) + "]"
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

    chief_only = True  # in data-parallel training, only rank 0 shows progress

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
