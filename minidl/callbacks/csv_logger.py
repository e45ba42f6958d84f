"""A training log as a CSV file: :class:`CSVLogger`."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from minidl.callbacks.base import Callback, Logs
from minidl.io import replace_atomically


class CSVLogger(Callback):
    """Write one row per epoch to a CSV file (Keras 3's columns and formatting).

    The columns are ``epoch`` (from 0) and the keys of the first epoch's logs, sorted; when
    none of them is a validation score, ``val_`` columns for every key follow (``NA`` where
    there is no value), as Keras writes them. Numbers are written as Python prints them
    (``0.6931471805599453``), rows end in ``\\r\\n`` (the csv module's "excel" dialect) and
    ``separator`` separates the cells. With ``append=True`` the rows follow those already in
    the file (the header is written only into an empty or new file); otherwise each ``fit``
    starts the file afresh.

    After each epoch the whole file is replaced atomically (written beside it, synced,
    renamed over it), so a crash never leaves a half-written row, and the previous file
    stays whole until the first epoch of the new run has ended.
    """

    chief_only = True  # in data-parallel training, only rank 0 writes

    def __init__(self, filename: str | os.PathLike, separator: str = ",",
                 append: bool = False) -> None:
        super().__init__()
        self.filename = os.fspath(filename)
        self.sep = separator
        self.append = append
        self.keys: list[str] | None = None
        self._previous = ""
        self._rows = io.StringIO()
        self._writer: csv.DictWriter | None = None

    def on_train_begin(self, logs: Logs | None = None) -> None:
        self._previous = ""
        if self.append and os.path.exists(self.filename):
            with open(self.filename, encoding="utf-8", newline="") as file:
                self._previous = file.read()
        self._rows = io.StringIO()
        self._writer = None
        self.keys = None

    def on_epoch_end(self, epoch: int, logs: Logs | None = None) -> None:
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys += [f"val_{key}" for key in self.keys]
        if self._writer is None:
            self._writer = csv.DictWriter(self._rows, fieldnames=["epoch", *self.keys],
                                          dialect="excel", delimiter=self.sep)
            if not self._previous:
                self._writer.writeheader()
        row = {"epoch": epoch, **{key: _cell(logs.get(key, "NA")) for key in self.keys}}
        self._writer.writerow(row)
        text = self._previous + self._rows.getvalue()
        replace_atomically(Path(self.filename).absolute(),
                           lambda file: file.write(text.encode("utf-8")))


def _cell(value: Any) -> Any:
    """A value as Keras writes it: a sequence as ``"[a, b]"`` (quotes included)."""
    if isinstance(value, str) or (isinstance(value, np.ndarray) and value.ndim == 0):
        return value
    if isinstance(value, Iterable):
        return f'"[{", ".join(map(str, value))}]"'
    return value
