"""Adam (and AMSGrad): PyTorch's rule."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from minidl.optim.optimizer import Optimizer, State, _betas, _flag, _non_negative
from minidl.optim.schedules import LearningRateSchedule
from minidl.parameter import Parameter


class Adam(Optimizer):
    r"""Adam: steps along a running mean of the gradients, scaled by their running RMS.

    .. math::
        g_t \leftarrow g_t + \lambda\theta_{t-1}, \quad
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t, \quad
        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2,

        \hat v_t = \max(\hat v_{t-1}, v_t) \text{ if amsgrad else } v_t, \quad
        \theta_t = \theta_{t-1} - \frac{\gamma}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{\hat v_t} / \sqrt{1-\beta_2^t} + \epsilon}

    The bias corrections :math:`1-\beta^t` undo the pull of the zero initial state towards 0.
    """

    _decoupled_weight_decay = False

    def __init__(self, params: Iterable[Parameter], lr: float | LearningRateSchedule = 0.001,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False,
                 maximize: bool = False) -> None:
        super().__init__(
            params, lr=lr, betas=_betas(betas), eps=_non_negative("eps", eps, "epsilon value"),
            weight_decay=_non_negative("weight_decay", weight_decay, "weight_decay value"),
            amsgrad=_flag("amsgrad", amsgrad), maximize=_flag("maximize", maximize))

    def _init_state(self, param: Parameter) -> State:
        state = {"step": 0, "exp_avg": np.zeros_like(param.data),
                 "exp_avg_sq": np.zeros_like(param.data)}
        if self.amsgrad:
            state["max_exp_avg_sq"] = np.zeros_like(param.data)
        return state

    def step(self) -> None:
        lr, weight_decay = self.lr, self.weight_decay
        beta1, beta2 = self.betas
        for param, state in self._param_states():
            if not state:
                state.update(self._init_state(param))
            state["step"] += 1
            grad = -param.grad if self.maximize else param.grad
            if weight_decay != 0:
                if self._decoupled_weight_decay:
                    param.data *= 1 - lr * weight_decay
                else:
                    grad = grad + weight_decay * param.data
            exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
            exp_avg *= beta1
            exp_avg += (1 - beta1) * grad
            exp_avg_sq *= beta2
            exp_avg_sq += (1 - beta2) * grad * grad
            if self.amsgrad:
                second_moment = np.maximum(state["max_exp_avg_sq"], exp_avg_sq,
                                           out=state["max_exp_avg_sq"])
            else:
                second_moment = exp_avg_sq
            step_size = lr / (1 - beta1 ** state["step"])
            denom = np.sqrt(second_moment)
            denom /= math.sqrt(1 - beta2 ** state["step"])
            denom += self.eps
            # Reuse denom's memory for the update: one array less per step.
            param.data -= np.divide(step_size * exp_avg, denom, out=denom)
