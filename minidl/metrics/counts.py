r"""Metrics counted from true and false positives: the confusion matrix, precision, recall and
the F-scores.

Two families share the counts. ``precision``, ``recall`` and ``f1`` are single-label
(multi-class) scores with scikit-learn's ``average`` names (``precision_score`` and friends);
``fbeta_score`` and ``f1_score`` are Keras' ``FBetaScore`` / ``F1Score``, on one column per label
(multi-label or one-hot), with the predictions thresholded. With sample weights every count is a
sum of weights: :math:`TP_c = \sum_i w_i [y_i = c][\hat{y}_i = c]`.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from minidl.metrics.inputs import indicator, is_int, is_real, labels, ratio, sample_weights


def confusion_matrix(y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None = None,
                     sample_weight: ArrayLike | None = None) -> np.ndarray:
    r"""Counts of (true class, predicted class) pairs: ``cm[i, j]`` samples of class ``i``
    were predicted as class ``j`` (rows true, columns predicted, as in scikit-learn).

    .. math:: \mathrm{cm}_{ij} = \sum_n w_n [y_n = i][\hat{y}_n = j]

    The diagonal holds the correct predictions, so ``trace(cm) / N`` is the accuracy.
    ``num_classes`` defaults to the number of score columns, or else the largest label + 1.
    Returns an int64 array of shape (num_classes, num_classes), float64 with ``sample_weight``.
    """
    return _confusion("confusion_matrix", y_true, y_pred, num_classes, sample_weight)[0]


def _confusion(metric: str, y_true: ArrayLike, y_pred: ArrayLike, num_classes: int | None,
               sample_weight: ArrayLike | None) -> tuple[np.ndarray, np.ndarray]:
    """(confusion matrix, mask of the classes that occur in y_true or y_pred)."""
    true, predicted, columns = labels(metric, y_true, y_pred)
    weights = sample_weights(metric, sample_weight, len(true))
    largest = int(max(true.max(), predicted.max()))
    if num_classes is None:
        num_classes = max(columns, largest + 1)
    elif not is_int(num_classes) or num_classes < 1:
        raise ValueError(f"{metric}: num_classes must be a positive integer, "
                         f"got {num_classes!r}")
    for name, classes in (("y_true", true), ("y_pred", predicted)):
        if classes.max() >= num_classes:
            raise ValueError(f"{metric}: {name} holds class {classes.max()} "
                             f"but num_classes is {num_classes}")
    # one bincount over flattened (true, pred) pairs instead of a Python loop over samples
    pairs = true * num_classes + predicted
    counts = np.bincount(pairs, minlength=num_classes ** 2).reshape(num_classes, num_classes)
    # a class occurs when a sample names it, whatever that sample weighs (scikit-learn's labels)
    present = (counts.sum(axis=0) + counts.sum(axis=1)) > 0
    if weights is not None:
        counts = np.bincount(pairs, weights=weights, minlength=num_classes ** 2).reshape(
            num_classes, num_classes)
    return counts, present


AVERAGES = (None, "binary", "micro", "macro", "weighted")


def _averaged(metric: str, score: str, y_true: ArrayLike, y_pred: ArrayLike,
              average: str | None, num_classes: int | None,
              sample_weight: ArrayLike | None) -> float | np.ndarray:
    if average not in AVERAGES:
        raise ValueError(f"{metric}: average must be one of None, 'binary', 'micro', 'macro', "
                         f"'weighted', got {average!r}")
    cm, present = _confusion(metric, y_true, y_pred, num_classes, sample_weight)
    true_positives = np.diag(cm).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    actual = cm.sum(axis=1).astype(np.float64)
    if average == "micro":
        true_positives, predicted, actual = (np.sum(counts, keepdims=True)
                                             for counts in (true_positives, predicted, actual))
    if score == "precision":
        scores = ratio(true_positives, predicted)
    elif score == "recall":
        scores = ratio(true_positives, actual)
    else:
        # 2TP + FP + FN = predicted + actual: the count form never divides by a zero precision
        scores = ratio(2.0 * true_positives, predicted + actual)
    if average is None:
        return scores
    if average == "binary":
        if len(scores) > 2:
            raise ValueError(f"{metric}: average='binary' scores class 1 of two classes, but "
                             f"there are {len(scores)} classes; use average='micro', 'macro' "
                             f"or 'weighted'")
        return float(scores[1]) if len(scores) == 2 else 0.0
    if average == "weighted":
        support = actual.sum()
        return float(np.dot(scores, actual) / support) if support > 0 else 0.0
    if average == "micro":
        return float(scores[0])
    return float(np.mean(scores[present]))


def precision(y_true: ArrayLike, y_pred: ArrayLike, average: str | None = "macro",
              num_classes: int | None = None,
              sample_weight: ArrayLike | None = None) -> float | np.ndarray:
    r"""Of the samples predicted as class c, the fraction that really are class c.

    .. math:: P_c = \frac{TP_c}{TP_c + FP_c} \quad (0 \text{ when nothing is predicted as } c)

    Follows scikit-learn's ``precision_score``, not Keras' ``Precision`` (a score of thresholded
    binary predictions, which is ``average="binary"`` here). The predicted class is the argmax
    of scores (N, C), or ``p > 0.5`` for probabilities (N,).

    ``average`` has scikit-learn's meanings: ``"macro"`` (the default) is the mean over the
    classes that occur in ``y_true`` or ``y_pred``; ``"weighted"`` weighs each class by its
    support (the weight of its true samples); ``"micro"`` scores the counts summed over the
    classes, which for single-label data is the accuracy; ``"binary"`` is the score of class 1
    of a two-class problem; ``None`` returns the float64 array of all per-class scores, indexed
    by class (length ``num_classes``, see :func:`confusion_matrix`).
    """
    return _averaged("precision", "precision", y_true, y_pred, average, num_classes,
                     sample_weight)


def recall(y_true: ArrayLike, y_pred: ArrayLike, average: str | None = "macro",
           num_classes: int | None = None,
           sample_weight: ArrayLike | None = None) -> float | np.ndarray:
    r"""Of the samples of class c, the fraction predicted as class c.

    .. math:: R_c = \frac{TP_c}{TP_c + FN_c} \quad (0 \text{ when class } c \text{ never occurs})

    scikit-learn's ``recall_score``, not Keras' ``Recall`` (``average="binary"`` here);
    ``average``, ``num_classes`` and ``sample_weight`` as in :func:`precision`.
    """
    return _averaged("recall", "recall", y_true, y_pred, average, num_classes, sample_weight)


def f1(y_true: ArrayLike, y_pred: ArrayLike, average: str | None = "macro",
       num_classes: int | None = None,
       sample_weight: ArrayLike | None = None) -> float | np.ndarray:
    r"""Harmonic mean of precision and recall, per class.

    .. math:: F_c = \frac{2 P_c R_c}{P_c + R_c} = \frac{2\,TP_c}{2\,TP_c + FP_c + FN_c}
        \quad (0 \text{ when } TP_c = 0)

    scikit-learn's ``f1_score`` (:func:`f1_score` is Keras' multi-label ``F1Score``);
    ``average``, ``num_classes`` and ``sample_weight`` as in :func:`precision`.
    """
    return _averaged("f1", "f1", y_true, y_pred, average, num_classes, sample_weight)


def fbeta_score(y_true: ArrayLike, y_pred: ArrayLike, beta: float = 1.0,
                average: str | None = None, threshold: float | None = None,
                sample_weight: ArrayLike | None = None) -> float | np.ndarray:
    r"""F-beta score per label (Keras' ``FBetaScore``): the weighted harmonic mean of precision
    and recall, recall counting :math:`\beta` times as much.

    .. math:: F_c = \frac{(1 + \beta^2) P_c R_c}{\beta^2 P_c + R_c}
        = \frac{(1 + \beta^2)\,TP_c}{(1 + \beta^2)\,TP_c + \beta^2 FN_c + FP_c}
        \quad (0 \text{ when } TP_c = 0)

    ``y_true`` has one column per label, (N, C) (multi-label or one-hot; class indices (N,)
    are one-hot encoded), ``y_pred`` scores of the same shape. A label is predicted when its
    score is ``> threshold``; with ``threshold=None`` the row's largest score is predicted
    (every tied maximum, and nothing in a row of zeros). Counts are sums of ``sample_weight``.

    ``average``: ``None`` (Keras' default) returns the float64 array of the per-label
    :math:`F_c`; ``"micro"`` scores the counts summed over labels; ``"macro"`` is the mean of
    :math:`F_c` over all C labels; ``"weighted"`` weighs :math:`F_c` by the label's support
    :math:`\sum_i w_i y_{ic}`. Keras adds an epsilon of 1e-7 to each denominator; minidl
    computes the ratios exactly (0/0 counts as 0), so values differ from Keras' by ~1e-7.
    """
    return _fbeta("fbeta_score", y_true, y_pred, beta, average, threshold, sample_weight)


def f1_score(y_true: ArrayLike, y_pred: ArrayLike, average: str | None = None,
             threshold: float | None = None,
             sample_weight: ArrayLike | None = None) -> float | np.ndarray:
    r"""F1 score per label (Keras' ``F1Score``): :func:`fbeta_score` with :math:`\beta = 1`,

    .. math:: F_c = \frac{2 P_c R_c}{P_c + R_c} = \frac{2\,TP_c}{2\,TP_c + FN_c + FP_c}.

    Arguments as in :func:`fbeta_score`. :func:`f1` is scikit-learn's single-label F1.
    """
    return _fbeta("f1_score", y_true, y_pred, 1.0, average, threshold, sample_weight)


def _fbeta(metric: str, y_true: ArrayLike, y_pred: ArrayLike, beta: float, average: str | None,
           threshold: float | None, sample_weight: ArrayLike | None) -> float | np.ndarray:
    if average not in (None, "micro", "macro", "weighted"):
        raise ValueError(f"{metric}: average must be one of None, 'micro', 'macro', 'weighted', "
                         f"got {average!r}")
    if not is_real(beta) or beta <= 0:
        raise ValueError(f"{metric}: beta must be a positive number, got {beta!r}")
    if threshold is not None and not (is_real(threshold) and 0 < threshold <= 1):
        raise ValueError(f"{metric}: threshold must be None (the row's largest score) or a "
                         f"number with 0 < threshold <= 1, got {threshold!r}")
    targets, scores = indicator(metric, y_true, y_pred)
    weights = sample_weights(metric, sample_weight, len(targets))
    if threshold is None:
        # Keras' test for a zero score, |s| > 1e-9: a row of zeros predicts no label
        predicted = (scores >= scores.max(axis=1, keepdims=True)) & (np.abs(scores) > 1e-9)
    else:
        predicted = scores > threshold
    predicted = predicted.astype(np.float64)
    row_weights = np.ones(len(targets)) if weights is None else weights
    weighted_targets = targets * row_weights[:, None]
    true_positives = np.sum(predicted * weighted_targets, axis=0)
    false_positives = np.sum(predicted * (1.0 - targets) * row_weights[:, None], axis=0)
    false_negatives = np.sum((1.0 - predicted) * weighted_targets, axis=0)
    if average == "micro":
        true_positives, false_positives, false_negatives = (
            np.sum(counts, keepdims=True)
            for counts in (true_positives, false_positives, false_negatives))
    beta_squared = float(beta) ** 2
    scores_per_label = ratio((1 + beta_squared) * true_positives,
                             (1 + beta_squared) * true_positives
                             + beta_squared * false_negatives + false_positives)
    if average is None:
        return scores_per_label
    if average == "weighted":
        support = np.sum(weighted_targets, axis=0)
        total = support.sum()
        return float(np.dot(scores_per_label, support) / total) if total > 0 else 0.0
    return float(np.mean(scores_per_label))
