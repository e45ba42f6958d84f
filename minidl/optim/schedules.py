"""Learning-rate schedules: the rate as a function of the epoch, for
``LearningRateScheduler``."""

from __future__ import annotations

import math
import numbers

from minidl.optim.optimizer import _non_negative
from minidl.registry import Configurable


class StepDecay(Configurable):
    r"""The learning rate multiplied by ``gamma`` every ``step_size`` epochs (PyTorch's StepLR).

    .. math::
        \gamma_e = \gamma_0 \cdot \text{gamma}^{\lfloor e / \text{step\_size} \rfloor}
    """

    def __init__(self, initial_lr: float, step_size: int, gamma: float = 0.1) -> None:
        self.initial_lr = _non_negative("initial_lr", initial_lr, "initial learning rate")
        self.step_size = _whole_number("step_size", step_size, minimum=1)
        self.gamma = _non_negative("gamma", gamma, "gamma value")

    def __call__(self, epoch: int, lr: float | None = None) -> float:
        """The learning rate for ``epoch`` (from 0); the current ``lr`` is not needed."""
        return self.initial_lr * self.gamma ** (_epoch(epoch) // self.step_size)



class ExponentialDecay(Configurable):
    r"""The learning rate multiplied by ``gamma`` every epoch (PyTorch's ExponentialLR).

    .. math::
        \gamma_e = \gamma_0 \cdot \text{gamma}^{e}
    """

    def __init__(self, initial_lr: float, gamma: float) -> None:
        self.initial_lr = _non_negative("initial_lr", initial_lr, "initial learning rate")
        self.gamma = _non_negative("gamma", gamma, "gamma value")

    def __call__(self, epoch: int, lr: float | None = None) -> float:
        """The learning rate for ``epoch`` (from 0); the current ``lr`` is not needed."""
        return self.initial_lr * self.gamma ** _epoch(epoch)



class CosineDecay(Configurable):
    r"""Half a cosine from ``initial_lr`` down to ``eta_min`` over ``T_max`` epochs.

    PyTorch's CosineAnnealingLR in closed form:

    .. math::
        \gamma_e = \eta_{min} + (\gamma_0 - \eta_{min})
            \frac{1 + \cos(\pi e / T_{max})}{2}

    Past ``T_max`` the formula carries on, so the rate climbs back up (as in PyTorch).
    """

    def __init__(self, initial_lr: float, T_max: int, eta_min: float = 0.0) -> None:
        self.initial_lr = _non_negative("initial_lr", initial_lr, "initial learning rate")
        self.T_max = _whole_number("T_max", T_max, minimum=1)
        self.eta_min = _non_negative("eta_min", eta_min, "eta_min value")

    def __call__(self, epoch: int, lr: float | None = None) -> float:
        """The learning rate for ``epoch`` (from 0); the current ``lr`` is not needed."""
        cosine = math.cos(math.pi * _epoch(epoch) / self.T_max)
        return self.eta_min + (self.initial_lr - self.eta_min) * (1 + cosine) / 2



def _whole_number(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _epoch(epoch: int) -> int:
    return _whole_number("epoch", epoch, minimum=0)
