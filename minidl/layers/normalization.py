r"""Normalization layers: ``BatchNormalization`` and ``LayerNormalization`` (Keras' layers).

Both standardise their input over some axes and then scale it by ``gamma`` and shift it by
``beta``; they differ in which axes the statistics run over. With :math:`\mu, \sigma^2` the
mean and (biased) variance over those axes, :math:`m` values each:

.. math::
    \hat{x} = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \qquad y = \gamma \hat{x} + \beta

and, given :math:`G = \partial L / \partial y` and :math:`\hat{G} = \gamma G`, the chain rule
through :math:`\mu` and :math:`\sigma^2` (both functions of every :math:`x` they average):

.. math::
    \frac{\partial L}{\partial x} = \frac{1}{\sqrt{\sigma^2 + \epsilon}} \Big(\hat{G}
        - \operatorname{mean}(\hat{G}) - \hat{x} \operatorname{mean}(\hat{G} \odot \hat{x})\Big)

with the means over the same :math:`m` values (``minidl.layers.standardization``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from minidl.layers.base import BatchShard, Layer, _layer_dtype
from minidl.layers.initializers import INITIALIZERS, check_initializer
from minidl.layers.standardization import (
    standardize,
    standardize_across,
    standardize_backward,
    standardize_backward_across,
)
from minidl.parameter import Parameter


def _feature_axes(axes: list[int], input_shape: tuple[int, ...],
                  layer_name: str) -> tuple[int, ...]:
    """``axes`` of a batch (axis 0 the batch) as non-negative ints, checked: distinct, in
    increasing order, none the batch axis."""
    ndim = len(input_shape) + 1
    named = [a % ndim for a in axes if -ndim <= a < ndim]
    if len(named) != len(axes) or 0 in named or named != sorted(set(named)):
        raise ValueError(f"{layer_name}: axis {axes if len(axes) > 1 else axes[0]} does not "
                         f"name feature axes of inputs of shape "
                         f"(batch, {', '.join(map(str, input_shape))}), distinct and in "
                         f"increasing order; the batch axis 0 cannot be one")
    return tuple(named)


class _AffineNormalization(Layer):
    r"""What both layers share: the arguments ``epsilon``, ``center``, ``scale``, the
    initializers and ``input_shape``; the parameters ``gamma`` and ``beta`` over the axes
    ``_param_axes``, and the affine step :math:`y = \gamma \hat{x} + \beta` with its
    parameter gradients (sums over the other axes, ``_other_axes``)."""

    def __init__(self, epsilon: float, center: bool, scale: bool, beta_initializer: str,
                 gamma_initializer: str, input_shape: Sequence[int] | None) -> None:
        super().__init__(input_shape=input_shape)
        name = type(self).__name__
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not (
                0 < epsilon < np.inf):
            raise ValueError(f"{name}: epsilon must be a number > 0 (it keeps the division "
                             f"by sqrt(variance + epsilon) finite), got {epsilon!r}")
        for argument, value in (("center", center), ("scale", scale)):
            if not isinstance(value, bool):
                raise TypeError(f"{name}: {argument} must be True or False, got {value!r}")
        self.epsilon = float(epsilon)
        self.center, self.scale = center, scale
        self.beta_initializer = check_initializer(beta_initializer, "beta_initializer", name)
        self.gamma_initializer = check_initializer(gamma_initializer, "gamma_initializer", name)
        self.gamma: Parameter | None = None
        self.beta: Parameter | None = None
        self.dtype: np.dtype | None = None
        self._param_axes: tuple[int, ...] = ()
        self._other_axes: tuple[int, ...] = ()
        self._broadcast_shape: tuple[int, ...] = ()
        self._output_shape: tuple[int, ...] | None = None

    def _affine_names(self) -> list[str]:
        return ["gamma"] * self.scale + ["beta"] * self.center

    def _build_affine(self, input_shape: tuple[int, ...], param_axes: tuple[int, ...],
                      dtype: DTypeLike, rng: np.random.Generator) -> None:
        """Create ``gamma``/``beta`` of shape ``input_shape`` along ``param_axes``."""
        self.dtype = _layer_dtype(dtype, type(self).__name__)
        ndim = len(input_shape) + 1
        self._param_axes = param_axes
        self._other_axes = tuple(a for a in range(ndim) if a not in param_axes)
        self._broadcast_shape = tuple(input_shape[a - 1] if a in param_axes else 1
                                      for a in range(ndim))
        shape = tuple(input_shape[a - 1] for a in param_axes)
        self.gamma = self.beta = None
        if self.scale:
            self.gamma = Parameter(self._initial(self.gamma_initializer, shape, rng), "gamma")
        if self.center:
            self.beta = Parameter(self._initial(self.beta_initializer, shape, rng), "beta")
        self._output_shape = None

    def _initial(self, initializer: str, shape: tuple[int, ...],
                 rng: np.random.Generator) -> np.ndarray:
        return INITIALIZERS[initializer](shape, rng).astype(self.dtype)

    def parameters(self) -> list[Parameter]:
        """``[gamma, beta]``, without those that ``scale``/``center`` turn off."""
        return [p for p in (self.gamma, self.beta) if p is not None]

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        self.weight_shapes(tuple(input_shape))  # checks the axes
        return tuple(input_shape)

    def _checked_input(self, x: Any) -> np.ndarray:
        """``x`` in the layer's dtype, with the rank and sizes it was built for."""
        x = self._float_input(x)  # builds the layer on its first call
        expected = self._broadcast_shape
        if x.ndim != len(expected) or any(x.shape[a] != expected[a] for a in self._param_axes):
            sizes = ", ".join(str(n) if a in self._param_axes else "*"
                              for a, n in enumerate(expected[1:], start=1))
            raise ValueError(f"{type(self).__name__}: built for inputs of shape (batch, "
                             f"{sizes}), got inputs of shape {x.shape}")
        return x if x.dtype == self.dtype else x.astype(self.dtype)

    def _affine_forward(self, x_hat: np.ndarray) -> np.ndarray:
        """y = γ x̂ + β, a new array (x̂ stays cached for backward)."""
        y = (x_hat.copy() if self.gamma is None
             else x_hat * self.gamma.data.reshape(self._broadcast_shape))
        if self.beta is not None:
            y += self.beta.data.reshape(self._broadcast_shape)
        self._output_shape = y.shape
        return y

    def _affine_backward(self, grad_y: np.ndarray, x_hat: np.ndarray | None) -> np.ndarray:
        """Write ∂L/∂γ = Σ G ⊙ x̂ and ∂L/∂β = Σ G (sums over ``_other_axes``) into their
        ``.grad``; return ∂L/∂x̂ = γ G. ``x_hat`` is needed only with ``gamma``."""
        # out=: assign into the existing arrays, which optimizers hold by reference
        if self.beta is not None:
            np.sum(grad_y, axis=self._other_axes, out=self.beta.grad)
        if self.gamma is None:
            return grad_y
        np.sum(grad_y * x_hat, axis=self._other_axes, out=self.gamma.grad)
        return grad_y * self.gamma.data.reshape(self._broadcast_shape)


class BatchNormalization(_AffineNormalization):
    r"""Normalise each feature by the statistics of the batch in training, and by their
    moving averages at inference (Keras' layer, Ioffe and Szegedy 2015).

    ``axis`` (an int, default the last) is the features' axis: one ``gamma``, ``beta``,
    ``moving_mean`` and ``moving_variance`` per position along it, all of shape
    ``(features,)``; the statistics run over every other axis, batch included, :math:`m`
    values per feature (:math:`m = N H W` for images ``(N, H, W, C)``).

    Training, with the batch's mean and biased variance, forward and backward
    (:math:`G = \partial L / \partial y`, sums and means over the :math:`m` values):

    .. math::
        \mu_B = \tfrac{1}{m} \textstyle\sum x, \quad
        \sigma_B^2 = \tfrac{1}{m} \textstyle\sum (x - \mu_B)^2, \quad
        \hat{x} = \frac{x - \mu_B}{\sqrt{\sigma_B^2 + \epsilon}}, \quad
        y = \gamma \hat{x} + \beta

        \frac{\partial L}{\partial \beta} = \textstyle\sum G, \quad
        \frac{\partial L}{\partial \gamma} = \textstyle\sum G \odot \hat{x}, \quad
        \frac{\partial L}{\partial x} = \frac{\gamma}{\sqrt{\sigma_B^2 + \epsilon}}
            \big(G - \operatorname{mean} G - \hat{x} \operatorname{mean}(G \odot \hat{x})\big)

    and then, exactly as Keras 3 (``moving * momentum + batch * (1 - momentum)``):

    .. math::
        \mu_{mov} \leftarrow \rho\, \mu_{mov} + (1 - \rho)\, \mu_B, \qquad
        \sigma^2_{mov} \leftarrow \rho\, \sigma^2_{mov} + (1 - \rho)\, \sigma^2_B,
        \qquad \rho = \text{momentum}

    Inference (``training=False``: ``predict``, ``evaluate``, serving), the moving statistics
    are constants, so the map is affine:

    .. math::
        y = \gamma \frac{x - \mu_{mov}}{\sqrt{\sigma^2_{mov} + \epsilon}} + \beta, \qquad
        \frac{\partial L}{\partial x} = \frac{\gamma\, G}{\sqrt{\sigma^2_{mov} + \epsilon}}

    with the same parameter gradients. The moving variance averages the *biased* batch
    variance :math:`\sigma_B^2`, as Keras 3 does (``ops.moments``). PyTorch's
    ``BatchNorm`` normalises with the biased variance too, but its ``running_var`` averages
    the unbiased one, :math:`\tfrac{m}{m-1} \sigma_B^2`, and its ``momentum`` is
    :math:`1 - \rho` (PyTorch's default 0.1 is Keras' 0.9; Keras' default is 0.99):
    weights taken from PyTorch carry over, moving variances computed by each differ.

    ``gamma`` and ``beta`` are parameters; ``moving_mean`` and ``moving_variance`` are the
    layer's state (``state()``), saved with the model (``layers.1.moving_mean``) but not
    trained. ``get_weights`` lists them in Keras' order: gamma, beta, moving_mean,
    moving_variance. A batch of one trains without error (its variance is 0 and the output
    ``beta``), as in Keras; PyTorch refuses it.

    In data-parallel training (``batch_shard``, ``minidl.distributed``) the statistics are
    synchronised: :math:`\mu_B` and :math:`\sigma_B^2` are those of the whole batch, their
    sums (and the two sums of the backward means) taken over every process's rows, so N
    processes train as one; PyTorch's ``SyncBatchNorm``, not DDP's default of per-process
    statistics.
    """

    def __init__(self, axis: int = -1, momentum: float = 0.99, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: str = "zeros",
                 gamma_initializer: str = "ones", moving_mean_initializer: str = "zeros",
                 moving_variance_initializer: str = "ones",
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer,
                         input_shape)
        if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)):
            raise TypeError(f"BatchNormalization: axis must be an int (the features' axis), "
                            f"got {axis!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not (
                0 <= momentum <= 1):
            raise ValueError(f"BatchNormalization: momentum must be a number in [0, 1] (the "
                             f"weight of the old moving statistics), got {momentum!r}")
        self.axis = int(axis)
        self.momentum = float(momentum)
        self.moving_mean_initializer = check_initializer(
            moving_mean_initializer, "moving_mean_initializer", "BatchNormalization")
        self.moving_variance_initializer = check_initializer(
            moving_variance_initializer, "moving_variance_initializer", "BatchNormalization")
        self.moving_mean: np.ndarray | None = None
        self.moving_variance: np.ndarray | None = None
        # cached by forward: training x̂ and 1/sqrt(σ_B² + ε); inference x and 1/sqrt(σ²_mov + ε)
        self._x_hat: np.ndarray | None = None
        self._x: np.ndarray | None = None
        self._inv_std: np.ndarray | None = None
        self._shard: BatchShard | None = None  # the batch_shard of the training forward

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        (feature_axis,) = _feature_axes([self.axis], tuple(input_shape), "BatchNormalization")
        shape = (input_shape[feature_axis - 1],)
        return dict.fromkeys([*self._affine_names(), "moving_mean", "moving_variance"], shape)

    def build(self, input_shape: tuple[int, ...], *, dtype: DTypeLike = "float32",
              rng: np.random.Generator | None = None) -> None:
        """Create ``gamma``, ``beta``, ``moving_mean``, ``moving_variance`` (features,) in
        ``dtype`` from their initializers. Building again starts them afresh."""
        input_shape = tuple(input_shape)
        feature_axes = _feature_axes([self.axis], input_shape, "BatchNormalization")
        rng = np.random.default_rng() if rng is None else rng
        self._build_affine(input_shape, feature_axes, dtype, rng)
        shape = (input_shape[feature_axes[0] - 1],)
        self.moving_mean = self._initial(self.moving_mean_initializer, shape, rng)
        self.moving_variance = self._initial(self.moving_variance_initializer, shape, rng)
        self._x_hat = self._x = self._inv_std = None
        self.built = True

    def state(self) -> dict[str, np.ndarray]:
        if self.moving_mean is None:
            return {}
        return {"moving_mean": self.moving_mean, "moving_variance": self.moving_variance}

    def check_state(self) -> None:
        if not (np.all(np.isfinite(self.moving_mean)) and np.all(self.moving_variance >= 0)
                and np.all(np.isfinite(self.moving_variance))):
            raise ValueError("the moving mean must be finite and the moving variance finite "
                             "and >= 0")

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._checked_input(x)
        if training:
            # data-parallel training (batch_shard): the statistics of the whole batch, summed
            # over the processes, so that N processes normalise as one does
            self._shard = self.batch_shard
            x_hat, mean, variance, inv_std = (
                standardize(x, self._other_axes, self.epsilon) if self._shard is None else
                standardize_across(x, self._other_axes, self.epsilon, self._shard))
            # in place: whoever holds the state arrays (a model's weights) sees the new values
            self.moving_mean *= self.momentum
            self.moving_mean += mean.reshape(-1) * (1.0 - self.momentum)
            self.moving_variance *= self.momentum
            self.moving_variance += variance.reshape(-1) * (1.0 - self.momentum)
            self._x_hat, self._x, self._inv_std = x_hat, None, inv_std
            return self._affine_forward(x_hat)
        inv_std = (1.0 / np.sqrt(self.moving_variance + self.epsilon)).reshape(
            self._broadcast_shape)
        self._x_hat, self._x, self._inv_std = None, x, inv_std
        # folded into one multiply and one add per element: this is the serving path
        multiplier, offset = self.inference_scale_and_shift()
        y = x * multiplier.reshape(self._broadcast_shape)
        y += offset.reshape(self._broadcast_shape)
        self._output_shape = y.shape
        return y

    def inference_scale_and_shift(self) -> tuple[np.ndarray, np.ndarray]:
        r"""The inference forward folded into :math:`y = x \odot m + b`, one :math:`m` and
        :math:`b` per feature: :math:`m = \gamma / \sqrt{\sigma^2_{moving} + \epsilon}`,
        :math:`b = \beta - \mu_{moving}\, m` (what an exported graph computes too)."""
        inv_std = 1.0 / np.sqrt(self.moving_variance + self.epsilon)
        multiplier = inv_std if self.gamma is None else inv_std * self.gamma.data
        offset = -self.moving_mean * multiplier
        if self.beta is not None:
            offset += self.beta.data
        return multiplier, offset

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        """∂L/∂x (None when ``needs_input_grad`` is False); ∂L/∂γ, ∂L/∂β into ``.grad``.
        Through the batch statistics after a training forward, affine after inference."""
        grad_y = self._incoming_grad(grad_y, self._output_shape, self.dtype)
        if self._x_hat is not None:
            grad_x_hat = self._affine_backward(grad_y, self._x_hat)
            if not self.needs_input_grad:
                return None
            if self._shard is not None:
                return standardize_backward_across(grad_x_hat, self._x_hat, self._inv_std,
                                                    self._other_axes, self._shard)
            return standardize_backward(grad_x_hat, self._x_hat, self._inv_std,
                                         self._other_axes)
        x_hat = None if self.gamma is None else (
            (self._x - self.moving_mean.reshape(self._broadcast_shape)) * self._inv_std)
        grad_x_hat = self._affine_backward(grad_y, x_hat)
        return grad_x_hat * self._inv_std if self.needs_input_grad else None


class LayerNormalization(_AffineNormalization):
    r"""Normalise each example by its own statistics over ``axis`` (Keras' layer, Ba et al.
    2016): the same in training and at inference, nothing kept but ``gamma`` and ``beta``.

    ``axis`` is an int or a list of ints (distinct, increasing, not the batch axis 0);
    ``gamma`` and ``beta`` have the shape of the input along those axes (Keras' shapes:
    ``(features,)`` for the default ``axis=-1``). Per example, over the :math:`m` values
    along ``axis`` (the means below too), forward and backward with
    :math:`G = \partial L / \partial y`:

    .. math::
        \mu = \tfrac{1}{m} \textstyle\sum x, \quad
        \sigma^2 = \tfrac{1}{m} \textstyle\sum (x - \mu)^2, \quad
        \hat{x} = \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}}, \quad
        y = \gamma \odot \hat{x} + \beta

        \hat{G} = \gamma \odot G, \quad
        \frac{\partial L}{\partial x} = \frac{1}{\sqrt{\sigma^2 + \epsilon}}
            \big(\hat{G} - \operatorname{mean} \hat{G}
                 - \hat{x} \operatorname{mean}(\hat{G} \odot \hat{x})\big)

    and, summed over the batch and the axes not normalised,
    :math:`\partial L / \partial \gamma = \sum G \odot \hat{x}`,
    :math:`\partial L / \partial \beta = \sum G`. Unlike batch normalization, :math:`\gamma`
    varies inside the means here, hence :math:`\hat{G}`. ``training`` changes nothing.
    """

    def __init__(self, axis: int | Sequence[int] = -1, epsilon: float = 1e-3,
                 center: bool = True, scale: bool = True, beta_initializer: str = "zeros",
                 gamma_initializer: str = "ones",
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__(epsilon, center, scale, beta_initializer, gamma_initializer,
                         input_shape)
        axes = list(axis) if isinstance(axis, (list, tuple)) else [axis]
        if not axes or any(isinstance(a, bool) or not isinstance(a, (int, np.integer))
                           for a in axes):
            raise TypeError(f"LayerNormalization: axis must be an int or a non-empty list of "
                            f"ints, got {axis!r}")
        # as Keras keeps it: an int stays an int, a list a list (JSON-able either way)
        self.axis = [int(a) for a in axes] if isinstance(axis, (list, tuple)) else int(axis)
        self._x_hat: np.ndarray | None = None
        self._inv_std: np.ndarray | None = None

    def _axes(self) -> list[int]:
        return self.axis if isinstance(self.axis, list) else [self.axis]

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        axes = _feature_axes(self._axes(), tuple(input_shape), "LayerNormalization")
        return dict.fromkeys(self._affine_names(), tuple(input_shape[a - 1] for a in axes))

    def build(self, input_shape: tuple[int, ...], *, dtype: DTypeLike = "float32",
              rng: np.random.Generator | None = None) -> None:
        """Create ``gamma`` and ``beta`` (the input's shape along ``axis``) in ``dtype``."""
        input_shape = tuple(input_shape)
        axes = _feature_axes(self._axes(), input_shape, "LayerNormalization")
        rng = np.random.default_rng() if rng is None else rng
        self._build_affine(input_shape, axes, dtype, rng)
        self._x_hat = self._inv_std = None
        self.built = True

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._checked_input(x)
        self._x_hat, _, _, self._inv_std = standardize(x, self._param_axes, self.epsilon)
        return self._affine_forward(self._x_hat)

    def backward(self, grad_y: np.ndarray) -> np.ndarray | None:
        """∂L/∂x (None when ``needs_input_grad`` is False); ∂L/∂γ, ∂L/∂β into ``.grad``."""
        grad_y = self._incoming_grad(grad_y, self._output_shape, self.dtype)
        grad_x_hat = self._affine_backward(grad_y, self._x_hat)
        if not self.needs_input_grad:
            return None
        return standardize_backward(grad_x_hat, self._x_hat, self._inv_std, self._param_axes)
