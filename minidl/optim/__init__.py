r"""Optimizers with PyTorch's update rules, and learning-rate schedules
(:mod:`minidl.optim.schedules`; any of them can be an optimizer's ``lr``).

Every optimizer reads ``p.grad`` and updates ``p.data`` in place for each :class:`Parameter`
it was given, so the layers holding those parameters see the new values. The arithmetic
follows PyTorch's single-tensor ("for-loop") implementation of ``torch.optim`` operation by
operation, so the same gradients give the same parameters up to floating-point rounding.

Notation in the docstrings: :math:`\theta` the parameter, :math:`g_t` its gradient at step
:math:`t = 1, 2, \dots` (negated first when ``maximize=True``), :math:`\gamma` the learning
rate ``lr``, :math:`\lambda` the ``weight_decay``. State starts at zero unless said.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from functools import partial
from typing import Any

from minidl.optim.adagrad import Adagrad
from minidl.optim.adam import Adam
from minidl.optim.adamw import AdamW
from minidl.optim.optimizer import Optimizer, with_schedule
from minidl.optim.rmsprop import RMSprop
from minidl.optim.schedules import (
    SCHEDULES,
    CosineAnnealingLR,
    CosineDecay,
    CosineDecayRestarts,
    ExponentialDecay,
    InverseTimeDecay,
    LearningRateSchedule,
    PiecewiseConstantDecay,
    PolynomialDecay,
    StepDecay,
)
from minidl.optim.sgd import SGD
from minidl.parameter import Parameter
from minidl.registry import class_and_config, to_spec

__all__ = [
    "OPTIMIZERS", "SCHEDULES", "SGD", "Adagrad", "Adam", "AdamW", "CosineAnnealingLR",
    "CosineDecay", "CosineDecayRestarts", "ExponentialDecay", "InverseTimeDecay",
    "LearningRateSchedule", "Optimizer", "PiecewiseConstantDecay", "PolynomialDecay", "RMSprop",
    "StepDecay", "deserialize", "get", "serialize",
]


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__: cls for cls in (SGD, Adagrad, Adam, AdamW, RMSprop)}

_BY_NAME: dict[str, Callable[[Iterable[Parameter]], Optimizer]] = {
    "sgd": SGD,
    "momentum": partial(SGD, momentum=0.9),
    "adagrad": Adagrad,
    "adam": Adam,
    "adamw": AdamW,
    "rmsprop": RMSprop,
}


def get(name_or_optimizer: str | Optimizer, params: Iterable[Parameter]) -> Optimizer:
    """An optimizer over ``params``: built with defaults from a name, or passed through.

    Names: "sgd", "momentum" (SGD with momentum=0.9), "adagrad", "adam", "adamw", "rmsprop".
    An :class:`Optimizer` is returned as it is, after checking it holds exactly ``params``.
    """
    params = list(params)
    if isinstance(name_or_optimizer, Optimizer):
        if {id(p) for p in name_or_optimizer.params} != {id(p) for p in params}:
            raise ValueError(f"the {type(name_or_optimizer).__name__} optimizer was created "
                             f"for other parameters than the ones it is asked to train")
        return name_or_optimizer
    if not isinstance(name_or_optimizer, str):
        raise TypeError(f"optimizer must be a name or an Optimizer, "
                        f"got {type(name_or_optimizer).__name__}")
    if name_or_optimizer not in _BY_NAME:
        raise ValueError(f"Unknown optimizer {name_or_optimizer!r}; "
                         f"known: {', '.join(map(repr, _BY_NAME))}")
    return _BY_NAME[name_or_optimizer](params)


def serialize(optimizer: Optimizer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}``: what :func:`deserialize` rebuilds it from."""
    return to_spec(optimizer, OPTIMIZERS, "minidl.optim.OPTIMIZERS")


def deserialize(spec: Mapping[str, Any], params: Iterable[Parameter]) -> Optimizer:
    """The optimizer that ``spec`` (from :func:`serialize`) describes, over ``params``.

    Only classes in :data:`OPTIMIZERS` are built; config keys missing from ``spec`` take the
    constructor's defaults, unknown ones raise a ValueError. An ``lr`` that is a
    ``{"class_name", "config"}`` dict is a schedule from :data:`SCHEDULES`.
    """
    cls, config = class_and_config(spec, OPTIMIZERS, "optimizer")
    accepted = [name for name in inspect.signature(cls).parameters if name != "params"]
    for key in config:
        if key not in accepted:
            raise ValueError(f"deserialize: {cls.__name__} has no argument {key!r}; "
                             f"expected {', '.join(map(repr, accepted))}")
    return cls(params, **with_schedule(config))
