"""RMSprop (centered, with momentum): PyTorch's rule."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from minidl.optim.optimizer import Optimizer, State, _flag, _non_negative
from minidl.optim.schedules import LearningRateSchedule
from minidl.parameter import Parameter


class RMSprop(Optimizer):
    r"""RMSprop: steps divided by a running RMS of the gradients.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2, \quad
        \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t, \quad
        \tilde v_t = \begin{cases} v_t - \bar g_t^2 & \text{centered} \\
                                   v_t & \text{otherwise} \end{cases},

        b_t = \mu b_{t-1} + \frac{g_t}{\sqrt{\tilde v_t} + \epsilon}, \quad
        \theta_t = \theta_{t-1} - \gamma b_t \quad (\mu > 0), \qquad
        \theta_t = \theta_{t-1} - \frac{\gamma g_t}{\sqrt{\tilde v_t} + \epsilon} \quad (\mu = 0)

    Centered, :math:`v_t - \bar g_t^2` is a variance and cannot be negative; rounding can
    still make it a hair below zero (a gradient constant for thousands of steps), where
    PyTorch would produce NaN: it is clipped at 0 instead.
    """

    def __init__(self, params: Iterable[Parameter], lr: float | LearningRateSchedule = 0.01,
                 alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0,
                 centered: bool = False, maximize: bool = False) -> None:
        super().__init__(
            params, lr=lr, alpha=_non_negative("alpha", alpha, "alpha value"),
            eps=_non_negative("eps", eps, "epsilon value"),
            weight_decay=_non_negative("weight_decay", weight_decay, "weight_decay value"),
            momentum=_non_negative("momentum", momentum, "momentum value"),
            centered=_flag("centered", centered), maximize=_flag("maximize", maximize))

    def _init_state(self, param: Parameter) -> State:
        state = {"step": 0, "square_avg": np.zeros_like(param.data)}
        if self.momentum > 0:
            state["momentum_buffer"] = np.zeros_like(param.data)
        if self.centered:
            state["grad_avg"] = np.zeros_like(param.data)
        return state

    def step(self) -> None:
        lr, alpha = self.lr, self.alpha
        for param, state in self._param_states():
            if not state:
                state.update(self._init_state(param))
            state["step"] += 1
            grad = -param.grad if self.maximize else param.grad
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * param.data
            square_avg = state["square_avg"]
            square_avg *= alpha
            square_avg += (1 - alpha) * grad * grad
            if self.centered:
                grad_avg = state["grad_avg"]
                grad_avg *= alpha
                grad_avg += (1 - alpha) * grad
                denom = square_avg - grad_avg * grad_avg
                np.maximum(denom, 0.0, out=denom)
                np.sqrt(denom, out=denom)
            else:
                denom = np.sqrt(square_avg)
            denom += self.eps
            if self.momentum > 0:
                buf = state["momentum_buffer"]
                buf *= self.momentum
                buf += grad / denom
                param.data -= lr * buf
            else:
                # Reuse denom's memory for the update: one array less per step.
                param.data -= np.divide(lr * grad, denom, out=denom)
