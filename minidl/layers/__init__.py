r"""Layers: each one a forward pass and, right beside it, its backward pass.

A layer maps a batch ``x`` (the first axis is the batch) to ``y = layer(x)``. ``forward``
caches exactly what the chain rule needs; ``backward`` takes ``grad_y = ∂L/∂y`` and returns
``grad_x = ∂L/∂x``, writing ``∂L/∂θ`` into ``p.grad`` for each of its parameters ``p``.
Gradients are *assigned*, not accumulated: one ``backward`` per ``forward``.

Layers keep the dtype they compute in: parameters are created in the layer's dtype (float32
by default) and a float32 batch gives float32 outputs and float32 gradients.

Families, one file each: ``base`` (the ``Layer`` protocol), ``activations``, ``core``
(``Dense``, ``Dropout``, ``Flatten``), ``reshaping`` (``Reshape``), ``convolution``
(``Conv2D``), ``pooling``,
``normalization`` (``BatchNormalization``, ``LayerNormalization``), ``embedding``,
``preprocessing`` (``Normalization``) and ``initializers``; this module holds the registry
that model files are read through.
"""

from __future__ import annotations

from typing import Any

from minidl.layers.activations import (
    ACTIVATIONS,
    LeakyReLU,
    Linear,
    ReLU,
    Sigmoid,
    Softmax,
    Tanh,
    activation_from_name,
)
from minidl.layers.base import Layer
from minidl.layers.convolution import Conv2D
from minidl.layers.core import Dense, Dropout, Flatten
from minidl.layers.embedding import Embedding
from minidl.layers.initializers import INITIALIZERS
from minidl.layers.normalization import BatchNormalization, LayerNormalization
from minidl.layers.pooling import (
    AveragePooling2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
)
from minidl.layers.preprocessing import Normalization
from minidl.layers.reshaping import Reshape
from minidl.registry import class_and_config, to_spec

__all__ = [
    "ACTIVATIONS", "INITIALIZERS", "LAYERS", "AveragePooling2D", "BatchNormalization", "Conv2D",
    "Dense",
    "Dropout", "Embedding", "Flatten", "GlobalAveragePooling2D", "GlobalMaxPooling2D", "Layer",
    "LayerNormalization", "LeakyReLU", "Linear", "MaxPooling2D", "Normalization", "ReLU",
    "Reshape", "Sigmoid", "Softmax", "Tanh", "activation_from_name", "layer_from_config",
    "layer_to_config", "register_layer",
]

LAYERS: dict[str, type[Layer]] = {
    cls.__name__: cls
    for cls in (Dense, ReLU, LeakyReLU, Tanh, Sigmoid, Softmax, Linear, Dropout, Flatten,
                Reshape, Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D,
                GlobalMaxPooling2D, BatchNormalization, LayerNormalization, Embedding,
                Normalization)
}


def layer_to_config(layer: Layer) -> dict[str, Any]:
    """``{"class_name": ..., "config": ...}``: what ``layer_from_config`` rebuilds from."""
    return to_spec(layer, LAYERS, "minidl.layers.LAYERS (see minidl.layers.register_layer)")


def layer_from_config(spec: dict[str, Any]) -> Layer:
    """A new, unbuilt layer from ``{"class_name": ..., "config": ...}``.

    The class is looked up in ``LAYERS`` only; nothing is ever imported by name.
    """
    cls, config = class_and_config(spec, LAYERS, "layer")
    return cls.from_config(config)


def register_layer(cls: type[Layer]) -> type[Layer]:
    """Add a layer class of your own to ``LAYERS``, so that models holding it save and load
    like the built-in ones (``load_model`` builds layers from this registry only). Use it as
    a decorator::

        @register_layer
        class Scale(Layer): ...

    Give the class ``get_config`` (the default reads the constructor's arguments back from
    attributes of the same names) and, if it has parameters or state, ``weight_shapes``,
    so that a file is checked against the architecture before the layer is built.
    """
    if not (isinstance(cls, type) and issubclass(cls, Layer)):
        raise TypeError(f"register_layer: expected a subclass of minidl.layers.Layer, got {cls!r}")
    taken = LAYERS.get(cls.__name__)
    if taken is not None and taken is not cls:
        raise ValueError(f"register_layer: the name {cls.__name__!r} is taken by {taken!r}; "
                         f"rename your class")
    LAYERS[cls.__name__] = cls
    return cls
