r"""Metrics: numbers that say how good predictions are, for people rather than for gradients.

Every metric is a plain function ``metric(y_true, y_pred, **options, sample_weight=None)``
returning a float (or a float64 array per class when an ``average``/``class_aggregation`` of
``None`` asks for one), computed over all the outputs at once: ``Sequential.compile`` finds
it by name in :data:`METRICS` and calls it on a whole epoch, so no metric keeps state between
batches. The names are Keras' (``compile(metrics=[...])``) plus minidl's own, and a Keras name
computes what Keras computes; where a name also exists elsewhere with another meaning, the
docstring says which one it follows (``precision``/``recall``/``f1``: scikit-learn's).

``sample_weight`` is Keras': a number, or one weight per sample, of shape (N,) or (N, 1).
A mean metric becomes :math:`\sum_i w_i v_i / \sum_i w_i` over per-sample values
:math:`v_i` (0 when the weights sum to 0), and a counted metric sums weights instead of ones.

Classification metrics accept the forms a model produces and a data set stores:

* ``y_pred`` of shape (N, C), C > 1: logits or probabilities; the predicted class is the argmax
  (ties go to the lowest class index, as ``np.argmax`` does).
* ``y_pred`` of shape (N,) or (N, 1): floating scores are probabilities of class 1,
  thresholded (``p > threshold``, 0.5 by default, is class 1); integer (or bool) values are
  class labels, used as they are.
* ``y_true``: class indices of shape (N,) or (N, 1), in any numeric dtype as long as the values
  are whole numbers, or one-hot rows of shape (N, C); the multi-label metrics
  (``fbeta_score``, ``f1_score``, ``auc``) take one 0/1 column per label.

Regression metrics compare arrays of the same shape, (N,) and (N, 1) counting as the same.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from minidl.metrics.accuracies import (
    accuracy,
    binary_accuracy,
    categorical_accuracy,
    sparse_categorical_accuracy,
    sparse_top_k_categorical_accuracy,
    top_k_accuracy,
    top_k_categorical_accuracy,
)
from minidl.metrics.counts import confusion_matrix, f1, f1_score, fbeta_score, precision, recall
from minidl.metrics.curves import auc
from minidl.metrics.regression import mae, mape, mse, msle, r2, r2_score, relative_error

__all__ = [
    "METRICS",
    "accuracy",
    "auc",
    "binary_accuracy",
    "categorical_accuracy",
    "confusion_matrix",
    "f1",
    "f1_score",
    "fbeta_score",
    "get",
    "mae",
    "mape",
    "mse",
    "msle",
    "precision",
    "r2",
    "r2_score",
    "recall",
    "relative_error",
    "sparse_categorical_accuracy",
    "sparse_top_k_categorical_accuracy",
    "top_k_accuracy",
    "top_k_categorical_accuracy",
]

Metric = Callable[..., float | np.ndarray]

#: Every name ``compile(metrics=[...])`` accepts. Keras' spellings of one metric ("mse",
#: "MSE", "mean_squared_error") share its function; Keras logs each under the name given.
METRICS: dict[str, Metric] = {
    # Keras: "accuracy"/"acc" pick binary, categorical or sparse accuracy from the shapes
    "accuracy": accuracy,
    "acc": accuracy,
    "binary_accuracy": binary_accuracy,
    "categorical_accuracy": categorical_accuracy,
    "sparse_categorical_accuracy": sparse_categorical_accuracy,
    "top_k_categorical_accuracy": top_k_categorical_accuracy,
    "sparse_top_k_categorical_accuracy": sparse_top_k_categorical_accuracy,
    "top_k_accuracy": top_k_accuracy,
    "precision": precision,
    "recall": recall,
    "f1": f1,
    "f1_score": f1_score,
    # scikit-learn's spelling, and Keras' (the snake case of FBetaScore)
    "fbeta_score": fbeta_score,
    "f_beta_score": fbeta_score,
    "auc": auc,
    "mse": mse,
    "MSE": mse,
    "mean_squared_error": mse,
    "mae": mae,
    "MAE": mae,
    "mean_absolute_error": mae,
    "mape": mape,
    "MAPE": mape,
    "mean_absolute_percentage_error": mape,
    "msle": msle,
    "MSLE": msle,
    "mean_squared_logarithmic_error": msle,
    "relative_error": relative_error,
    "r2": r2,
    "r2_score": r2_score,
}


def get(name_or_fn: str | Metric) -> Metric:
    """The metric function called ``name_or_fn`` in :data:`METRICS`, or the callable itself."""
    if isinstance(name_or_fn, str):
        if name_or_fn not in METRICS:
            raise ValueError(f"unknown metric {name_or_fn!r}; known metrics: "
                             f"{', '.join(sorted(METRICS))}")
        return METRICS[name_or_fn]
    if callable(name_or_fn):
        return name_or_fn
    raise TypeError(f"metric must be a name or a function (y_true, y_pred, sample_weight=None) "
                    f"-> float, got {type(name_or_fn).__name__}")
