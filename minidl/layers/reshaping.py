"""Reshaping layers: ``Reshape``, each example's values laid out in a new shape."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from minidl.layers.base import Layer


class Reshape(Layer):
    r"""Give each example the shape ``target_shape`` (Keras' ``Reshape``): (N, d₁, ..., d_k)
    → (N, t₁, ..., t_m), the values in the same (row-major) order, so
    :math:`\prod d = \prod t`.

    .. math::
        y = \operatorname{reshape}(x), \qquad
        \frac{\partial L}{\partial x} = \operatorname{reshape}^{-1}
            \Big(\frac{\partial L}{\partial y}\Big)

    ``target_shape`` leaves out the batch axis; one entry may be -1, inferred from the size
    of the examples: ``Reshape((-1, 4))`` turns (N, 2, 6) into (N, 3, 4). Sizes that do not
    match are a ValueError naming both shapes.
    """

    def __init__(self, target_shape: Sequence[int],
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        if (not isinstance(target_shape, (list, tuple)) or not target_shape or any(
                isinstance(n, bool) or not isinstance(n, (int, np.integer)) or (n < 1 and n != -1)
                for n in target_shape)):
            raise ValueError(f"Reshape: target_shape must be a list of positive ints (one "
                             f"example, without the batch axis), one of which may be -1; got "
                             f"{target_shape!r}")
        if list(target_shape).count(-1) > 1:
            raise ValueError(f"Reshape: target_shape may have one -1 entry (inferred), got "
                             f"{list(target_shape)}")
        self.target_shape = [int(n) for n in target_shape]
        self._input_shape: tuple[int, ...] | None = None
        self._output_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """``target_shape`` with its -1 (if any) replaced by what makes the sizes agree."""
        size = math.prod(input_shape)
        known = math.prod(n for n in self.target_shape if n != -1)
        if -1 in self.target_shape:
            if size % known:
                raise ValueError(f"Reshape: cannot reshape examples of shape "
                                 f"{tuple(input_shape)} ({size} values) into target_shape "
                                 f"{tuple(self.target_shape)}: {size} is not a multiple of "
                                 f"{known}")
            return tuple(size // known if n == -1 else n for n in self.target_shape)
        if size != known:
            raise ValueError(f"Reshape: cannot reshape examples of shape {tuple(input_shape)} "
                             f"({size} values) into target_shape {tuple(self.target_shape)} "
                             f"({known} values)")
        return tuple(self.target_shape)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = self._float_input(x)
        self._input_shape, self._dtype = x.shape, x.dtype
        self._output_shape = (len(x), *self.compute_output_shape(x.shape[1:]))
        return x.reshape(self._output_shape)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        grad_y = self._incoming_grad(grad_y, self._output_shape, self._dtype)
        return grad_y.reshape(self._input_shape)
