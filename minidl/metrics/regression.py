r"""Regression metrics: errors averaged per sample, and the coefficient of determination.

``y_true`` and ``y_pred`` have the same shape, (N,) and (N, 1) counting as the same. The error
metrics are Keras' ``MeanMetricWrapper`` of a per-sample error: each sample's error is the mean
over its D outputs, :math:`e_i = \frac{1}{D}\sum_j \ell(y_{ij}, \hat{y}_{ij})`, and the metric
is :math:`\sum_i w_i e_i / \sum_i w_i` (the plain mean without ``sample_weight``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from minidl.metrics.inputs import (
    is_int,
    per_sample,
    ratio,
    regression_pair,
    sample_weights,
    weighted_mean,
)

#: Keras' ``backend.epsilon()``, which keeps MAPE's and MSLE's logarithms and ratios finite
KERAS_EPSILON = 1e-7


def _mean_error(metric: str, y_true: ArrayLike, y_pred: ArrayLike,
                sample_weight: ArrayLike | None,
                error: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> float:
    true_2d, pred_2d = regression_pair(metric, y_true, y_pred)
    weights = sample_weights(metric, sample_weight, len(true_2d))
    return weighted_mean(per_sample(error(true_2d, pred_2d)), weights)


def mse(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    r"""Mean squared error (Keras' ``"mse"``/``"mean_squared_error"``).

    .. math:: \mathrm{MSE} = \frac{\sum_i w_i \frac{1}{D}\sum_j (\hat{y}_{ij} - y_{ij})^2}
        {\sum_i w_i}
    """
    return _mean_error("mse", y_true, y_pred, sample_weight,
                       lambda true, pred: np.square(pred - true))


def mae(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    r"""Mean absolute error (Keras' ``"mae"``/``"mean_absolute_error"``).

    .. math:: \mathrm{MAE} = \frac{\sum_i w_i \frac{1}{D}\sum_j |\hat{y}_{ij} - y_{ij}|}
        {\sum_i w_i}
    """
    return _mean_error("mae", y_true, y_pred, sample_weight,
                       lambda true, pred: np.abs(pred - true))


def relative_error(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None,
                   *, eps: float = float(np.finfo(np.float64).eps)) -> float:
    r"""Mean absolute error relative to the size of the target (a fraction, not a percentage).

    .. math:: e_i = \frac{1}{D} \sum_j \frac{|\hat{y}_{ij} - y_{ij}|}{\max(|y_{ij}|, \epsilon)},
        \qquad \frac{\sum_i w_i e_i}{\sum_i w_i}

    ``eps`` keeps targets of 0 from dividing by zero; the default, float64's machine epsilon,
    is scikit-learn's ``mean_absolute_percentage_error``. Near-zero targets still give huge
    relative errors: that is the honest answer, so prefer :func:`mae` for such data.
    """
    return _mean_error("relative_error", y_true, y_pred, sample_weight,
                       lambda true, pred: np.abs(pred - true) / np.maximum(np.abs(true), eps))


def mape(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    r"""Mean absolute percentage error (Keras' ``"mape"``/``"mean_absolute_percentage_error"``).

    .. math:: e_i = \frac{100}{D} \sum_j \frac{|y_{ij} - \hat{y}_{ij}|}{\max(|y_{ij}|, \epsilon)},
        \quad \epsilon = 10^{-7}

    :func:`relative_error` times 100, with Keras' epsilon.
    """
    return _mean_error("mape", y_true, y_pred, sample_weight,
                       lambda true, pred: 100.0 * np.abs(true - pred)
                       / np.maximum(np.abs(true), KERAS_EPSILON))


def msle(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    r"""Mean squared logarithmic error (Keras' ``"msle"``/``"mean_squared_logarithmic_error"``).

    .. math:: e_i = \frac{1}{D} \sum_j \left(\log(1 + \max(\hat{y}_{ij}, \epsilon))
        - \log(1 + \max(y_{ij}, \epsilon))\right)^2, \quad \epsilon = 10^{-7}

    Values below :math:`\epsilon` (negative ones too) count as :math:`\epsilon`, as in Keras.
    """
    return _mean_error("msle", y_true, y_pred, sample_weight,
                       lambda true, pred: np.square(np.log1p(np.maximum(pred, KERAS_EPSILON))
                                                    - np.log1p(np.maximum(true, KERAS_EPSILON))))


def _r2_per_column(metric: str, y_true: ArrayLike, y_pred: ArrayLike,
                   sample_weight: ArrayLike | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(R2 per column, weighted total sum of squares per column, number of elements)."""
    true_2d, pred_2d = regression_pair(metric, y_true, y_pred)
    weights = sample_weights(metric, sample_weight, *true_2d.shape)
    if weights is None:
        weights = np.ones_like(true_2d)
    weights = np.broadcast_to(weights.reshape(len(true_2d), -1), true_2d.shape)
    mean = ratio(np.sum(weights * true_2d, axis=0), np.sum(weights, axis=0))
    # the centred (two-pass) sum of squares: sum(w y^2) - sum(w y) mean, Keras' one-pass form,
    # loses every digit when the spread is small against the mean
    total = np.sum(weights * np.square(true_2d - mean), axis=0)
    residual = np.sum(weights * np.square(true_2d - pred_2d), axis=0)
    # compare values, not the total: the mean of equal numbers can be off in the last bit,
    # which would turn a constant column's total of 0 into a tiny, meaningless divisor
    counted = weights != 0
    constant = (np.max(np.where(counted, true_2d, -np.inf), axis=0)
                <= np.min(np.where(counted, true_2d, np.inf), axis=0))
    scores = np.where(constant, np.where(residual == 0, 1.0, 0.0),
                      1.0 - ratio(residual, np.where(constant, 1.0, total)))
    return scores, np.where(constant, 0.0, total), true_2d.size


def r2(y_true: ArrayLike, y_pred: ArrayLike, sample_weight: ArrayLike | None = None) -> float:
    r"""Coefficient of determination: 1 minus the error relative to predicting the mean.

    .. math:: R^2_j = 1 - \frac{\sum_i w_i (y_{ij} - \hat{y}_{ij})^2}
        {\sum_i w_i (y_{ij} - \bar{y}_j)^2}, \quad \bar{y}_j = \frac{\sum_i w_i y_{ij}}{\sum_i w_i}

    1 is perfect, 0 is no better than the mean, and it can be negative. With several output
    columns the :math:`R^2_j` are averaged. A constant target column scores 1 if predicted
    exactly and 0 otherwise (scikit-learn's convention), never NaN. Needs at least 2 samples.
    scikit-learn's ``r2_score``; :func:`r2_score` is Keras' ``R2Score`` with its options.
    """
    true_2d, _ = regression_pair("r2", y_true, y_pred)
    if len(true_2d) < 2:
        raise ValueError("r2: needs at least 2 samples, got 1")
    scores, _, _ = _r2_per_column("r2", y_true, y_pred, sample_weight)
    return float(np.mean(scores))


CLASS_AGGREGATIONS = ("uniform_average", "variance_weighted_average", None)


def r2_score(y_true: ArrayLike, y_pred: ArrayLike,
             class_aggregation: str | None = "uniform_average", num_regressors: int = 0,
             sample_weight: ArrayLike | None = None) -> float | np.ndarray:
    r"""Coefficient of determination per output column, aggregated (Keras' ``R2Score``).

    .. math:: R^2_j = 1 - \frac{\sum_i w_{ij} (y_{ij} - \hat{y}_{ij})^2}
        {\sum_i w_{ij} (y_{ij} - \bar{y}_j)^2}, \qquad
        R^2_{\mathrm{adj}} = 1 - (1 - R^2) \frac{n - 1}{n - p - 1}

    ``class_aggregation``: ``"uniform_average"`` is the mean of the :math:`R^2_j`;
    ``"variance_weighted_average"`` weighs each by its denominator (the target's weighted
    spread); ``None`` returns the float64 array of the :math:`R^2_j`. ``num_regressors``
    :math:`p > 0` gives the adjusted :math:`R^2`, with :math:`n` the number of elements of
    ``y_true`` (N times D, as Keras counts); when :math:`p \ge n - 1` that is undefined, and
    the plain :math:`R^2` is returned with a warning, as in Keras. ``sample_weight`` is a
    number, one weight per sample (N,) or (N, 1), or one per element (N, D).

    A constant target column scores 1 if predicted exactly (Keras: NaN) and 0 otherwise.
    """
    if class_aggregation not in CLASS_AGGREGATIONS:
        raise ValueError(f"r2_score: class_aggregation must be one of 'uniform_average', "
                         f"'variance_weighted_average', None, got {class_aggregation!r}")
    if not is_int(num_regressors) or num_regressors < 0:
        raise ValueError(f"r2_score: num_regressors must be an integer >= 0 (0 is the plain "
                         f"R2), got {num_regressors!r}")
    scores, totals, num_values = _r2_per_column("r2_score", y_true, y_pred, sample_weight)
    if class_aggregation == "uniform_average":
        score = np.mean(scores)
    elif class_aggregation == "variance_weighted_average":
        # every column constant: no spread to weigh by, so each counts alike (scikit-learn)
        score = (np.dot(totals, scores) / totals.sum() if totals.sum() > 0
                 else np.mean(scores))
    else:
        score = scores
    if num_regressors:
        if num_regressors >= num_values - 1:
            warnings.warn(f"r2_score: the adjusted R2 needs more values than num_regressors + 1 "
                          f"= {num_regressors + 1}, y_true has {num_values}; returning the "
                          f"plain R2", UserWarning, stacklevel=2)
        else:
            score = 1.0 - (1.0 - score) * (num_values - 1) / (num_values - num_regressors - 1)
    return score if class_aggregation is None else float(score)
