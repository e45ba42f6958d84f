"""Pure array functions: stable softmax family, sigmoid, one-hot, losses and their gradients.

Everything here takes and returns NumPy arrays and imports nothing but NumPy, so it can be
read, tested and reused without the rest of minidl. The functions keep the floating dtype of
their input (float32 in, float32 out); integer and boolean inputs are computed in float64.

Stability: every exponential is taken of a number that is at most 0 (shift by the maximum,
or ``exp(-|x|)`` for the sigmoid), so nothing overflows or warns for finite inputs up to
±1e300 in float64.

The ``*_grad`` functions are the analytic derivatives of the losses with respect to their
first argument, with the same arguments. With ``reduction="none"`` row (or element) ``i`` of
the gradient is the derivative of the ``i``-th loss, which is the gradient of their sum.

One idea per module: :mod:`~minidl.functional.activations` (the softmax family, the sigmoid
and ``one_hot``), :mod:`~minidl.functional.losses` (the losses and their gradients) and
``_checks`` (the argument checks both share with :mod:`minidl.losses`). Every public name is
re-exported here, so ``minidl.functional.softmax`` and ``F.cross_entropy`` are the way in.
"""

from minidl.functional._checks import Reduction
from minidl.functional.activations import (
    log_sigmoid,
    log_softmax,
    logsumexp,
    one_hot,
    sigmoid,
    softmax,
)
from minidl.functional.losses import (
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_grad,
    cross_entropy,
    cross_entropy_grad,
    mae,
    mae_grad,
    mse,
    mse_grad,
)

__all__ = [
    "Reduction", "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_grad",
    "cross_entropy", "cross_entropy_grad", "log_sigmoid", "log_softmax", "logsumexp", "mae",
    "mae_grad", "mse", "mse_grad", "one_hot", "sigmoid", "softmax",
]
