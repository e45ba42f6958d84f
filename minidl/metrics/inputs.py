"""Input checking shared by the metrics: arrays, class labels, indicator matrices, weights.

Each error starts with the metric's name and names the argument, so a wrong call inside
``fit`` still points at the array that is wrong.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def numeric(metric: str, name: str, value: ArrayLike) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{metric}: {name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"{metric}: {name} must have one row per sample, got a scalar")
    return array


def is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    return (isinstance(value, (int, float, np.integer, np.floating))
            and not isinstance(value, bool) and bool(np.isfinite(value)))


def check_rows(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{metric}: y_true has {len(y_true)} rows but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError(f"{metric}: y_true and y_pred are empty")


def check_columns(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    """Two (N, C) classification arrays must agree on the number of classes."""
    if (y_true.ndim == 2 and y_pred.ndim == 2 and y_true.shape[1] > 1 and y_pred.shape[1] > 1
            and y_true.shape[1] != y_pred.shape[1]):
        raise ValueError(f"{metric}: y_true has {y_true.shape[1]} columns (classes) "
                         f"but y_pred has {y_pred.shape[1]}")


def is_scores(array: np.ndarray) -> bool:
    """True for (N, C) rows of scores or one-hot rows, C > 1."""
    return array.ndim == 2 and array.shape[1] > 1


def squeeze_column(metric: str, name: str, array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{metric}: {name} must be {what}, got shape {array.shape}")
    return array


def true_labels(metric: str, y_true: np.ndarray) -> np.ndarray:
    """Class indices (N,) int64 from indices (N,) / (N, 1) or one-hot rows (N, C)."""
    if is_scores(y_true):
        return np.argmax(y_true, axis=1)
    y_true = squeeze_column(metric, "y_true", y_true,
                            "class indices of shape (N,) or one-hot rows of shape (N, C)")
    if y_true.dtype.kind == "f" and not np.all(y_true == np.round(y_true)):
        raise ValueError(f"{metric}: y_true must hold whole class indices, "
                         f"got values such as {y_true[y_true != np.round(y_true)][0]!r}")
    if y_true.min() < 0:
        raise ValueError(f"{metric}: y_true holds the negative class {y_true.min()}")
    return y_true.astype(np.int64)


def pred_labels(metric: str, y_pred: np.ndarray) -> np.ndarray:
    """Predicted classes (N,) int64 from scores (N, C), labels (N,) or probabilities (N,)."""
    if is_scores(y_pred):
        return np.argmax(y_pred, axis=1)
    y_pred = squeeze_column(metric, "y_pred", y_pred,
                            "scores of shape (N, C) or labels/probabilities of shape (N,)")
    if y_pred.dtype.kind == "f":
        return (y_pred > 0.5).astype(np.int64)
    if y_pred.min() < 0:
        raise ValueError(f"{metric}: y_pred holds the negative class {y_pred.min()}")
    return y_pred.astype(np.int64)


def check_classes(metric: str, labels: np.ndarray, columns: int) -> None:
    if labels.max() >= columns:
        raise ValueError(f"{metric}: y_true holds class {labels.max()} "
                         f"but y_pred has {columns} columns")


def labels(metric: str, y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray, int]:
    """(true labels, predicted labels, number of score columns or 0) for classification."""
    y_true = numeric(metric, "y_true", y_true)
    y_pred = numeric(metric, "y_pred", y_pred)
    check_rows(metric, y_true, y_pred)
    check_columns(metric, y_true, y_pred)
    columns = max(y.shape[1] if is_scores(y) else 0 for y in (y_true, y_pred))
    true = true_labels(metric, y_true)
    if columns:
        check_classes(metric, true, columns)
    return true, pred_labels(metric, y_pred), columns


def indicator(metric: str, y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """float64 (N, C) targets and scores for the multi-label metrics (F-beta, AUC).

    (N,) counts as (N, 1); class indices of shape (N,) or (N, 1) against C > 1 score columns
    are one-hot encoded, so sparse labels work too.
    """
    y_true = numeric(metric, "y_true", y_true)
    y_pred = numeric(metric, "y_pred", y_pred)
    check_rows(metric, y_true, y_pred)
    scores = y_pred[:, None] if y_pred.ndim == 1 else y_pred
    if scores.ndim != 2:
        raise ValueError(f"{metric}: y_pred must have shape (N,) or (N, C), "
                         f"got shape {y_pred.shape}")
    columns = scores.shape[1]
    if columns > 1 and (y_true.ndim == 1 or y_true.shape[1:] == (1,)):
        classes = true_labels(metric, y_true)
        check_classes(metric, classes, columns)
        return np.eye(columns)[classes], scores.astype(np.float64)
    targets = y_true[:, None] if y_true.ndim == 1 else y_true
    if targets.shape != scores.shape:
        raise ValueError(f"{metric}: y_true has shape {y_true.shape} but y_pred has shape "
                         f"{y_pred.shape}; give one column per label, or class indices")
    return targets.astype(np.float64), scores.astype(np.float64)


def regression_pair(metric: str, y_true: ArrayLike,
                    y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """float64 arrays of shape (N, D); (N,) counts as (N, 1) so a flat target never broadcasts."""
    y_true = numeric(metric, "y_true", y_true)
    y_pred = numeric(metric, "y_pred", y_pred)
    check_rows(metric, y_true, y_pred)
    true_2d = y_true.reshape(len(y_true), -1).astype(np.float64)
    pred_2d = y_pred.reshape(len(y_pred), -1).astype(np.float64)
    if true_2d.shape != pred_2d.shape:
        raise ValueError(f"{metric}: y_true has shape {y_true.shape} but y_pred has shape "
                         f"{y_pred.shape}; they must match, (N,) and (N, 1) counting as the same")
    return true_2d, pred_2d


def sample_weights(metric: str, sample_weight: ArrayLike | None, rows: int,
                   columns: int = 1) -> np.ndarray | None:
    """float64 weights of shape (rows,), or (rows, columns) when ``columns > 1``, or None.

    Keras' broadcasting: a number weighs every sample alike, and (N,) or (N, 1) gives one
    weight per sample; with ``columns > 1`` (the element-wise metrics: binary accuracy, R2),
    (N, columns) weighs each element and (1, columns) each column.
    """
    if sample_weight is None:
        return None
    weights = np.asarray(sample_weight)
    if weights.dtype.kind not in "biuf":
        raise TypeError(f"{metric}: sample_weight must be numeric, got dtype {weights.dtype}")
    allowed = [(), (rows,), (rows, 1)] + ([(rows, columns), (1, columns)] if columns > 1 else [])
    if weights.shape not in allowed:
        shapes = " or ".join(str(shape) for shape in allowed[1:])
        raise ValueError(f"{metric}: sample_weight must be a number or have shape {shapes} "
                         f"(one weight per sample), got shape {weights.shape}")
    if not np.all(np.isfinite(weights)):
        raise ValueError(f"{metric}: sample_weight holds a non-finite value")
    weights = weights.astype(np.float64)
    if columns > 1:
        return np.broadcast_to(weights.reshape(-1, 1) if weights.ndim == 1 else weights,
                               (rows, columns))
    return np.broadcast_to(weights.reshape(-1), (rows,))


def per_sample(values: np.ndarray) -> np.ndarray:
    """The mean over every axis but the first: Keras reduces to one value per sample before
    it applies the sample weights."""
    return values.reshape(len(values), -1).mean(axis=1)


def weighted_mean(values: np.ndarray, weights: np.ndarray | None) -> float:
    r"""Keras' ``Mean`` of per-sample values: :math:`\sum_i w_i v_i / \sum_i w_i`, or 0 when
    the weights sum to 0 (Keras' ``divide_no_nan``)."""
    if weights is None:
        return float(np.mean(values))
    total = weights.sum()
    return float(np.dot(weights, values) / total) if total != 0 else 0.0


def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # 0/0 (a class never predicted, or never present) counts as 0, without a warning
    numerator = np.asarray(numerator, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                     where=denominator > 0)
