"""Learning-rate schedules: ``schedule(step) -> lr``, as an optimizer's ``lr`` (evaluated
at the optimizer's iteration count before each step) or for ``LearningRateScheduler``
(evaluated at the epoch).

Keras' schedules with Keras' names, arguments and formulas (:mod:`~.decays`:
``ExponentialDecay``, ``InverseTimeDecay``, ``PolynomialDecay``, ``PiecewiseConstantDecay``;
:mod:`~.cosine`: ``CosineDecay``, ``CosineDecayRestarts``), and two of PyTorch's schedulers
as closed-form functions of the epoch: ``StepDecay`` (``StepLR``) and ``CosineAnnealingLR``.
Each class docstring says which framework it follows and shows its formula.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from minidl.optim.schedules.base import LearningRateSchedule
from minidl.optim.schedules.cosine import CosineAnnealingLR, CosineDecay, CosineDecayRestarts
from minidl.optim.schedules.decays import (
    ExponentialDecay,
    InverseTimeDecay,
    PiecewiseConstantDecay,
    PolynomialDecay,
    StepDecay,
)
from minidl.registry import class_and_config, to_spec

__all__ = [
    "SCHEDULES", "CosineAnnealingLR", "CosineDecay", "CosineDecayRestarts", "ExponentialDecay",
    "InverseTimeDecay", "LearningRateSchedule", "PiecewiseConstantDecay", "PolynomialDecay",
    "StepDecay", "deserialize", "serialize",
]

SCHEDULES: dict[str, type[LearningRateSchedule]] = {cls.__name__: cls for cls in (
    CosineAnnealingLR, CosineDecay, CosineDecayRestarts, ExponentialDecay, InverseTimeDecay,
    PiecewiseConstantDecay, PolynomialDecay, StepDecay)}


def serialize(schedule: LearningRateSchedule) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}``: what :func:`deserialize` rebuilds it from."""
    return to_spec(schedule, SCHEDULES, "minidl.optim.schedules.SCHEDULES")


def deserialize(spec: Mapping[str, Any]) -> LearningRateSchedule:
    """The schedule that ``spec`` (from :func:`serialize`) describes; only classes in
    :data:`SCHEDULES` are built."""
    cls, config = class_and_config(spec, SCHEDULES, "learning-rate schedule")
    return cls.from_config(config)
