"""SGD, with optional (Nesterov) momentum: PyTorch's rule."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from minidl.optim.optimizer import Optimizer, State, _flag, _non_negative
from minidl.optim.schedules import LearningRateSchedule
from minidl.parameter import Parameter


class SGD(Optimizer):
    r"""Stochastic gradient descent, with optional (Nesterov) momentum :math:`\mu`.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \qquad
        b_t = \begin{cases} g_t & t = 1 \\ \mu b_{t-1} + (1-\tau) g_t & t > 1 \end{cases},
        \qquad
        \theta_t = \theta_{t-1} - \gamma \begin{cases}
            g_t + \mu b_t & \text{nesterov} \\ b_t & \mu \ne 0 \\ g_t & \mu = 0 \end{cases}

    :math:`\tau` is the ``dampening``. Nesterov momentum needs :math:`\mu > 0` and
    :math:`\tau = 0`. Unlike PyTorch (0.001), the default ``lr`` is 0.01, Keras' default.
    """

    def __init__(self, params: Iterable[Parameter], lr: float | LearningRateSchedule = 0.01,
                 momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0,
                 maximize: bool = False) -> None:
        momentum = _non_negative("momentum", momentum, "momentum value")
        dampening = _non_negative("dampening", dampening, "dampening value")
        nesterov = _flag("nesterov", nesterov)
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        super().__init__(params, lr=lr, momentum=momentum, dampening=dampening,
                         nesterov=nesterov,
                         weight_decay=_non_negative("weight_decay", weight_decay,
                                                    "weight_decay value"),
                         maximize=_flag("maximize", maximize))

    def _init_state(self, param: Parameter) -> State:
        # PyTorch's SGD keeps no step count: the momentum buffer's absence marks step 1.
        return {"momentum_buffer": np.zeros_like(param.data)} if self.momentum != 0 else {}

    def step(self) -> None:
        lr, momentum, dampening = self.lr, self.momentum, self.dampening
        for param, state in self._param_states():
            grad = -param.grad if self.maximize else param.grad
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * param.data
            if momentum != 0:
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.copy()
                else:
                    buf *= momentum
                    buf += (1 - dampening) * grad
                grad = grad + momentum * buf if self.nesterov else buf
            param.data -= lr * grad
