r"""Schedules that decay by a formula in the step: Keras' ``ExponentialDecay``,
``InverseTimeDecay``, ``PolynomialDecay``, ``PiecewiseConstantDecay``, and ``StepDecay``
(PyTorch's ``StepLR`` in closed form).

Notation: :math:`s` the step, :math:`\gamma_0` the ``initial_learning_rate``, :math:`T` the
``decay_steps``, :math:`r` the ``decay_rate``; with ``staircase=True``, :math:`s/T` is
replaced by :math:`\lfloor s/T \rfloor`, so the rate changes every :math:`T` steps only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from minidl.optim.schedules.base import (
    LearningRateSchedule,
    name_or_none,
    non_negative,
    positive,
    real,
    whole_number,
)


class _StepwiseDecay(LearningRateSchedule):
    """What Keras' exponential and inverse-time decays share: a rate, a number of steps over
    which it decays by ``decay_rate``, and steps counted in whole ``decay_steps`` or not."""

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool, name: str | None) -> None:
        self.initial_learning_rate = non_negative("initial_learning_rate",
                                                  initial_learning_rate)
        self.decay_steps = positive("decay_steps", decay_steps)
        self.decay_rate = non_negative("decay_rate", decay_rate)
        self.staircase = bool(staircase)
        self.name = name_or_none(name)

    def _progress(self, step: float) -> float:
        """``step / decay_steps``, rounded down with ``staircase``."""
        progress = real("step", step) / self.decay_steps
        if self.staircase:
            progress = math.floor(progress)
        return progress


class ExponentialDecay(_StepwiseDecay):
    r"""Multiply the rate by ``decay_rate`` every ``decay_steps`` steps (Keras' schedule).

    .. math::
        \gamma(s) = \gamma_0 \, r^{s / T}

    PyTorch's ``ExponentialLR(gamma)`` is ``ExponentialDecay(lr, 1, gamma, staircase=True)``.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False, name: str | None = "ExponentialDecay") -> None:
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step: float) -> float:
        return self.initial_learning_rate * self.decay_rate ** self._progress(step)


class InverseTimeDecay(_StepwiseDecay):
    r"""The rate divided by :math:`1 + r\,s/T` (Keras' schedule).

    .. math::
        \gamma(s) = \frac{\gamma_0}{1 + r \, s / T}
    """

    def __init__(self, initial_learning_rate: float, decay_steps: float, decay_rate: float,
                 staircase: bool = False, name: str | None = "InverseTimeDecay") -> None:
        super().__init__(initial_learning_rate, decay_steps, decay_rate, staircase, name)

    def __call__(self, step: float) -> float:
        return self.initial_learning_rate / (1 + self.decay_rate * self._progress(step))


class PolynomialDecay(LearningRateSchedule):
    r"""From ``initial_learning_rate`` to ``end_learning_rate`` along a power of the remaining
    fraction, over ``decay_steps`` steps (Keras' schedule; ``power=1`` is a straight line).

    .. math::
        \gamma(s) = (\gamma_0 - \gamma_{end}) \left(1 - \frac{\min(s, T)}{T}\right)^{p}
            + \gamma_{end}

    After :math:`T` steps the rate stays at :math:`\gamma_{end}`. With ``cycle=True`` the
    decay restarts instead, over the first multiple of :math:`T` not below :math:`s`:
    :math:`T \to T \lceil s / T \rceil` (and :math:`T` itself at :math:`s = 0`).
    """

    def __init__(self, initial_learning_rate: float, decay_steps: float,
                 end_learning_rate: float = 0.0001, power: float = 1.0, cycle: bool = False,
                 name: str | None = "PolynomialDecay") -> None:
        self.initial_learning_rate = non_negative("initial_learning_rate",
                                                  initial_learning_rate)
        self.decay_steps = positive("decay_steps", decay_steps)
        self.end_learning_rate = non_negative("end_learning_rate", end_learning_rate)
        self.power = real("power", power)
        self.cycle = bool(cycle)
        self.name = name_or_none(name)

    def __call__(self, step: float) -> float:
        step = real("step", step)
        decay_steps = self.decay_steps
        if self.cycle:
            decay_steps *= math.ceil(step / decay_steps) if step != 0 else 1
        else:
            step = min(step, decay_steps)
        remaining = 1 - step / decay_steps
        return ((self.initial_learning_rate - self.end_learning_rate) * remaining ** self.power
                + self.end_learning_rate)


class PiecewiseConstantDecay(LearningRateSchedule):
    r"""A constant rate on each interval between ``boundaries`` (Keras' schedule).

    .. math::
        \gamma(s) = v_0 \text{ for } s \le b_0, \quad
            v_i \text{ for } b_{i-1} < s \le b_i, \quad
            v_n \text{ for } s > b_{n-1}

    ``values`` has one entry more than ``boundaries``, which must increase.
    """

    def __init__(self, boundaries: Sequence[float], values: Sequence[float],
                 name: str | None = "PiecewiseConstant") -> None:
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                "The length of boundaries should be 1 less than the length of values. "
                f"Received: boundaries={list(boundaries)} of length {len(boundaries)}, and "
                f"values={list(values)} of length {len(values)}.")
        self.boundaries = [real(f"boundaries[{i}]", b) for i, b in enumerate(boundaries)]
        pairs = zip(self.boundaries[:-1], self.boundaries[1:], strict=True)
        if any(low >= high for low, high in pairs):
            raise ValueError(f"boundaries must increase, got {self.boundaries}")
        self.values = [non_negative(f"values[{i}]", v) for i, v in enumerate(values)]
        self.name = name_or_none(name)

    def __call__(self, step: float) -> float:
        step = real("step", step)
        # the first boundary not below the step closes its interval
        index = next((i for i, boundary in enumerate(self.boundaries) if step <= boundary),
                     len(self.boundaries))
        return self.values[index]


class StepDecay(LearningRateSchedule):
    r"""The rate multiplied by ``gamma`` every ``step_size`` epochs: PyTorch's ``StepLR``
    in closed form (minidl's name; PyTorch's scheduler wraps an optimizer, this is a function).

    .. math::
        \gamma_e = \gamma_0 \cdot \text{gamma}^{\lfloor e / \text{step\_size} \rfloor}
    """

    def __init__(self, initial_lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.initial_lr = non_negative("initial_lr", initial_lr)
        self.step_size = whole_number("step_size", step_size, minimum=1)
        self.gamma = non_negative("gamma", gamma)

    def __call__(self, epoch: int, lr: float | None = None) -> float:
        """The learning rate for ``epoch`` (from 0); the current ``lr`` is not needed."""
        return self.initial_lr * self.gamma ** (whole_number("epoch", epoch, 0) // self.step_size)
