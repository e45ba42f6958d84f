"""The rows ``fit`` and ``evaluate`` work through: the sample weights checked, the rows a
validation split leaves to train on, each row's class weight, and the batches with their
weights (``minidl.model.training``)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from minidl.data import batches

ArrayLike = Any
Weights = np.ndarray | None


def check_sample_weight(where: str, sample_weight: ArrayLike | None, rows: int) -> Weights:
    """One finite, non-negative weight per row, as float64; None for None."""
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.dtype.kind not in "fiub" or weights.shape != (rows,):
        raise ValueError(f"{where}: sample_weight must hold one number per row, shape "
                         f"({rows},); got {weights.dtype} of shape {weights.shape}")
    weights = weights.astype(np.float64)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"{where}: sample_weight must be finite and non-negative")
    return weights


def hold_out(validation_split: float,
             *arrays: np.ndarray | None) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """``arrays`` (rows alike; None stays None) split into the rows ``fit`` trains on and
    the last ``validation_split`` of them, which it validates on (Keras' rounding: the
    training rows are rounded down); both parts must hold a row."""
    rows = len(arrays[0])
    n_train = math.floor(rows * (1.0 - validation_split))
    if not 0 < n_train < rows:
        raise ValueError(f"fit: validation_split={validation_split} leaves {n_train} "
                         f"training and {rows - n_train} validation rows out of "
                         f"{rows}; both need at least one")
    return (tuple(None if a is None else a[:n_train] for a in arrays),
            tuple(None if a is None else a[n_train:] for a in arrays))


def class_weights_of_rows(y: np.ndarray, class_weight: dict[int, float]) -> np.ndarray:
    """Each row's weight from its class, as Keras finds the class: the argmax of one-hot or
    probability rows, else the label rounded; a class missing from ``class_weight`` has 1."""
    if not isinstance(class_weight, dict):
        raise TypeError(f"fit: class_weight must be a dict {{class index: weight}}, got "
                        f"{type(class_weight).__name__}")
    labels = y
    if y.ndim > 1:
        labels = np.argmax(y, axis=-1) if y.shape[-1] != 1 else y[..., 0]
    if labels.ndim != 1:
        raise ValueError(f"fit: class_weight needs one class per row, but y has shape {y.shape}")
    labels = np.round(labels).astype(np.int64)
    weights = np.ones(len(labels))
    for label, weight in class_weight.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float, np.number)):
            raise TypeError(f"fit: class_weight[{label!r}] must be a number, got {weight!r}")
        weights[labels == label] = weight
    return weights


def weighted_batches(x: np.ndarray, y: np.ndarray, weights: Weights, batch_size: int,
                     shuffle: bool = False, rng: np.random.Generator | None = None
                     ) -> Iterator[tuple[np.ndarray, np.ndarray, Weights, int, None]]:
    """``(x, y, weights, rows, None)`` batch by batch, in the order ``batches`` gives
    ``(x, y)`` (the same draws of ``rng``, so that weights never change which rows a batch
    holds). The shape of ``DataParallel.shares``, whose batches are this process's share of
    the ``rows`` of each, with the share's loss fraction where this has None."""
    if weights is None:
        for x_batch, y_batch in batches(x, y, batch_size=batch_size, shuffle=shuffle, rng=rng):
            yield x_batch, y_batch, None, len(x_batch), None
        return
    for rows, _ in batches(np.arange(len(x)), batch_size=batch_size, shuffle=shuffle, rng=rng):
        yield x[rows], y[rows], weights[rows], len(rows), None
