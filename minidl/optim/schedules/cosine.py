r"""Half-cosine schedules: Keras' ``CosineDecay`` (optionally after a linear warm-up) and
``CosineDecayRestarts`` (SGDR, Loshchilov & Hutter 2016), and PyTorch's
``CosineAnnealingLR`` in closed form.

Notation: :math:`s` the step, :math:`\gamma_0` the ``initial_learning_rate``, :math:`T` the
``decay_steps``, :math:`\alpha` the floor as a fraction of the rate decayed from, and
:math:`c(f) = \tfrac12 (1 + \cos \pi f)`, which falls from 1 at :math:`f = 0` to 0 at
:math:`f = 1`.
"""

from __future__ import annotations

import math

from minidl.optim.schedules.base import (
    LearningRateSchedule,
    name_or_none,
    non_negative,
    positive,
    real,
    whole_number,
)


def _cosine(fraction: float) -> float:
    return 0.5 * (1 + math.cos(math.pi * fraction))


class CosineDecay(LearningRateSchedule):
    r"""A half cosine from the rate down to :math:`\alpha` times it over ``decay_steps``
    steps, then held there (Keras' schedule), after an optional linear warm-up.

    Without ``warmup_target``:

    .. math::
        \gamma(s) = \gamma_0 \left((1 - \alpha)\, c\!\left(\tfrac{\min(s, T)}{T}\right)
            + \alpha\right)

    With ``warmup_target`` :math:`\gamma_w` and ``warmup_steps`` :math:`W`, the rate first
    climbs in a straight line from :math:`\gamma_0` to :math:`\gamma_w`, then decays from
    :math:`\gamma_w` (with :math:`s' = \min(s, T + W) - W`):

    .. math::
        \gamma(s) = \gamma_0 + (\gamma_w - \gamma_0) \frac{s}{W} \text{ for } s < W, \quad
        \gamma_w \left((1 - \alpha)\, c(s' / T) + \alpha\right) \text{ otherwise}

    Unlike PyTorch's ``CosineAnnealingLR`` the rate never climbs back after :math:`T`.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: float, alpha: float = 0.0,
                 name: str | None = "CosineDecay", warmup_target: float | None = None,
                 warmup_steps: float = 0) -> None:
        self.initial_learning_rate = non_negative("initial_learning_rate",
                                                  initial_learning_rate)
        self.decay_steps = positive("decay_steps", decay_steps)
        self.alpha = non_negative("alpha", alpha)
        self.name = name_or_none(name)
        self.warmup_target = (None if warmup_target is None
                              else non_negative("warmup_target", warmup_target))
        self.warmup_steps = non_negative("warmup_steps", warmup_steps)

    def __call__(self, step: float) -> float:
        step = real("step", step)
        if self.warmup_target is None:
            return self._decayed(self.initial_learning_rate, min(step, self.decay_steps))
        step = min(step, self.decay_steps + self.warmup_steps)
        if step < self.warmup_steps:
            climb = self.warmup_target - self.initial_learning_rate
            return self.initial_learning_rate + climb * step / self.warmup_steps
        return self._decayed(self.warmup_target, step - self.warmup_steps)

    def _decayed(self, start: float, step: float) -> float:
        return start * ((1 - self.alpha) * _cosine(step / self.decay_steps) + self.alpha)


class CosineDecayRestarts(LearningRateSchedule):
    r"""Cosine decays that restart from the top (Keras' schedule, SGDR).

    Period :math:`i = 0, 1, \dots` lasts :math:`T_i = T_0\, t_{mul}^i` steps
    (``first_decay_steps`` :math:`T_0`) and starts from :math:`m_{mul}^i` times the rate.
    With :math:`f = s / T_0`, the period is the largest :math:`i` with
    :math:`S_i = \sum_{j<i} t_{mul}^j \le f` (:math:`S_i = i` when :math:`t_{mul} = 1`,
    :math:`\frac{1 - t_{mul}^i}{1 - t_{mul}}` otherwise), and

    .. math::
        \gamma(s) = \gamma_0 \left((1 - \alpha)\, m_{mul}^i\,
            c\!\left(\frac{f - S_i}{t_{mul}^i}\right) + \alpha\right)

    so the floor :math:`\alpha \gamma_0` does not shrink with :math:`m_{mul}`.
    """

    def __init__(self, initial_learning_rate: float, first_decay_steps: float,
                 t_mul: float = 2.0, m_mul: float = 1.0, alpha: float = 0.0,
                 name: str | None = "SGDRDecay") -> None:
        self.initial_learning_rate = non_negative("initial_learning_rate",
                                                  initial_learning_rate)
        self.first_decay_steps = positive("first_decay_steps", first_decay_steps)
        self.t_mul = positive("t_mul", t_mul)
        self.m_mul = non_negative("m_mul", m_mul)
        self.alpha = non_negative("alpha", alpha)
        self.name = name_or_none(name)

    def _periods_before(self, restart: int) -> float:
        """:math:`S_i`, in units of the first period."""
        if self.t_mul == 1.0:
            return float(restart)
        return (1 - self.t_mul ** restart) / (1 - self.t_mul)

    def __call__(self, step: float) -> float:
        fraction = max(real("step", step), 0.0) / self.first_decay_steps
        if self.t_mul == 1.0:
            restart = math.floor(fraction)
        else:
            restart = math.floor(math.log(1 - fraction * (1 - self.t_mul)) / math.log(self.t_mul))
            # the logarithm can land a rounding error away from a whole number at a restart
            while self._periods_before(restart + 1) <= fraction:
                restart += 1
            while restart > 0 and self._periods_before(restart) > fraction:
                restart -= 1
        within = (fraction - self._periods_before(restart)) / self.t_mul ** restart
        decayed = self.m_mul ** restart * _cosine(within)
        return self.initial_learning_rate * ((1 - self.alpha) * decayed + self.alpha)


class CosineAnnealingLR(LearningRateSchedule):
    r"""PyTorch's ``CosineAnnealingLR`` in closed form: half a cosine from ``initial_lr`` to
    ``eta_min`` over ``T_max`` epochs, and on past it, so the rate climbs back up.

    .. math::
        \gamma_e = \eta_{min} + (\gamma_0 - \eta_{min})\, c(e / T_{max})

    minidl 0.1's ``CosineDecay`` behaved like this; Keras' ``CosineDecay`` holds at
    its floor instead. PyTorch's scheduler wraps an optimizer; this is a function of the
    epoch (or of the step, as an optimizer's ``lr``).
    """

    def __init__(self, initial_lr: float, T_max: int, eta_min: float = 0.0) -> None:
        self.initial_lr = non_negative("initial_lr", initial_lr)
        self.T_max = whole_number("T_max", T_max, minimum=1)
        self.eta_min = non_negative("eta_min", eta_min)

    def __call__(self, epoch: int, lr: float | None = None) -> float:
        """The learning rate for ``epoch`` (from 0); the current ``lr`` is not needed."""
        epoch = whole_number("epoch", epoch, 0)
        return self.eta_min + (self.initial_lr - self.eta_min) * _cosine(epoch / self.T_max)
