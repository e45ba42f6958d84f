r"""Accuracy in the forms Keras names: binary, categorical, sparse, top-k; and ``accuracy``, which
picks one of them from the shapes, as ``keras.Model.compile(metrics=["accuracy"])`` does.

Each metric is a per-sample match (1 or 0; a row's mean for multi-label binary accuracy),
averaged with Keras' sample weighting: :math:`\sum_i w_i m_i / \sum_i w_i`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from minidl.metrics.inputs import (
    check_classes,
    check_columns,
    check_rows,
    is_int,
    is_real,
    is_scores,
    labels,
    numeric,
    per_sample,
    sample_weights,
    true_labels,
    weighted_mean,
)


def _drop_unit_axis(array: np.ndarray) -> np.ndarray:
    return array[..., 0] if array.ndim > 1 and array.shape[-1] == 1 else array


def _binary_matches(metric: str, y_true: np.ndarray, y_pred: np.ndarray,
                    threshold: float) -> np.ndarray:
    """(N, K) element matches, K the product of the non-batch axes."""
    if not is_real(threshold):
        raise ValueError(f"{metric}: threshold must be a number, got {threshold!r}")
    check_rows(metric, y_true, y_pred)
    # Keras squeezes a trailing axis of size 1, so (N,) targets meet (N, 1) outputs
    targets, scores = _drop_unit_axis(y_true), _drop_unit_axis(y_pred)
    if targets.shape != scores.shape:
        raise ValueError(f"{metric}: y_true has shape {y_true.shape} but y_pred has shape "
                         f"{y_pred.shape}; binary accuracy compares them element by element")
    return (targets == (scores > threshold)).astype(np.float64).reshape(len(targets), -1)


def _element_mean(metric: str, matches: np.ndarray, sample_weight: ArrayLike | None) -> float:
    """Keras' weighted mean of (N, K) element values: weights per sample or per element."""
    weights = sample_weights(metric, sample_weight, *matches.shape)
    if weights is not None and weights.ndim == 2:
        return weighted_mean(matches.ravel(), weights.ravel())
    return weighted_mean(per_sample(matches), weights)


def _sparse_matches(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    if y_pred.ndim != 2:
        raise ValueError(f"{metric}: y_pred must be scores of shape (N, C), "
                         f"got shape {y_pred.shape}")
    check_rows(metric, y_true, y_pred)
    if is_scores(y_true):
        raise ValueError(f"{metric}: y_true must be class indices of shape (N,) or (N, 1), "
                         f"got one-hot rows of shape {y_true.shape}; "
                         f"use categorical_accuracy for those")
    classes = true_labels(metric, y_true)
    check_classes(metric, classes, y_pred.shape[1])
    return (classes == np.argmax(y_pred, axis=1)).astype(np.float64)


def _categorical_matches(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    check_rows(metric, y_true, y_pred)
    check_columns(metric, y_true, y_pred)
    if y_true.ndim != 2 or y_true.shape != y_pred.shape:
        raise ValueError(f"{metric}: y_true must be one-hot rows of the shape of y_pred "
                         f"{y_pred.shape}, got shape {y_true.shape}; "
                         f"use sparse_categorical_accuracy for class indices")
    return (np.argmax(y_true, axis=1) == np.argmax(y_pred, axis=1)).astype(np.float64)


def accuracy(y_true: ArrayLike, y_pred: ArrayLike, threshold: float = 0.5,
             sample_weight: ArrayLike | None = None) -> float:
    r"""Fraction of samples whose predicted class is the true class.

    .. math:: \mathrm{accuracy} = \frac{\sum_i w_i [\hat{y}_i = y_i]}{\sum_i w_i}

    The choice Keras makes for ``compile(metrics=["accuracy"])`` (or ``"acc"``), from the
    shapes: ``y_pred`` of floating scores (N, 1) or (N,) is :func:`binary_accuracy`
    (``p > threshold`` is class 1); scores (N, C), C > 1, are :func:`categorical_accuracy`
    against one-hot ``y_true`` (N, C) and :func:`sparse_categorical_accuracy` against class
    indices (N,) or (N, 1). Integer ``y_pred`` of shape (N,) or (N, 1) holds predicted labels,
    compared with the true ones as they are (a minidl addition: Keras would threshold them).
    """
    y_true_array = numeric("accuracy", "y_true", y_true)
    y_pred_array = numeric("accuracy", "y_pred", y_pred)
    if is_scores(y_pred_array):
        pick = _categorical_matches if is_scores(y_true_array) else _sparse_matches
        matches = pick("accuracy", y_true_array, y_pred_array)
    elif y_pred_array.dtype.kind == "f" and not is_scores(y_true_array):
        matches = _binary_matches("accuracy", y_true_array, y_pred_array, threshold)
    else:
        true, predicted, _ = labels("accuracy", y_true_array, y_pred_array)
        matches = (true == predicted).astype(np.float64)
    return _element_mean("accuracy", matches.reshape(len(matches), -1), sample_weight)


def binary_accuracy(y_true: ArrayLike, y_pred: ArrayLike, threshold: float = 0.5,
                    sample_weight: ArrayLike | None = None) -> float:
    r"""Fraction of elements whose thresholded prediction equals the target (Keras'
    ``BinaryAccuracy``).

    .. math:: m_i = \frac{1}{C} \sum_c [\, y_{ic} = [\hat{y}_{ic} > t] \,], \qquad
        \mathrm{binary\_accuracy} = \frac{\sum_i w_i m_i}{\sum_i w_i}

    ``y_true`` and ``y_pred`` have the same shape, (N,) and (N, 1) counting as the same; with
    several columns (multi-label) each sample scores the mean over its columns. ``threshold``
    :math:`t` defaults to 0.5, and a prediction equal to it is class 0, as in Keras.
    ``sample_weight`` may also weigh each element, (N, C), or each column, (1, C):
    then the metric is :math:`\sum_{ic} w_{ic} m_{ic} / \sum_{ic} w_{ic}`.
    """
    y_true_array = numeric("binary_accuracy", "y_true", y_true)
    y_pred_array = numeric("binary_accuracy", "y_pred", y_pred)
    return _element_mean("binary_accuracy", _binary_matches("binary_accuracy", y_true_array,
                                                            y_pred_array, threshold),
                         sample_weight)


def categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike,
                         sample_weight: ArrayLike | None = None) -> float:
    r"""Fraction of samples whose highest score is the hot class of the one-hot ``y_true``
    (Keras' ``CategoricalAccuracy``).

    .. math:: \frac{\sum_i w_i [\arg\max_c \hat{y}_{ic} = \arg\max_c y_{ic}]}{\sum_i w_i}

    ``y_true`` and ``y_pred`` have shape (N, C); ties go to the lowest class index.
    """
    y_true_array = numeric("categorical_accuracy", "y_true", y_true)
    y_pred_array = numeric("categorical_accuracy", "y_pred", y_pred)
    weights = sample_weights("categorical_accuracy", sample_weight, len(y_true_array))
    return weighted_mean(_categorical_matches("categorical_accuracy", y_true_array,
                                              y_pred_array), weights)


def sparse_categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike,
                                sample_weight: ArrayLike | None = None) -> float:
    r"""Fraction of samples whose highest score is the true class index (Keras'
    ``SparseCategoricalAccuracy``).

    .. math:: \frac{\sum_i w_i [\arg\max_c \hat{y}_{ic} = y_i]}{\sum_i w_i}

    ``y_true`` holds class indices of shape (N,) or (N, 1); ``y_pred`` scores (N, C); ties go
    to the lowest class index.
    """
    y_true_array = numeric("sparse_categorical_accuracy", "y_true", y_true)
    y_pred_array = numeric("sparse_categorical_accuracy", "y_pred", y_pred)
    weights = sample_weights("sparse_categorical_accuracy", sample_weight, len(y_true_array))
    return weighted_mean(_sparse_matches("sparse_categorical_accuracy", y_true_array,
                                         y_pred_array), weights)


def _in_top_k(metric: str, classes: np.ndarray, scores: np.ndarray, k: int) -> np.ndarray:
    if not is_int(k) or k < 1:
        raise ValueError(f"{metric}: k must be a positive integer, got {k!r}")
    true_scores = scores[np.arange(len(classes)), classes][:, None]
    # ties count in, as Keras' in_top_k: only strictly higher scores push the true class out
    return (np.sum(scores > true_scores, axis=1) < k).astype(np.float64)


def top_k_categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike, k: int = 5,
                               sample_weight: ArrayLike | None = None) -> float:
    r"""Fraction of samples whose hot class is among the ``k`` highest scores (Keras'
    ``TopKCategoricalAccuracy``).

    .. math:: \frac{\sum_i w_i [\#\{c : \hat{y}_{ic} > \hat{y}_{i y_i}\} < k]}{\sum_i w_i},
        \quad y_i = \arg\max_c y_{ic}

    Classes tied with the true one do not push it out (Keras' ``in_top_k``), so ``k`` at
    least the number of classes counts every sample. ``y_true`` one-hot (N, C); ``y_pred``
    scores (N, C). :func:`top_k_accuracy` is the same with argmax's tie rule.
    """
    y_true_array = numeric("top_k_categorical_accuracy", "y_true", y_true)
    y_pred_array = numeric("top_k_categorical_accuracy", "y_pred", y_pred)
    weights = sample_weights("top_k_categorical_accuracy", sample_weight, len(y_true_array))
    # the one-hot check of categorical accuracy, whose matches are not needed here
    _categorical_matches("top_k_categorical_accuracy", y_true_array, y_pred_array)
    return weighted_mean(_in_top_k("top_k_categorical_accuracy",
                                   np.argmax(y_true_array, axis=1), y_pred_array, k), weights)


def sparse_top_k_categorical_accuracy(y_true: ArrayLike, y_pred: ArrayLike, k: int = 5,
                                      sample_weight: ArrayLike | None = None) -> float:
    r"""Fraction of samples whose true class index is among the ``k`` highest scores (Keras'
    ``SparseTopKCategoricalAccuracy``).

    .. math:: \frac{\sum_i w_i [\#\{c : \hat{y}_{ic} > \hat{y}_{i y_i}\} < k]}{\sum_i w_i}

    ``y_true`` class indices (N,) or (N, 1); ``y_pred`` scores (N, C); ties as in
    :func:`top_k_categorical_accuracy`.
    """
    metric = "sparse_top_k_categorical_accuracy"
    y_true_array = numeric(metric, "y_true", y_true)
    y_pred_array = numeric(metric, "y_pred", y_pred)
    weights = sample_weights(metric, sample_weight, len(y_true_array))
    _sparse_matches(metric, y_true_array, y_pred_array)
    return weighted_mean(_in_top_k(metric, true_labels(metric, y_true_array), y_pred_array, k),
                         weights)


def top_k_accuracy(y_true: ArrayLike, y_pred: ArrayLike, k: int = 5,
                   sample_weight: ArrayLike | None = None) -> float:
    r"""Fraction of samples whose true class is among the ``k`` highest scores.

    .. math:: \frac{\sum_i w_i [\mathrm{rank}_i(y_i) < k]}{\sum_i w_i}

    where :math:`\mathrm{rank}_i(c)` counts the classes ranked ahead of ``c`` in row ``i``: those
    with a higher score, and those with an equal score and a lower index (argmax's tie rule, so
    ``k=1`` is exactly :func:`accuracy`). ``y_pred`` has shape (N, C) and ``1 <= k < C``;
    ``y_true`` class indices or one-hot rows.
    """
    y_pred_array = numeric("top_k_accuracy", "y_pred", y_pred)
    if not is_scores(y_pred_array):
        raise ValueError(f"top_k_accuracy: y_pred must be scores of shape (N, C) with C > 1, "
                         f"got shape {y_pred_array.shape}")
    num_classes = y_pred_array.shape[1]
    if not is_int(k) or not 1 <= k < num_classes:
        raise ValueError(f"top_k_accuracy: k must be an integer with 1 <= k < {num_classes} "
                         f"(the number of classes; k >= C would count every sample as correct), "
                         f"got {k!r}")
    true, _, _ = labels("top_k_accuracy", y_true, y_pred_array)
    weights = sample_weights("top_k_accuracy", sample_weight, len(true))
    true_scores = y_pred_array[np.arange(len(true)), true][:, None]
    class_index = np.arange(num_classes)
    ahead = (y_pred_array > true_scores) | (
        (y_pred_array == true_scores) & (class_index < true[:, None]))
    return weighted_mean((ahead.sum(axis=1) < k).astype(np.float64), weights)
