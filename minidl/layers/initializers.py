"""Initializers, Keras' definitions: a function ``(shape, rng) -> array`` per name."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

# Keras divides the wanted std by the std of a unit normal truncated at ±2, so that the
# truncated draws end up with the std the formula asks for.
_TRUNCATED_NORMAL_STD = 0.87962566103423978


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """(fan_in, fan_out) as Keras counts them: (n, n) for a bias (n,), (in, out) for a Dense
    kernel, and for a convolution kernel (kh, kw, in, out) both times the receptive field."""
    if len(shape) == 1:
        return shape[0], shape[0]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def _truncated_normal(rng: np.random.Generator, stddev: float,
                      shape: tuple[int, ...]) -> np.ndarray:
    """Normal(0, stddev) draws, each redrawn until it lies within two stddev of 0."""
    values = rng.normal(0.0, stddev, size=shape)
    outside = np.abs(values) > 2 * stddev
    while outside.any():
        values[outside] = rng.normal(0.0, stddev, size=int(outside.sum()))
        outside = np.abs(values) > 2 * stddev
    return values


def _glorot_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _glorot_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    return _truncated_normal(rng, math.sqrt(2.0 / (fan_in + fan_out)) / _TRUNCATED_NORMAL_STD,
                             shape)


def _he_uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in, _ = _fans(shape)
    limit = math.sqrt(6.0 / fan_in)
    return rng.uniform(-limit, limit, size=shape)


def _he_normal(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    fan_in, _ = _fans(shape)
    return _truncated_normal(rng, math.sqrt(2.0 / fan_in) / _TRUNCATED_NORMAL_STD, shape)


def _zeros(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.zeros(shape)


def _ones(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    return np.ones(shape)


def _uniform(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Keras' "uniform": ``RandomUniform(minval=-0.05, maxval=0.05)``, whatever the shape."""
    return rng.uniform(-0.05, 0.05, size=shape)


INITIALIZERS: dict[str, Callable[[tuple[int, ...], np.random.Generator], np.ndarray]] = {
    "glorot_uniform": _glorot_uniform,
    "glorot_normal": _glorot_normal,
    "he_uniform": _he_uniform,
    "he_normal": _he_normal,
    "uniform": _uniform,
    "zeros": _zeros,
    "ones": _ones,
}


def check_initializer(name: Any, argument: str, layer_name: str) -> str:
    """``name`` if it names an initializer, else a ValueError listing the known ones."""
    if not isinstance(name, str) or name not in INITIALIZERS:
        raise ValueError(f"{layer_name}: unknown {argument} {name!r}; known initializers: "
                         f"{', '.join(INITIALIZERS)}")
    return name
