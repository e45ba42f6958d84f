"""Weight penalties added to the loss during training: L1, L2 and both (Keras' definitions).

A penalty is called on a weight array for its value (added to the reported loss) and asked
for its gradient (added to the parameter's ``grad``). Penalties are plain data: their
configuration is a JSON-able dict, and :func:`serialize` / :func:`deserialize` turn them
into ``{"class_name": ..., "config": ...}`` and back through the ``REGULARIZERS`` registry,
never by importing a name.
"""

from __future__ import annotations

import math
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from minidl.functional._checks import _as_float_array
from minidl.registry import Configurable, class_and_config, to_spec


def _check_factor(value: float, owner: str, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{owner}: {name} must be a real number, got {type(value).__name__}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value}")
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

    with ``sign(0) = 0`` (a subgradient), so a weight at zero is left there.
    """

    def __init__(self, l1: float = 0.01) -> None:
        self.l1 = _check_factor(l1, "L1", "l1")

    def __call__(self, w: ArrayLike) -> float:
        return self.l1 * float(np.sum(np.abs(_as_weights(w, "L1"))))

    def grad(self, w: ArrayLike) -> np.ndarray:
        return self.l1 * np.sign(_as_weights(w, "L1"))


class L2(Regularizer):
    r"""Ridge penalty (weight decay), Keras' form with no factor ½.

    .. math::
        R(w) = \lambda_2 \sum_i w_i^2, \qquad \frac{\partial R}{\partial w_i} = 2 \lambda_2 w_i
    """

    def __init__(self, l2: float = 0.01) -> None:
        self.l2 = _check_factor(l2, "L2", "l2")

    def __call__(self, w: ArrayLike) -> float:
        return self.l2 * float(np.sum(np.square(_as_weights(w, "L2"))))

    def grad(self, w: ArrayLike) -> np.ndarray:
        return 2 * self.l2 * _as_weights(w, "L2")


class L1L2(Regularizer):
    r"""Elastic-net penalty: the sum of :class:`L1` and :class:`L2`.

    .. math::
        R(w) = \lambda_1 \sum_i |w_i| + \lambda_2 \sum_i w_i^2, \qquad
        \frac{\partial R}{\partial w_i} = \lambda_1 \operatorname{sign}(w_i) + 2 \lambda_2 w_i
    """

    def __init__(self, l1: float = 0.0, l2: float = 0.0) -> None:
        self.l1 = _check_factor(l1, "L1L2", "l1")
        self.l2 = _check_factor(l2, "L1L2", "l2")

    def __call__(self, w: ArrayLike) -> float:
        weights = _as_weights(w, "L1L2")
        return (self.l1 * float(np.sum(np.abs(weights)))
                + self.l2 * float(np.sum(np.square(weights))))

    def grad(self, w: ArrayLike) -> np.ndarray:
        weights = _as_weights(w, "L1L2")
        return self.l1 * np.sign(weights) + 2 * self.l2 * weights


REGULARIZERS: dict[str, type[Regularizer]] = {"L1": L1, "L2": L2, "L1L2": L1L2}


def serialize(regularizer: Regularizer | None) -> dict[str, Any] | None:
    """``{"class_name": ..., "config": ...}`` for a registered penalty; None for None."""
    if regularizer is None:
        return None
    if not isinstance(regularizer, Regularizer):
        raise TypeError(f"serialize: expected a Regularizer or None, "
                        f"got {type(regularizer).__name__}")
    return to_spec(regularizer, REGULARIZERS, "minidl.regularizers.REGULARIZERS")


def deserialize(spec: dict[str, Any] | Regularizer | None) -> Regularizer | None:
    """The penalty described by ``spec``: None, a Regularizer (returned as is), or a dict
    ``{"class_name": name in REGULARIZERS, "config": {...}}``."""
    if spec is None or isinstance(spec, Regularizer):
        return spec
    cls, config = class_and_config(spec, REGULARIZERS, "regularizer")
    return cls.from_config(config)
