"""The area under a curve swept by moving a threshold over the scores: ROC AUC and the area
under the precision-recall curve, computed exactly over every distinct score."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from minidl.metrics.inputs import indicator, ratio, sample_weights

CURVES = ("ROC", "PR")


def _cumulative_counts(targets: np.ndarray, scores: np.ndarray,
                       weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted true and false positives when every score >= each distinct score, from the
    highest threshold down."""
    order = np.argsort(-scores, kind="stable")
    scores, targets, weights = scores[order], targets[order], weights[order]
    # one point per distinct score: tied samples cross the threshold together
    last_of_each_score = np.r_[np.flatnonzero(np.diff(scores)), len(scores) - 1]
    true_positives = np.cumsum(weights * targets)[last_of_each_score]
    false_positives = np.cumsum(weights * (1.0 - targets))[last_of_each_score]
    return true_positives, false_positives


def _roc_area(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float:
    true_positives, false_positives = _cumulative_counts(targets, scores, weights)
    if true_positives[-1] <= 0 or false_positives[-1] <= 0:
        return 0.0  # one class only: Keras' divide_no_nan makes the curve flat
    true_rate = np.r_[0.0, true_positives] / true_positives[-1]
    false_rate = np.r_[0.0, false_positives] / false_positives[-1]
    return float(np.sum(np.diff(false_rate) * (true_rate[1:] + true_rate[:-1])) / 2.0)


def _average_precision(targets: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> float:
    true_positives, false_positives = _cumulative_counts(targets, scores, weights)
    if true_positives[-1] <= 0:
        return 0.0
    precision = ratio(true_positives, true_positives + false_positives)
    recall = true_positives / true_positives[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def auc(y_true: ArrayLike, y_pred: ArrayLike, curve: str = "ROC", multi_label: bool = False,
        label_weights: ArrayLike | None = None,
        sample_weight: ArrayLike | None = None) -> float:
    r"""Area under the ROC or the precision-recall curve (Keras' ``AUC``, computed exactly).

    Sort the scores from the highest; at each distinct score :math:`s_k`, count the (weighted)
    true and false positives among the samples scoring :math:`\ge s_k`. ROC (the default) joins
    the points :math:`(\mathrm{FPR}_k, \mathrm{TPR}_k)` by straight lines from (0, 0):

    .. math:: \mathrm{AUC} = \sum_k (\mathrm{FPR}_k - \mathrm{FPR}_{k-1})
        \frac{\mathrm{TPR}_k + \mathrm{TPR}_{k-1}}{2}

    which is scikit-learn's ``roc_auc_score`` (a tie is a diagonal step), the probability that
    a random positive scores above a random negative, ties counting half. ``curve="PR"`` is
    the average precision, scikit-learn's ``average_precision_score``:

    .. math:: \mathrm{AP} = \sum_k (R_k - R_{k-1}) P_k, \quad R_0 = 0

    Keras instead buckets the scores into ``num_thresholds=200`` fixed thresholds on [0, 1] and
    interpolates between them (for PR, the interpolation of Davis and Goadrich), so its values
    approximate these, and its scores must be probabilities: minidl uses every distinct score,
    needs only their order, and so takes logits as they are (no ``num_thresholds``,
    ``summation_method`` or ``from_logits``). With only one class present the area is 0, as in
    Keras (scikit-learn raises).

    ``y_true`` holds 0 or 1, of the shape of ``y_pred``: (N,), (N, 1), or (N, C) for C labels
    (class indices (N,) against (N, C) scores are one-hot encoded). ``multi_label=False`` scores
    every (sample, label) pair as one binary problem (scikit-learn's ``average="micro"``);
    ``multi_label=True`` computes one area per label and averages them, weighted by
    ``label_weights`` when given (``average="macro"`` without). Without ``multi_label``,
    ``label_weights`` multiply the sample weights of each label's column.
    """
    if not isinstance(curve, str) or curve.upper() not in CURVES:
        raise ValueError(f"auc: curve must be 'ROC' or 'PR', got {curve!r}")
    if not isinstance(multi_label, (bool, np.bool_)):
        raise TypeError(f"auc: multi_label must be True or False, got {multi_label!r}")
    targets, scores = indicator("auc", y_true, y_pred)
    if not np.all((targets == 0) | (targets == 1)):
        raise ValueError(f"auc: y_true must hold 0 or 1, got values such as "
                         f"{float(targets[(targets != 0) & (targets != 1)][0])!r}")
    if not np.all(np.isfinite(scores)):
        raise ValueError("auc: y_pred holds a non-finite score")
    weights = sample_weights("auc", sample_weight, len(targets))
    weights = np.ones(len(targets)) if weights is None else weights
    num_labels = targets.shape[1]
    if label_weights is not None:
        label_weights = np.asarray(label_weights)
        if (label_weights.dtype.kind not in "biuf" or label_weights.shape != (num_labels,)
                or not np.all(np.isfinite(label_weights)) or np.any(label_weights < 0)):
            raise ValueError(f"auc: label_weights must be {num_labels} non-negative numbers, "
                             f"one per label, got {label_weights!r}")
        label_weights = label_weights.astype(np.float64)
    area = _roc_area if curve.upper() == "ROC" else _average_precision
    if multi_label:
        # one area per label: a loop over the C labels, never over samples
        areas = np.array([area(targets[:, label], scores[:, label], weights)
                          for label in range(num_labels)])
        if label_weights is None:
            return float(np.mean(areas))
        total = label_weights.sum()
        return float(np.dot(label_weights, areas) / total) if total > 0 else 0.0
    pair_weights = weights[:, None] * (1.0 if label_weights is None else label_weights)
    return area(targets.ravel(), scores.ravel(), np.broadcast_to(pair_weights,
                                                                 targets.shape).ravel())
