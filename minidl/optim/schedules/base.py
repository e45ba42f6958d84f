"""The schedule protocol, :class:`LearningRateSchedule`, and the argument checks every
schedule shares."""

from __future__ import annotations

import math
import numbers

import numpy as np

from minidl.registry import Configurable


class LearningRateSchedule(Configurable):
    """A learning rate as a function of a counter: ``schedule(step) -> lr`` (Keras' protocol).

    Passed as an optimizer's ``lr`` (``Adam(params, lr=CosineDecay(0.1, 1000))``), the
    schedule is evaluated at the optimizer's ``iterations`` before each step, so the first
    step uses ``schedule(0)``. Passed to ``LearningRateScheduler``, the counter is the epoch.
    A subclass implements :meth:`__call__` and keeps each constructor argument under its own
    name, which makes :meth:`get_config` / :meth:`from_config` (and saving) work.
    The arithmetic is in float64 Python floats (Keras computes in the float32 of its
    variables: the two agree to about 1e-7).
    """

    def __call__(self, step: float) -> float:
        """The learning rate at ``step``."""
        raise NotImplementedError(  # abstract
            f"{type(self).__name__} does not implement __call__(step)")


def real(name: str, value: object) -> float:
    """``value`` as a float, after checking it is a finite real number (not a bool)."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value[()]
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}: {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    return float(value)


def non_negative(name: str, value: object) -> float:
    number = real(name, value)
    if number < 0:
        raise ValueError(f"Argument `{name}` must be >= 0. Received: {name}={value}")
    return number


def positive(name: str, value: object) -> float:
    """A finite number > 0, with Keras' message (``decay_steps`` and the like)."""
    number = real(name, value)
    if number <= 0:
        raise ValueError(f"Argument `{name}` must be > 0. Received: {name}={value}")
    return number


def whole_number(name: str, value: object, minimum: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def name_or_none(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"name must be a string or None, got {type(value).__name__}")
    return value
