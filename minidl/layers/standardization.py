r"""Standardization over some axes, the step both normalization layers share
(``minidl.layers.normalization``), in one process or over the whole batch of data-parallel
training:

.. math::
    \hat{x} = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad
    \frac{\partial L}{\partial x} = \frac{1}{\sqrt{\sigma^2 + \epsilon}} \Big(\hat{G}
        - \operatorname{mean}(\hat{G}) - \hat{x} \operatorname{mean}(\hat{G} \odot \hat{x})\Big)

with :math:`\hat{G} = \partial L / \partial \hat{x}` and every mean over the same values as
:math:`\mu` and the (biased) :math:`\sigma^2`.
"""

from __future__ import annotations

import math

import numpy as np

from minidl.layers.base import BatchShard


def standardize(x: np.ndarray, axes: tuple[int, ...],
                epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_hat, mean, variance, inv_std)`` over ``axes`` (the statistics with kept dims);
    the variance is the biased one, dividing by the number of values."""
    # subtract one value of each slice first: a constant slice is then exactly 0 (its mean
    # computed directly can be an ulp off, and an ulp of 1e6 in float32 is 0.06, which
    # 1/sqrt(epsilon) would blow up to ±0.9)
    first = x[tuple(slice(0, 1) if a in axes else slice(None) for a in range(x.ndim))]
    centered = x - first
    shift = centered.mean(axis=axes, keepdims=True)  # mean = first + shift
    centered -= shift  # in place (here and below): x - mean, then x̂, in one array
    variance = np.mean(np.square(centered), axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(variance + epsilon)
    centered *= inv_std
    return centered, first + shift, variance, inv_std


def standardize_backward(grad_x_hat: np.ndarray, x_hat: np.ndarray, inv_std: np.ndarray,
                         axes: tuple[int, ...]) -> np.ndarray:
    """∂L/∂x from ∂L/∂x̂ through x̂ = (x − μ)/sqrt(σ² + ε), with μ and σ² over ``axes``."""
    return inv_std * (grad_x_hat - grad_x_hat.mean(axis=axes, keepdims=True)
                      - x_hat * np.mean(grad_x_hat * x_hat, axis=axes, keepdims=True))


def standardize_across(x: np.ndarray, axes: tuple[int, ...], epsilon: float,
                       shard: BatchShard) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                   np.ndarray]:
    """``standardize`` over the whole batch of data-parallel training, of which ``x`` holds
    the rows ``shard.start:shard.stop``: the same two passes, each sum over ``axes`` taken
    on every process's rows (``shard.sum_across``), and the same shift by the batch's
    first value of each slice (that of the process holding row 0)."""
    count = shard.rows * math.prod(x.shape[a] for a in axes if a != 0)
    first_shape = tuple(1 if a in axes else n for a, n in enumerate(x.shape))
    first = np.zeros(first_shape, dtype=x.dtype)
    if shard.start == 0:
        first[...] = x[tuple(slice(0, 1) if a in axes else slice(None) for a in range(x.ndim))]
    first = shard.sum_across(first)  # every other process adds zeros: exactly row 0's values
    centered = x - first
    shift = shard.sum_across(centered.sum(axis=axes, keepdims=True)) / count
    centered -= shift
    variance = shard.sum_across(np.square(centered).sum(axis=axes, keepdims=True)) / count
    inv_std = 1.0 / np.sqrt(variance + epsilon)
    centered *= inv_std
    return centered, first + shift, variance, inv_std


def standardize_backward_across(grad_x_hat: np.ndarray, x_hat: np.ndarray,
                                inv_std: np.ndarray, axes: tuple[int, ...],
                                shard: BatchShard) -> np.ndarray:
    """``standardize_backward`` for ``standardize_across``: its two means are over the
    whole batch, so their sums are taken on every process's rows, in one call."""
    count = shard.rows * math.prod(x_hat.shape[a] for a in axes if a != 0)
    sums = shard.sum_across(np.stack([grad_x_hat.sum(axis=axes, keepdims=True),
                                      (grad_x_hat * x_hat).sum(axis=axes, keepdims=True)]))
    return inv_std * (grad_x_hat - sums[0] / count - x_hat * (sums[1] / count))
