"""Metrics: numbers that say how good predictions are, for people rather than for gradients.

Every metric is a plain function ``metric(y_true, y_pred) -> float`` that ``Sequential.compile``
finds by name in :data:`METRICS`. Classification metrics accept the forms a model produces and
a data set stores:

* ``y_pred`` of shape (N, C), C > 1: logits or probabilities; the predicted class is the argmax
  (ties go to the lowest class index, as ``np.argmax`` does).
* ``y_pred`` of shape (N,) or (N, 1): integer (or bool) class labels are used as they are;
  floating scores are probabilities of class 1, thresholded at 0.5 (``p > 0.5`` is class 1).
* ``y_true``: class indices of shape (N,) or (N, 1), in any numeric dtype as long as the values
  are whole numbers, or one-hot rows of shape (N, C).

Regression metrics compare arrays of the same shape, (N,) and (N, 1) counting as the same.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = [
    "METRICS",
    "accuracy",
    "confusion_matrix",
    "f1",
    "get",
    "mae",
    "mse",
    "precision",
    "r2",
    "recall",
    "relative_error",
    "top_k_accuracy",
]


# ---------------------------------------------------------------------------------------------
# Input checking shared by the metrics below. Each error starts with the metric's name and names
# the argument, so a wrong call inside ``fit`` still points at the array that is wrong.

def _numeric(metric: str, name: str, value: object) -> np.ndarray:
    array = np.asarray(value)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{metric}: {name} must be a numeric array, got dtype {array.dtype}")
    if array.ndim == 0:
        raise ValueError(f"{metric}: {name} must have one row per sample, got a scalar")
    return array


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_rows(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    if len(y_true) != len(y_pred):
        raise ValueError(f"{metric}: y_true has {len(y_true)} rows but y_pred has {len(y_pred)}")
    if len(y_true) == 0:
        raise ValueError(f"{metric}: y_true and y_pred are empty")


def _check_columns(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> None:
    """Two (N, C) classification arrays must agree on the number of classes."""
    if (y_true.ndim == 2 and y_pred.ndim == 2 and y_true.shape[1] > 1 and y_pred.shape[1] > 1
            and y_true.shape[1] != y_pred.shape[1]):
        raise ValueError(f"{metric}: y_true has {y_true.shape[1]} columns (classes) "
                         f"but y_pred has {y_pred.shape[1]}")


def _squeeze_column(metric: str, name: str, array: np.ndarray, what: str) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim != 1:
        raise ValueError(f"{metric}: {name} must be {what}, got shape {array.shape}")
    return array


def _true_labels(metric: str, y_true: np.ndarray) -> np.ndarray:
    """Class indices (N,) int64 from indices (N,) / (N, 1) or one-hot rows (N, C)."""
    if y_true.ndim == 2 and y_true.shape[1] > 1:
        return np.argmax(y_true, axis=1)
    y_true = _squeeze_column(metric, "y_true", y_true,
                             "class indices of shape (N,) or one-hot rows of shape (N, C)")
    if y_true.dtype.kind == "f" and not np.all(y_true == np.round(y_true)):
        raise ValueError(f"{metric}: y_true must hold whole class indices, "
                         f"got values such as {y_true[y_true != np.round(y_true)][0]!r}")
    if y_true.size and y_true.min() < 0:
        raise ValueError(f"{metric}: y_true holds the negative class {y_true.min()}")
    return y_true.astype(np.int64)


def _pred_labels(metric: str, y_pred: np.ndarray) -> np.ndarray:
    """Predicted classes (N,) int64 from scores (N, C), labels (N,) or probabilities (N,)."""
    if y_pred.ndim == 2 and y_pred.shape[1] > 1:
        return np.argmax(y_pred, axis=1)
    y_pred = _squeeze_column(metric, "y_pred", y_pred,
                             "scores of shape (N, C) or labels/probabilities of shape (N,)")
    if y_pred.dtype.kind == "f":
        return (y_pred > 0.5).astype(np.int64)
    if y_pred.size and y_pred.min() < 0:
        raise ValueError(f"{metric}: y_pred holds the negative class {y_pred.min()}")
    return y_pred.astype(np.int64)


def _labels(metric: str, y_true: object, y_pred: object) -> tuple[np.ndarray, np.ndarray, int]:
    """(true labels, predicted labels, number of score columns or 0) for classification."""
    y_true = _numeric(metric, "y_true", y_true)
    y_pred = _numeric(metric, "y_pred", y_pred)
    _check_rows(metric, y_true, y_pred)
    _check_columns(metric, y_true, y_pred)
    columns = max(y.shape[1] if y.ndim == 2 and y.shape[1] > 1 else 0 for y in (y_true, y_pred))
    true_labels = _true_labels(metric, y_true)
    if columns and true_labels.max() >= columns:
        raise ValueError(f"{metric}: y_true holds class {true_labels.max()} "
                         f"but y_pred has {columns} columns")
    return true_labels, _pred_labels(metric, y_pred), columns


def _regression_pair(metric: str, y_true: object, y_pred: object) -> tuple[np.ndarray, np.ndarray]:
    """float64 arrays of shape (N, D); (N,) counts as (N, 1) so a flat target never broadcasts."""
    y_true = _numeric(metric, "y_true", y_true)
    y_pred = _numeric(metric, "y_pred", y_pred)
    _check_rows(metric, y_true, y_pred)
    true_2d = y_true.reshape(len(y_true), -1).astype(np.float64)
    pred_2d = y_pred.reshape(len(y_pred), -1).astype(np.float64)
    if true_2d.shape != pred_2d.shape:
        raise ValueError(f"{metric}: y_true has shape {y_true.shape} but y_pred has shape "
                         f"{y_pred.shape}; they must match, (N,) and (N, 1) counting as the same")
    return true_2d, pred_2d


# ---------------------------------------------------------------------------------------------
# Classification

def accuracy(y_true: object, y_pred: object) -> float:
    r"""Fraction of samples whose predicted class is the true class.

    .. math:: \mathrm{accuracy} = \frac{1}{N} \sum_i [\hat{y}_i = y_i]

    ``y_pred`` may be logits or probabilities (N, C), labels (N,), or probabilities of class 1
    (N,) thresholded at 0.5; ``y_true`` indices or one-hot rows (see the module docstring).
    """
    true_labels, pred_labels, _ = _labels("accuracy", y_true, y_pred)
    return float(np.mean(true_labels == pred_labels))


def top_k_accuracy(y_true: object, y_pred: object, k: int = 5) -> float:
    r"""Fraction of samples whose true class is among the ``k`` highest scores.

    .. math:: \mathrm{top\_k} = \frac{1}{N} \sum_i [\mathrm{rank}_i(y_i) < k]

    where :math:`\mathrm{rank}_i(c)` counts the classes ranked ahead of ``c`` in row ``i``: those
    with a higher score, and those with an equal score and a lower index (argmax's tie rule, so
    ``k=1`` is exactly :func:`accuracy`). ``y_pred`` has shape (N, C) and ``1 <= k < C``.
    """
    y_pred_array = _numeric("top_k_accuracy", "y_pred", y_pred)
    if y_pred_array.ndim != 2 or y_pred_array.shape[1] < 2:
        raise ValueError(f"top_k_accuracy: y_pred must be scores of shape (N, C) with C > 1, "
                         f"got shape {y_pred_array.shape}")
    num_classes = y_pred_array.shape[1]
    if not _is_int(k) or not 1 <= k < num_classes:
        raise ValueError(f"top_k_accuracy: k must be an integer with 1 <= k < {num_classes} "
                         f"(the number of classes; k >= C would count every sample as correct), "
                         f"got {k!r}")
    true_labels, _, _ = _labels("top_k_accuracy", y_true, y_pred_array)
    true_scores = y_pred_array[np.arange(len(true_labels)), true_labels][:, None]
    class_index = np.arange(num_classes)
    ahead = (y_pred_array > true_scores) | (
        (y_pred_array == true_scores) & (class_index < true_labels[:, None]))
    return float(np.mean(ahead.sum(axis=1) < k))


def confusion_matrix(y_true: object, y_pred: object, num_classes: int | None = None) -> np.ndarray:
    r"""Counts of (true class, predicted class) pairs: ``cm[i, j]`` samples of class ``i``
    were predicted as class ``j`` (rows true, columns predicted, as in scikit-learn).

    .. math:: \mathrm{cm}_{ij} = \sum_n [y_n = i][\hat{y}_n = j]

    The diagonal holds the correct predictions, so ``trace(cm) / N`` is the accuracy.
    ``num_classes`` defaults to the number of score columns, or else the largest label + 1.
    Returns an int64 array of shape (num_classes, num_classes).
    """
    return _confusion("confusion_matrix", y_true, y_pred, num_classes)


def _confusion(metric: str, y_true: object, y_pred: object,
               num_classes: int | None) -> np.ndarray:
    true_labels, pred_labels, columns = _labels(metric, y_true, y_pred)
    largest = int(max(true_labels.max(), pred_labels.max()))
    if num_classes is None:
        num_classes = max(columns, largest + 1)
    elif not _is_int(num_classes) or num_classes < 1:
        raise ValueError(f"{metric}: num_classes must be a positive integer, "
                         f"got {num_classes!r}")
    for name, labels in (("y_true", true_labels), ("y_pred", pred_labels)):
        if labels.max() >= num_classes:
            raise ValueError(f"{metric}: {name} holds class {labels.max()} "
                             f"but num_classes is {num_classes}")
    # one bincount over flattened (true, pred) pairs instead of a Python loop over samples
    counts = np.bincount(true_labels * num_classes + pred_labels, minlength=num_classes ** 2)
    return counts.reshape(num_classes, num_classes)


def _per_class(metric: str, y_true: object, y_pred: object, average: str | None,
               num_classes: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(true positives, predicted counts, true counts, present mask) per class, as float64."""
    if average not in ("macro", None):
        raise ValueError(f"{metric}: average must be 'macro' or None, got {average!r}")
    cm = _confusion(metric, y_true, y_pred, num_classes)
    true_positives = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    present = (predicted + actual) > 0
    return true_positives, predicted, actual, present


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # 0/0 (a class never predicted, or never present) counts as 0, without a warning
    return np.divide(numerator, denominator, out=np.zeros_like(numerator),
                     where=denominator > 0)


def _average(scores: np.ndarray, present: np.ndarray, average: str | None) -> float | np.ndarray:
    return scores if average is None else float(np.mean(scores[present]))


def precision(y_true: object, y_pred: object, average: str | None = "macro",
              num_classes: int | None = None) -> float | np.ndarray:
    r"""Of the samples predicted as class c, the fraction that really are class c.

    .. math:: P_c = \frac{TP_c}{TP_c + FP_c} \quad (0 \text{ when nothing is predicted as } c)

    ``average="macro"`` returns the mean of :math:`P_c` over the classes that occur in
    ``y_true`` or ``y_pred`` (scikit-learn's choice); ``average=None`` returns the float64 array
    of all :math:`P_c`, indexed by class (length ``num_classes``, see :func:`confusion_matrix`).
    """
    true_positives, predicted, _, present = _per_class("precision", y_true, y_pred, average,
                                                       num_classes)
    return _average(_ratio(true_positives, predicted), present, average)


def recall(y_true: object, y_pred: object, average: str | None = "macro",
           num_classes: int | None = None) -> float | np.ndarray:
    r"""Of the samples of class c, the fraction predicted as class c.

    .. math:: R_c = \frac{TP_c}{TP_c + FN_c} \quad (0 \text{ when class } c \text{ never occurs})

    ``average`` and ``num_classes`` as in :func:`precision`.
    """
    true_positives, _, actual, present = _per_class("recall", y_true, y_pred, average,
                                                    num_classes)
    return _average(_ratio(true_positives, actual), present, average)


def f1(y_true: object, y_pred: object, average: str | None = "macro",
       num_classes: int | None = None) -> float | np.ndarray:
    r"""Harmonic mean of precision and recall, per class.

    .. math:: F_c = \frac{2 P_c R_c}{P_c + R_c} = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}
        \quad (0 \text{ when } TP_c = 0)

    ``average`` and ``num_classes`` as in :func:`precision`.
    """
    true_positives, predicted, actual, present = _per_class("f1", y_true, y_pred, average,
                                                            num_classes)
    # 2TP + FP + FN = predicted + actual: the count form never divides by a zero precision
    return _average(_ratio(2.0 * true_positives, predicted + actual), present, average)


# ---------------------------------------------------------------------------------------------
# Regression

def mse(y_true: object, y_pred: object) -> float:
    r"""Mean squared error over every element.

    .. math:: \mathrm{MSE} = \frac{1}{ND} \sum_{i,j} (\hat{y}_{ij} - y_{ij})^2
    """
    true_2d, pred_2d = _regression_pair("mse", y_true, y_pred)
    return float(np.mean(np.square(pred_2d - true_2d)))


def mae(y_true: object, y_pred: object) -> float:
    r"""Mean absolute error over every element.

    .. math:: \mathrm{MAE} = \frac{1}{ND} \sum_{i,j} |\hat{y}_{ij} - y_{ij}|
    """
    true_2d, pred_2d = _regression_pair("mae", y_true, y_pred)
    return float(np.mean(np.abs(pred_2d - true_2d)))


def relative_error(y_true: object, y_pred: object, *,
                   eps: float = float(np.finfo(np.float64).eps)) -> float:
    r"""Mean absolute error relative to the size of the target (a fraction, not a percentage).

    .. math:: \frac{1}{ND} \sum_{i,j} \frac{|\hat{y}_{ij} - y_{ij}|}{\max(|y_{ij}|, \epsilon)}

    ``eps`` keeps targets of 0 from dividing by zero; the default, float64's machine epsilon,
    is scikit-learn's ``mean_absolute_percentage_error``. Near-zero targets still give huge
    relative errors: that is the honest answer, so prefer :func:`mae` for such data.
    """
    true_2d, pred_2d = _regression_pair("relative_error", y_true, y_pred)
    return float(np.mean(np.abs(pred_2d - true_2d) / np.maximum(np.abs(true_2d), eps)))


def r2(y_true: object, y_pred: object) -> float:
    r"""Coefficient of determination: 1 minus the error relative to predicting the mean.

    .. math:: R^2_j = 1 - \frac{\sum_i (y_{ij} - \hat{y}_{ij})^2}{\sum_i (y_{ij} - \bar{y}_j)^2}

    1 is perfect, 0 is no better than the mean, and it can be negative. With several output
    columns the :math:`R^2_j` are averaged. A constant target column scores 1 if predicted
    exactly and 0 otherwise (scikit-learn's convention), never NaN. Needs at least 2 samples.
    """
    true_2d, pred_2d = _regression_pair("r2", y_true, y_pred)
    if len(true_2d) < 2:
        raise ValueError("r2: needs at least 2 samples, got 1")
    residual = np.sum(np.square(true_2d - pred_2d), axis=0)
    total = np.sum(np.square(true_2d - true_2d.mean(axis=0)), axis=0)
    # compare values, not the total: the mean of equal numbers can be off in the last bit,
    # which would turn a constant column's total of 0 into a tiny, meaningless divisor
    constant = true_2d.max(axis=0) == true_2d.min(axis=0)
    scores = np.where(constant, np.where(residual == 0, 1.0, 0.0),
                      1.0 - _ratio(residual, np.where(constant, 1.0, total)))
    return float(np.mean(scores))


# ---------------------------------------------------------------------------------------------
# Lookup by name, for ``compile(metrics=[...])``

Metric = Callable[..., float | np.ndarray]

METRICS: dict[str, Metric] = {
    "accuracy": accuracy,
    "top_k_accuracy": top_k_accuracy,
    "mse": mse,
    "mae": mae,
    "relative_error": relative_error,
    "r2": r2,
    "precision": precision,
    "recall": recall,
    "f1": f1,
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
    raise TypeError(f"metric must be a name or a function (y_true, y_pred) -> float, "
                    f"got {type(name_or_fn).__name__}")
