"""The command line's files: arrays from ``.npy``/``.csv``, labelled data from ``.npz``/``.csv``,
data sets by name; every problem a ``UsageError`` (one line, exit code 2)."""

from __future__ import annotations

import csv
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from minidl import data as data_module


class UsageError(Exception):
    """A problem with the command's arguments or files: reported in one line, exit code 2."""


# ---------------------------------------------------------------------------- data files

def read_array(path: str) -> np.ndarray:
    """A 2-D float array from ``.npy`` (never unpickled) or ``.csv`` (numbers only)."""
    suffix = Path(path).suffix.lower()
    if not os.path.isfile(path):
        raise UsageError(f"no such file: {path}")
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as error:
            raise UsageError(f"{path}: not a plain numeric .npy file ({error})") from error
    elif suffix == ".csv":
        array = _read_csv(path)
    else:
        raise UsageError(f"{path}: expected a .npy or .csv file, got {suffix or 'no extension'}")
    if array.dtype.kind not in "fiub":
        raise UsageError(f"{path}: expected numbers, got dtype {array.dtype}")
    return array if array.ndim > 1 else array.reshape(len(array), -1)


def _read_csv(path: str) -> np.ndarray:
    """Numbers only, one row per line; a first line that is not numbers is a header. Blank
    lines are skipped; errors name the file's own line numbers."""
    # utf-8-sig: the byte-order mark that spreadsheet programs write is not part of the data
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.reader(file)
        lines = [(reader.line_num, row) for row in reader if row]
    if lines and not _is_number(lines[0][1][0]):
        lines = lines[1:]  # a header line
    if not lines:
        raise UsageError(f"{path}: the file holds no rows of numbers")
    width = len(lines[0][1])
    values = []
    for number, row in lines:
        if len(row) != width:
            raise UsageError(f"{path}: line {number} has {len(row)} columns, expected {width} "
                             f"(as on line {lines[0][0]})")
        for column, text in enumerate(row, start=1):
            if not _is_number(text):
                raise UsageError(f"{path}: line {number}, column {column}: {text!r} is not "
                                 f"a number")
        values.append(row)
    return np.array(values, dtype=np.float64)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_array(path: str | None, array: np.ndarray) -> None:
    """Write ``array`` to ``.npy`` or ``.csv`` by extension; CSV on stdout when ``path`` is None."""
    if path is None:
        np.savetxt(sys.stdout, np.atleast_2d(array), delimiter=",", fmt="%.8g")
        return
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        np.save(path, array, allow_pickle=False)
    elif suffix == ".csv":
        np.savetxt(path, np.atleast_2d(array), delimiter=",", fmt="%.8g")
    else:
        raise UsageError(f"{path}: the output must end in .npy or .csv")


def read_labelled(path: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from a ``.npz`` holding arrays x and y, or a ``.csv`` whose last column is y."""
    if Path(path).suffix.lower() == ".npz":
        if not os.path.isfile(path):
            raise UsageError(f"no such file: {path}")
        try:
            with np.load(path, allow_pickle=False) as arrays:
                missing = [key for key in ("x", "y") if key not in arrays.files]
                if missing:
                    raise UsageError(f"{path}: missing array(s) {missing}; "
                                     f"found {arrays.files}")
                return arrays["x"], arrays["y"]
        except ValueError as error:
            raise UsageError(f"{path}: {error}") from error
    table = read_array(path)
    if table.shape[1] < 2:
        raise UsageError(f"{path}: need feature columns and a last label column")
    x, y = table[:, :-1], table[:, -1]
    if np.all(y == np.round(y)):
        y = y.astype(np.int64)  # class labels
    return x, y


# ---------------------------------------------------------------------------- data sets by name

def load_dataset(spec: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` for a training config's "data" entry.

    ``{"name": "digits"}`` (scikit-learn's bundled digits, no download), a synthetic set from
    ``minidl.data`` (``"linear"``, ``"spirals"``, ``"moons"``, ``"blobs"``, ``"xor"``, with its
    arguments under ``"params"``), or ``{"path": "train.npz" | "train.csv"}``.
    """
    if "path" in spec:
        return read_labelled(str(spec["path"]))
    name = spec.get("name")
    params = spec.get("params", {})
    if name == "digits":
        try:
            from sklearn.datasets import load_digits
        except ImportError as error:
            raise UsageError("data set 'digits' needs scikit-learn: "
                             "pip install scikit-learn") from error
        digits = load_digits()
        return digits.data.astype(np.float32), digits.target.astype(np.int64)
    makers = {"linear": data_module.make_linear, "spirals": data_module.make_spirals,
              "moons": data_module.make_moons, "blobs": data_module.make_blobs,
              "xor": data_module.make_xor}
    if name not in makers:
        raise UsageError(f"unknown data set {name!r}; known: digits, {', '.join(makers)}, "
                         f"or give a 'path'")
    return makers[name](**params)
