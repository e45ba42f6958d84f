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
        # set by store_end_to_end: the Parameter spanning this one and its neighbours, and,
        # on that spanning Parameter, the members it spans in order
        self.storage: Parameter | None = None
        self.members: tuple[Parameter, ...] = ()

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


def store_end_to_end(params: list[Parameter]) -> Parameter:
    """Move the data of ``params``, and their gradients, into one buffer each, end to end,
    and return one Parameter spanning them (gradients start at zero).

    Each ``p.data`` and ``p.grad`` becomes a view of its piece, so layers work as before.
    Every update rule of ``minidl.optim`` works element by element, so an optimizer given
    exactly these parameters updates the spanning one instead: the same arithmetic, in a
    handful of NumPy calls instead of a handful per parameter (``Sequential`` stores its
    parameters this way). Each member's ``storage`` is the spanning Parameter, whose
    ``members`` are ``params`` in order.
    """
    spanning = Parameter(np.concatenate([param.data.ravel() for param in params]),
                         name="all parameters")
    spanning.members = tuple(params)
    for param in params:
        param.storage = spanning
    view_members(spanning)
    return spanning


def view_members(spanning: Parameter) -> None:
    """Make each member's ``data`` and ``grad`` the view of its piece of ``spanning``'s: after
    :func:`store_end_to_end`, and after a deep copy, which copies a view as an array of its own
    (the copy's optimizer would then update a buffer its layers never read)."""
    start = 0
    for param in spanning.members:
        stop = start + param.data.size
        param.data = spanning.data[start:stop].reshape(param.shape)
        param.grad = spanning.grad[start:stop].reshape(param.shape)
        start = stop


def gradients_with_spare(spanning: Parameter, spare: int) -> np.ndarray:
    """Move the gradient of ``spanning`` (a Parameter from ``store_end_to_end``), and so its
    members' gradients, into a new buffer of ``spare`` more elements; return that buffer.

    Its first elements are the gradient, end to end as before; the spare ones are free.
    Data-parallel training sums every gradient and the batch's loss over all processes in
    one call on one buffer: the loss goes in the spare element (``minidl.distributed``).
    """
    size = spanning.grad.size
    buffer = np.zeros(size + spare, dtype=spanning.grad.dtype)
    buffer[:size] = spanning.grad
    spanning.grad = buffer[:size]
    view_members(spanning)
    return buffer
