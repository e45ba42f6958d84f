"""AdamW: Adam with decoupled weight decay, PyTorch's rule."""

from __future__ import annotations

from collections.abc import Iterable

from minidl.optim.adam import Adam
from minidl.parameter import Parameter


class AdamW(Adam):
    r"""AdamW: Adam with decoupled weight decay, which shrinks the weights directly.

    .. math::
        \theta_{t-1} \leftarrow \theta_{t-1} (1 - \gamma\lambda)

    then :class:`Adam`'s update with :math:`\lambda = 0`: the decay is not added to the
    gradient, so it is not rescaled by :math:`1/\sqrt{\hat v_t}`.
    """

    _decoupled_weight_decay = True

    def __init__(self, params: Iterable[Parameter], lr: float = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, amsgrad: bool = False,
                 maximize: bool = False) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay,
                         amsgrad=amsgrad, maximize=maximize)
