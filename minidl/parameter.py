"""A trainable array and the gradient that backpropagation writes into it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from minidl.regularizers import Regularizer


class Parameter:
    """A trainable array ``data`` with its gradient ``grad`` (same shape and dtype).

    Layers write ``d loss / d data`` into ``grad`` during ``backward``; optimizers read
    ``grad`` and update ``data`` in place, so every holder of this object sees the new values.
    ``regularizer`` (an L1/L2 penalty or None) is added to the loss during ``fit``.
    """

    def __init__(self, data: np.ndarray, name: str = "",
                 regularizer: Regularizer | None = None) -> None:
        data = np.asarray(data)
        if not np.issubdtype(data.dtype, np.floating):
            raise TypeError(f"Parameter {name!r}: data must be a floating-point array, "
                            f"got dtype {data.dtype}")
        self.data = data
        self.grad = np.zeros_like(data)
        self.name = name
        self.regularizer = regularizer

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    def zero_grad(self) -> None:
        self.grad.fill(0)

    def __repr__(self) -> str:
        return f"Parameter(name={self.name!r}, shape={self.data.shape}, dtype={self.data.dtype})"
