r"""One converter per layer type: the ONNX operators that compute what the layer's inference
``forward`` computes.

A converter is ``convert(layer, graph, x, input_shape) -> y``: ``x`` and ``y`` are graph
``Tensor`` s (see ``minidl.onnx.graph`` for their layouts), ``input_shape`` is one example's
shape in minidl's layout (no batch axis). ``CONVERTERS`` maps each exportable class to its
converter; the class must match exactly (a subclass may compute something else).

==========================  ===========================================================
layer                       ONNX operators
==========================  ===========================================================
Dense                       ``Gemm`` (kernel (in, out) as it is), then its activation
ReLU, LeakyReLU             ``Relu``, ``LeakyRelu(alpha=negative_slope)``
Tanh, Sigmoid               ``Tanh``, ``Sigmoid``
Softmax                     ``Softmax(axis)``, the axis mapped through the layout
Linear, Dropout             nothing (the identity at inference)
Flatten, Reshape            ``Flatten(axis=1)``, ``Reshape(0, *shape)``, channels last
Normalization               ``Sub``, ``Div`` by max(sqrt(variance), 1e-7) (invert: ``Mul``, ``Add``)
Conv2D                      ``Conv`` (NCHW; kernel (F, C, kh, kw), TF's "same" pads), activation
MaxPooling2D                ``MaxPool`` (NCHW; padding never wins a max)
AveragePooling2D            ``AveragePool(count_include_pad=0)`` (NCHW: real pixels only)
GlobalAveragePooling2D      ``GlobalAveragePool`` (NCHW), then ``Flatten`` unless keepdims
GlobalMaxPooling2D          ``GlobalMaxPool`` (NCHW), then ``Flatten`` unless keepdims
BatchNormalization          ``Mul``, ``Add``: the moving statistics folded, as inference does
LayerNormalization          ``LayerNormalization`` (opset 17) over the normalised axes, last
Embedding                   ``Less``, ``Where``, ``Gather``: negative indices made out of range
==========================  ===========================================================

The geometry (the padding of "same") is read from the layers' own ``_geometry``/``_pads``,
so the export pads exactly where ``forward`` does.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from minidl.layers import (
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Embedding,
    Flatten,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    Layer,
    LayerNormalization,
    LeakyReLU,
    Linear,
    MaxPooling2D,
    Normalization,
    ReLU,
    Reshape,
    Sigmoid,
    Softmax,
    Tanh,
)
from minidl.onnx.graph import NCHW, GraphBuilder, Tensor

Shape = tuple[int, ...]
Converter = Callable[[Layer, GraphBuilder, Tensor, Shape], Tensor]

#: the opset below which some converter would compute something else: Softmax before 13
#: flattened its input to 2-D around ``axis`` instead of normalising along it
MIN_OPSET = 13


# ----------------------------------------------------------------------------- activations

def _identity(layer: Layer, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    return x


def _relu(layer: ReLU, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    return Tensor(graph.node("Relu", [x.name]), x.perm)


def _leaky_relu(layer: LeakyReLU, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    # ONNX: x for x >= 0, alpha x below; minidl's "x > 0" differs only at 0, where both are 0
    return Tensor(graph.node("LeakyRelu", [x.name], alpha=layer.negative_slope), x.perm)


def _tanh(layer: Tanh, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    return Tensor(graph.node("Tanh", [x.name]), x.perm)


def _sigmoid(layer: Sigmoid, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    return Tensor(graph.node("Sigmoid", [x.name]), x.perm)


def _softmax(layer: Softmax, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    if not -x.rank <= layer.axis < x.rank:
        raise ValueError(f"axis {layer.axis} is out of range for inputs of shape "
                         f"(batch, {', '.join(map(str, input_shape))})")
    # the axis of minidl's layout (the batch axis 0 included), where x stores it
    axis = x.perm.index(layer.axis % x.rank)
    return Tensor(graph.node("Softmax", [x.name], axis=axis), x.perm)


def _activation(layer: Dense | Conv2D, graph: GraphBuilder, z: Tensor,
                output_shape: Shape) -> Tensor:
    """``z`` through the layer's activation step (none: ``z``)."""
    if layer.activation is None:
        return z
    return convert(layer.activation, graph, z, output_shape)


# ----------------------------------------------------------------------------- core

def _dense(layer: Dense, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    inputs = [x.name, graph.constant("kernel", layer.kernel.data)]
    if layer.bias is not None:
        inputs.append(graph.constant("bias", layer.bias.data))
    z = Tensor(graph.node("Gemm", inputs), x.perm)  # y = x W + b, W as minidl keeps it
    return _activation(layer, graph, z, (layer.units,))


def _flatten(layer: Flatten, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    # minidl flattens channels last: (h, w, c) row-major, so NCHW goes back to NHWC first
    x = graph.canonical(x)
    return Tensor(graph.node("Flatten", [x.name], axis=1), (0, 1))


def _reshape(layer: Reshape, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    x = graph.canonical(x)
    output_shape = layer.compute_output_shape(input_shape)
    # 0 copies the (symbolic) batch size; the -1 of target_shape is resolved already
    shape = graph.constant("shape", [0, *output_shape])
    return Tensor(graph.node("Reshape", [x.name, shape]), tuple(range(len(output_shape) + 1)))


def _broadcast_shape(x: Tensor, shape: Shape) -> list[int]:
    """``shape`` (one entry per axis of minidl's layout, 1 where a constant is broadcast)
    in the layout ``x`` is stored in."""
    return [shape[axis] for axis in x.perm]


def _normalization(layer: Normalization, graph: GraphBuilder, x: Tensor,
                   input_shape: Shape) -> Tensor:
    ndim = len(input_shape) + 1
    axes = [] if layer.axis is None else (
        [layer.axis] if isinstance(layer.axis, int) else layer.axis)
    kept = {a % ndim for a in axes}
    shape = _broadcast_shape(x, (1, *(n if axis in kept else 1
                                      for axis, n in enumerate(input_shape, start=1))))
    # the statistics exactly as forward uses them, in the layer's dtype, then as float32
    mean = layer.adapt_mean.reshape(shape)
    scale = layer.divisor().reshape(shape)
    mean, scale = graph.constant("mean", mean), graph.constant("scale", scale)
    if layer.invert:
        return Tensor(graph.node("Add", [graph.node("Mul", [x.name, scale]), mean]), x.perm)
    return Tensor(graph.node("Div", [graph.node("Sub", [x.name, mean]), scale]), x.perm)


# ----------------------------------------------------------------------------- images

def _pads(pads: tuple[tuple[int, int], tuple[int, int]]) -> list[int]:
    """minidl's ((top, bottom), (left, right)) as ONNX's [top, left, bottom, right]."""
    (top, bottom), (left, right) = pads
    return [top, left, bottom, right]


def _conv2d(layer: Conv2D, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    x = graph.transposed(x, NCHW)
    _, pads = layer._geometry(input_shape[:2])
    # minidl's kernel (kh, kw, C, F) is ONNX's (F, C, kh, kw) transposed
    inputs = [x.name, graph.constant("kernel", layer.kernel.data.transpose(3, 2, 0, 1))]
    if layer.bias is not None:
        inputs.append(graph.constant("bias", layer.bias.data))
    z = Tensor(graph.node("Conv", inputs, kernel_shape=list(layer.kernel_size),
                          strides=list(layer.strides), dilations=list(layer.dilation_rate),
                          pads=_pads(pads)), NCHW)
    return _activation(layer, graph, z, layer.compute_output_shape(input_shape))


def _pooling(op_type: str, **attributes: int) -> Converter:
    def convert_pooling(layer: MaxPooling2D | AveragePooling2D, graph: GraphBuilder,
                        x: Tensor, input_shape: Shape) -> Tensor:
        x = graph.transposed(x, NCHW)
        return Tensor(graph.node(op_type, [x.name], kernel_shape=list(layer.pool_size),
                                 strides=list(layer.strides),
                                 pads=_pads(layer._pads(input_shape)), **attributes), NCHW)

    return convert_pooling


def _global_pooling(op_type: str) -> Converter:
    def convert_global_pooling(layer: GlobalAveragePooling2D | GlobalMaxPooling2D,
                               graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
        x = graph.transposed(x, NCHW)
        pooled = Tensor(graph.node(op_type, [x.name]), NCHW)  # (N, C, 1, 1)
        if layer.keepdims:
            return pooled  # minidl's (N, 1, 1, C), stored NCHW
        return Tensor(graph.node("Flatten", [pooled.name], axis=1), (0, 1))

    return convert_global_pooling


# ----------------------------------------------------------------------------- normalization

def _batch_normalization(layer: BatchNormalization, graph: GraphBuilder, x: Tensor,
                         input_shape: Shape) -> Tensor:
    ndim = len(input_shape) + 1
    features = layer.axis % ndim
    shape = _broadcast_shape(x, tuple(n if axis == features else 1
                                      for axis, n in enumerate((1, *input_shape))))
    # y = x multiplier + offset, folded in the layer's dtype by the layer, as its forward is
    multiplier, offset = layer.inference_scale_and_shift()
    scaled = graph.node("Mul", [x.name, graph.constant("multiplier", multiplier.reshape(shape))])
    return Tensor(graph.node("Add", [scaled, graph.constant("offset", offset.reshape(shape))]),
                  x.perm)


def _layer_normalization(layer: LayerNormalization, graph: GraphBuilder, x: Tensor,
                         input_shape: Shape) -> Tensor:
    graph.require_opset(17, "the ONNX operator LayerNormalization")
    ndim = len(input_shape) + 1
    axes = sorted(a % ndim for a in (layer.axis if isinstance(layer.axis, list)
                                     else [layer.axis]))
    # ONNX normalises the trailing axes from `axis` on: put minidl's axes last, in order,
    # the others where they are (a channels-last image normalised over C needs no transpose)
    x = graph.transposed(x, (*(a for a in x.perm if a not in axes), *axes))
    normalized_shape = [input_shape[a - 1] for a in axes]
    scale = (layer.gamma.data if layer.gamma is not None
             else np.ones(normalized_shape, dtype=np.float32))
    inputs = [x.name, graph.constant("gamma", scale)]
    if layer.beta is not None:
        inputs.append(graph.constant("beta", layer.beta.data))
    return Tensor(graph.node("LayerNormalization", inputs, axis=ndim - len(axes),
                             epsilon=layer.epsilon), x.perm)


# ----------------------------------------------------------------------------- embedding

def _embedding(layer: Embedding, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    # ONNX's Gather reads index -k as row input_dim - k; minidl refuses negative indices, so
    # they become input_dim, out of range, which ONNX Runtime refuses as minidl does
    negative = graph.node("Less", [x.name, graph.constant("zero", np.int64(0))])
    indices = graph.node("Where", [negative, graph.constant("input_dim",
                                                            np.int64(layer.input_dim)), x.name])
    rows = graph.node("Gather", [graph.constant("embeddings", layer.embeddings.data), indices],
                      axis=0)
    return Tensor(rows, tuple(range(x.rank + 1)))


CONVERTERS: dict[type[Layer], Converter] = {
    Dense: _dense,
    ReLU: _relu,
    LeakyReLU: _leaky_relu,
    Tanh: _tanh,
    Sigmoid: _sigmoid,
    Softmax: _softmax,
    Linear: _identity,
    Dropout: _identity,  # inverted dropout: the identity at inference
    Flatten: _flatten,
    Reshape: _reshape,
    Normalization: _normalization,
    Conv2D: _conv2d,
    MaxPooling2D: _pooling("MaxPool"),
    AveragePooling2D: _pooling("AveragePool", count_include_pad=0),
    GlobalAveragePooling2D: _global_pooling("GlobalAveragePool"),
    GlobalMaxPooling2D: _global_pooling("GlobalMaxPool"),
    BatchNormalization: _batch_normalization,
    LayerNormalization: _layer_normalization,
    Embedding: _embedding,
}


def convert(layer: Layer, graph: GraphBuilder, x: Tensor, input_shape: Shape) -> Tensor:
    """``layer`` applied to ``x`` in ``graph``: its converter's nodes."""
    return CONVERTERS[type(layer)](layer, graph, x, input_shape)
