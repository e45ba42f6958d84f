"""Weight penalties added to the loss during training: L1, L2, both, and orthogonality
(Keras' definitions, names, defaults and argument checks).

A penalty is called on a weight array for its value (added to the reported loss) and asked
for its gradient (added to the parameter's ``grad``). Penalties are plain data: their
configuration is a JSON-able dict, and :func:`serialize` / :func:`deserialize` turn them
into ``{"class_name": ..., "config": ...}`` and back through the ``REGULARIZERS`` registry,
never by importing a name; :func:`get` also takes Keras' names (``"l2"``, ...).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from minidl.functional._checks import _as_float_array
from minidl.registry import Configurable, class_and_config, resolve, to_spec


def _check_factor(value: float, owner: str, name: str) -> float:
    """Keras' ``validate_float_arg``: a finite number >= 0, else a ValueError naming it."""
    if (isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value)
            or value < 0):
        raise ValueError(f"{owner}: Invalid value for argument {name}: expected a "
                         f"non-negative float. Received: {name}={value!r}")
    return float(value)


def _as_weights(w: ArrayLike, owner: str) -> np.ndarray:
    """``w`` as a float array of its own dtype; integers and booleans become float64."""
    return _as_float_array(w, owner, "w")


class Regularizer(Configurable):
    """A penalty ``R(w)`` on a weight array: ``__call__`` gives its value, ``grad`` its gradient.

    Subclasses set their factors in ``__init__`` under the names of the constructor
    arguments, so that ``get_config`` / ``from_config`` round-trip them.
    """

    def __call__(self, w: ArrayLike) -> float:
        raise NotImplementedError  # abstract

    def grad(self, w: ArrayLike) -> np.ndarray:
        """``dR / dw``, an array of the shape and dtype of ``w``."""
        raise NotImplementedError  # abstract


class L1(Regularizer):
    r"""Lasso penalty: pushes weights to exactly zero.

    .. math::
        R(w) = \lambda_1 \sum_i |w_i|, \qquad
        \frac{\partial R}{\partial w_i} = \lambda_1 \operatorname{sign}(w_i)

    with ``sign(0) = 0`` (a subgradient), so a weight at zero is left there. ``l1=None``
    means the default 0.01, as in Keras.
    """

    def __init__(self, l1: float | None = 0.01) -> None:
        self.l1 = _check_factor(0.01 if l1 is None else l1, "L1", "l1")

    def __call__(self, w: ArrayLike) -> float:
        return self.l1 * float(np.sum(np.abs(_as_weights(w, "L1"))))

    def grad(self, w: ArrayLike) -> np.ndarray:
        return self.l1 * np.sign(_as_weights(w, "L1"))


class L2(Regularizer):
    r"""Ridge penalty (weight decay), Keras' form with no factor ½.

    .. math::
        R(w) = \lambda_2 \sum_i w_i^2, \qquad \frac{\partial R}{\partial w_i} = 2 \lambda_2 w_i

    ``l2=None`` means the default 0.01, as in Keras.
    """

    def __init__(self, l2: float | None = 0.01) -> None:
        self.l2 = _check_factor(0.01 if l2 is None else l2, "L2", "l2")

    def __call__(self, w: ArrayLike) -> float:
        return self.l2 * float(np.sum(np.square(_as_weights(w, "L2"))))

    def grad(self, w: ArrayLike) -> np.ndarray:
        return 2 * self.l2 * _as_weights(w, "L2")


class L1L2(Regularizer):
    r"""Elastic-net penalty: the sum of :class:`L1` and :class:`L2`.

    .. math::
        R(w) = \lambda_1 \sum_i |w_i| + \lambda_2 \sum_i w_i^2, \qquad
        \frac{\partial R}{\partial w_i} = \lambda_1 \operatorname{sign}(w_i) + 2 \lambda_2 w_i

    Keras' defaults: no penalty unless asked (``None`` also means 0), and the name
    ``"l1_l2"`` in :func:`get` gives 0.01 for both.
    """

    def __init__(self, l1: float | None = 0.0, l2: float | None = 0.0) -> None:
        self.l1 = _check_factor(0.0 if l1 is None else l1, "L1L2", "l1")
        self.l2 = _check_factor(0.0 if l2 is None else l2, "L1L2", "l2")

    def __call__(self, w: ArrayLike) -> float:
        weights = _as_weights(w, "L1L2")
        return (self.l1 * float(np.sum(np.abs(weights)))
                + self.l2 * float(np.sum(np.square(weights))))

    def grad(self, w: ArrayLike) -> np.ndarray:
        weights = _as_weights(w, "L1L2")
        return self.l1 * np.sign(weights) + 2 * self.l2 * weights


class OrthogonalRegularizer(Regularizer):
    r"""Pushes the rows (``mode="rows"``) or the columns (``mode="columns"``) of a 2-D weight
    towards being orthogonal: the mean absolute cosine over the ``P = n(n-1)/2`` pairs of the
    ``n`` rows (columns), times ``factor`` (``λ``).

    With ``u_i = w_i / max(‖w_i‖, ε)`` (``ε = 1e-7``), ``G = U Uᵀ`` and ``S = sign(G)`` with
    a zero diagonal:

    .. math::
        R(W) = \frac{\lambda}{2P} \sum_{i \ne j} |u_i \cdot u_j|, \qquad
        \frac{\partial R}{\partial w_i} = \frac{g_i - u_i (u_i \cdot g_i)}{\lVert w_i \rVert},
        \quad g = \frac{\lambda}{P} S U

    (``g_i / ε`` for a row of norm at most ε, where the normalisation is a constant scale).
    A ``Dense`` kernel ``(in, units)`` in rows mode makes the input features' weight vectors
    orthogonal; in columns mode, the units'.
    """

    def __init__(self, factor: float = 0.01, mode: str = "rows") -> None:
        self.factor = _check_factor(factor, "OrthogonalRegularizer", "factor")
        if mode not in ("rows", "columns"):
            raise ValueError('Invalid value for argument `mode`. Expected one of '
                             f'{{"rows", "columns"}}. Received: mode={mode}')
        self.mode = mode

    def _unit_rows(self, w: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """``(rows, norms, unit rows, pairs)``: the matrix as rows, whichever the mode."""
        weights = _as_weights(w, "OrthogonalRegularizer")
        if weights.ndim != 2:
            raise ValueError(f"Inputs to OrthogonalRegularizer must have rank 2. "
                             f"Received: inputs.shape={weights.shape}")
        rows = weights if self.mode == "rows" else weights.T
        if len(rows) < 2:
            raise ValueError(f"OrthogonalRegularizer: mode={self.mode!r} needs at least 2 "
                             f"{self.mode} to compare, got weights of shape {weights.shape}")
        norms = np.sqrt(np.sum(rows**2, axis=1, keepdims=True))
        floor = np.asarray(1e-7, rows.dtype)
        return rows, norms, rows / np.maximum(norms, floor), len(rows) * (len(rows) - 1) / 2

    def __call__(self, w: ArrayLike) -> float:
        _, _, units, pairs = self._unit_rows(w)
        cosines = units @ units.T
        np.fill_diagonal(cosines, 0)
        return self.factor * 0.5 * float(np.sum(np.abs(cosines))) / pairs

    def grad(self, w: ArrayLike) -> np.ndarray:
        rows, norms, units, pairs = self._unit_rows(w)
        signs = np.sign(units @ units.T)
        np.fill_diagonal(signs, 0)
        grad_units = (self.factor / pairs) * (signs @ units)
        floor = np.asarray(1e-7, rows.dtype)
        # through u = w / ‖w‖: project out the row's own direction, then divide by its norm
        tangent = grad_units - units * np.sum(units * grad_units, axis=1, keepdims=True)
        grad_rows = np.where(norms > floor, tangent, grad_units) / np.maximum(norms, floor)
        grad_rows = grad_rows.astype(rows.dtype, copy=False)
        return grad_rows if self.mode == "rows" else grad_rows.T


REGULARIZERS: dict[str, type[Regularizer]] = {
    "L1": L1, "L2": L2, "L1L2": L1L2, "OrthogonalRegularizer": OrthogonalRegularizer}

# Keras' snake-case names for get; "l1_l2" is Keras' documented string, 0.01 for both
_NAMES: dict[str, Any] = {
    "l1": L1, "l2": L2, "l1l2": L1L2, "l1_l2": lambda: L1L2(l1=0.01, l2=0.01),
    "orthogonal_regularizer": OrthogonalRegularizer,
}


def get(identifier: str | Regularizer | type[Regularizer] | Mapping[str, Any] | None,
        ) -> Regularizer | None:
    """A penalty, as Keras' ``regularizers.get``: None stays None, a Regularizer is returned
    as is, a Regularizer class is instantiated, a ``{"class_name", "config"}`` dict is
    deserialized, and a name (a class name in ``REGULARIZERS`` or ``"l1"``, ``"l2"``,
    ``"l1l2"``, ``"l1_l2"``, ``"orthogonal_regularizer"``) gives the default penalty."""
    return resolve(identifier, Regularizer, _NAMES, REGULARIZERS, deserialize, "regularizer")


def serialize(regularizer: Regularizer | None) -> dict[str, Any] | None:
    """``{"class_name": ..., "config": ...}`` for a registered penalty; None for None."""
    if regularizer is None:
        return None
    if not isinstance(regularizer, Regularizer):
        raise TypeError(f"serialize: expected a Regularizer or None, "
                        f"got {type(regularizer).__name__}")
    return to_spec(regularizer, REGULARIZERS, "minidl.regularizers.REGULARIZERS")


def deserialize(spec: Mapping[str, Any] | str | Regularizer | None) -> Regularizer | None:
    """The penalty described by ``spec``: None, a Regularizer (returned as is), a name as
    :func:`get` takes it (``"l2"``: layers accept Keras' strings), or a dict
    ``{"class_name": name in REGULARIZERS, "config": {...}}``."""
    if spec is None or isinstance(spec, (Regularizer, str)):
        return get(spec)
    cls, config = class_and_config(spec, REGULARIZERS, "regularizer")
    return cls.from_config(config)
