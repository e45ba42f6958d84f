"""Adagrad: PyTorch's rule."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from minidl.optim.optimizer import Optimizer, State, _flag, _non_negative
from minidl.optim.schedules import LearningRateSchedule
from minidl.parameter import Parameter


class Adagrad(Optimizer):
    r"""Adagrad: per-coordinate steps that shrink with the squared gradients seen so far.

    .. math::
        \gamma_t = \frac{\gamma}{1 + (t-1)\eta}, \quad
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        s_t = s_{t-1} + g_t^2, \quad
        \theta_t = \theta_{t-1} - \frac{\gamma_t g_t}{\sqrt{s_t} + \epsilon}

    :math:`\eta` is ``lr_decay``; the sum starts at :math:`s_0` = ``initial_accumulator_value``.
    """

    def __init__(self, params: Iterable[Parameter], lr: float | LearningRateSchedule = 0.01,
                 lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0,
                 eps: float = 1e-10, maximize: bool = False) -> None:
        super().__init__(
            params, lr=lr,
            lr_decay=_non_negative("lr_decay", lr_decay, "lr_decay value"),
            weight_decay=_non_negative("weight_decay", weight_decay, "weight_decay value"),
            initial_accumulator_value=_non_negative(
                "initial_accumulator_value", initial_accumulator_value,
                "initial_accumulator_value value"),
            eps=_non_negative("eps", eps, "epsilon value"),
            maximize=_flag("maximize", maximize))

    def _init_state(self, param: Parameter) -> State:
        return {"step": 0, "sum": np.full_like(param.data, self.initial_accumulator_value)}

    def step(self) -> None:
        for param, state in self._param_states():
            if not state:
                state.update(self._init_state(param))
            state["step"] += 1
            grad = -param.grad if self.maximize else param.grad
            if self.weight_decay != 0:
                grad = grad + self.weight_decay * param.data
            step_lr = self.lr / (1 + (state["step"] - 1) * self.lr_decay)
            state["sum"] += grad * grad
            denom = np.sqrt(state["sum"])
            denom += self.eps
            # Reuse denom's memory for the update: one array less per step.
            param.data -= np.divide(step_lr * grad, denom, out=denom)
