"""Convolution layers: ``Conv2D``, channels last."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import DTypeLike

from minidl import regularizers
from minidl.layers.activations import activation_from_name
from minidl.layers.base import (
    LinearThenActivation,
    _layer_dtype,
    positive_int,
    positive_pair,
)
from minidl.layers.initializers import INITIALIZERS, check_initializer
from minidl.parameter import Parameter
from minidl.regularizers import Regularizer

Pair = tuple[int, int]


class Conv2D(LinearThenActivation):
    r"""2-D convolution (a cross-correlation, as in Keras and PyTorch) followed by an
    activation :math:`f`.

    Shapes: ``x`` (N, H, W, C), kernel ``W`` (kh, kw, C, F) for F = ``filters``, bias ``b``
    (F,), ``z`` and ``y`` (N, OH, OW, F). :math:`\tilde x` is ``x`` zero-padded (none for
    ``padding="valid"``), :math:`s` the strides and :math:`d` the dilation rate.

    .. math::
        z_{n,a,b,o} = b_o + \sum_{i<k_h} \sum_{j<k_w} \sum_{c}
            \tilde x_{n,\, a s_h + i d_h,\, b s_w + j d_w,\, c} \, W_{i,j,c,o},
        \qquad y = f(z)

    Backward, given :math:`G = \partial L / \partial z` (the activation turns
    :math:`\partial L / \partial y` into it, as in ``Dense``):

    .. math::
        \frac{\partial L}{\partial W_{i,j,c,o}} = \sum_{n,a,b}
            \tilde x_{n,\, a s_h + i d_h,\, b s_w + j d_w,\, c} \, G_{n,a,b,o}, \qquad
        \frac{\partial L}{\partial b_o} = \sum_{n,a,b} G_{n,a,b,o},

    .. math::
        \frac{\partial L}{\partial \tilde x_{n,p,q,c}} = \sum_{i,j,o}
            \hat G_{n,\, p + i d_h,\, q + j d_w,\, o} \, W_{k_h-1-i,\, k_w-1-j,\, c,\, o}

    where :math:`\hat G` is ``G`` with its pixels spread ``s`` apart and zero-padded by
    ``(k - 1) d`` on each side (rows and columns that a stride skips get zeros): the input
    gradient is itself a convolution (stride 1, same dilation) of the gradient with the
    kernel flipped and its channel axes swapped.

    Computed as matrix products (im2col): each window of :math:`\tilde x` becomes a row of
    ``cols`` (N·OH·OW, kh·kw·C); ``W`` is viewed as the matrix (kh·kw·C, F), ``G`` as
    (N·OH·OW, F), and the windows of :math:`\hat G` as (N·H·W, kh·kw·F)::

        forward                 backward
        z = cols @ W + b        ∂L/∂W = colsᵀ @ G
                                ∂L/∂b = 1ᵀ @ G
                                ∂L/∂x = windows(Ĝ) @ flipped W   (kh·kw·F, C)

    For one input channel (a first layer on grey images) ``cols`` is stored transposed,
    one row per kernel offset, and the matmuls read it as ``colsᵀ``: each offset is then one
    copy of whole image rows, where a window row would be copied three numbers at a time.

    ``padding="same"`` pads as TensorFlow does: the output has ``ceil(n / s)`` pixels along
    a side of ``n``, the total padding is ``max((ceil(n/s) - 1) s + (k - 1) d + 1 - n, 0)``
    and the odd pixel goes to the bottom or right. ``"valid"`` gives
    ``floor((n - (k - 1) d - 1) / s) + 1``. As in Keras, strides and dilation cannot both
    exceed 1.

    Initializers as in ``Dense``, with Keras' fans for a kernel: ``fan_in = kh·kw·C``,
    ``fan_out = kh·kw·F``. ``kernel_regularizer``/``bias_regularizer`` as in ``Dense``.
    ``input_shape=(H, W, C)`` (Keras') makes a model's first layer build the model at once;
    otherwise the layer builds on its first call, from ``x.shape[3]`` and ``x.dtype``
    (float32 for integer input).
    """

    def __init__(self, filters: int, kernel_size: int | Sequence[int], strides: int |
                 Sequence[int] = 1, padding: str = "valid",
                 dilation_rate: int | Sequence[int] = 1, activation: str | None = None,
                 use_bias: bool = True, kernel_initializer: str = "glorot_uniform",
                 bias_initializer: str = "zeros",
                 kernel_regularizer: Regularizer | dict | None = None,
                 bias_regularizer: Regularizer | dict | None = None,
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        self.filters = positive_int(filters, "filters", "Conv2D")
        self.kernel_size = positive_pair(kernel_size, "kernel_size", "Conv2D")
        self.strides = positive_pair(strides, "strides", "Conv2D")
        self.dilation_rate = positive_pair(dilation_rate, "dilation_rate", "Conv2D")
        if max(self.strides) > 1 and max(self.dilation_rate) > 1:
            raise ValueError(f"Conv2D: strides > 1 and dilation_rate > 1 cannot be combined "
                             f"(as in Keras); got strides={self.strides} and "
                             f"dilation_rate={self.dilation_rate}")
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"Conv2D: padding must be 'valid' or 'same', got {padding!r}")
        self.padding = padding.lower()
        self.activation = activation_from_name(activation)
        self._activation_name = activation
        if not isinstance(use_bias, bool):
            raise TypeError(f"Conv2D: use_bias must be True or False, got {use_bias!r}")
        self.use_bias = use_bias
        self.kernel_initializer = check_initializer(kernel_initializer, "kernel_initializer",
                                                    "Conv2D")
        self.bias_initializer = check_initializer(bias_initializer, "bias_initializer",
                                                  "Conv2D")
        self.kernel_regularizer = regularizers.deserialize(kernel_regularizer)
        self.bias_regularizer = regularizers.deserialize(bias_regularizer)
        self.kernel: Parameter | None = None
        self.bias: Parameter | None = None
        self.dtype: np.dtype | None = None
        if self.input_shape is not None:
            self.compute_output_shape(tuple(self.input_shape))  # its checks, at once
        # what backward needs, set by forward
        self._x: np.ndarray | None = None
        self._cols: np.ndarray | None = None
        self._output_shape: tuple[int, ...] | None = None
        self._work_arrays: dict[str, np.ndarray] = {}

    def build(self, input_shape: tuple[int, ...], *, dtype: DTypeLike = "float32",
              rng: np.random.Generator | None = None) -> None:
        """Create ``kernel`` (kh, kw, C, filters) and ``bias`` (filters,) in ``dtype``,
        drawn from ``rng``, for examples of ``input_shape`` (H, W, C)."""
        shapes = self.weight_shapes(tuple(input_shape))
        self.dtype = _layer_dtype(dtype, "Conv2D")
        rng = np.random.default_rng() if rng is None else rng
        self.kernel = Parameter(INITIALIZERS[self.kernel_initializer](shapes["kernel"], rng)
                                .astype(self.dtype), name="kernel",
                                regularizer=self.kernel_regularizer)
        if self.use_bias:
            bias = INITIALIZERS[self.bias_initializer](shapes["bias"], rng)
            self.bias = Parameter(bias.astype(self.dtype), name="bias",
                                  regularizer=self.bias_regularizer)
        self._x = self._cols = None
        self._work_arrays = {}
        if self.activation is not None:
            self.activation.build(self.compute_output_shape(tuple(input_shape)),
                                  dtype=self.dtype, rng=rng)
        self.built = True

    def weight_shapes(self, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
        self.compute_output_shape(input_shape)
        shapes = {"kernel": (*self.kernel_size, int(input_shape[-1]), self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        input_shape = tuple(input_shape)
        if len(input_shape) != 3:
            raise ValueError(f"Conv2D: expected examples of shape (height, width, channels), "
                             f"got {input_shape}")
        if self.kernel is not None and input_shape[2] != self.kernel.shape[2]:
            raise ValueError(f"Conv2D: expected inputs with {self.kernel.shape[2]} channels, "
                             f"found {input_shape[2]}")
        (out_height, out_width), _ = self._geometry(input_shape[:2])
        return (out_height, out_width, self.filters)

    def _geometry(self, size: Sequence[int]) -> tuple[Pair, tuple[Pair, Pair]]:
        """Output (height, width) for an input of ``size`` (H, W), and the padding
        ((top, bottom), (left, right))."""
        out_size, pads = [], []
        for n, k, s, d in zip(size, self.kernel_size, self.strides, self.dilation_rate,
                              strict=True):
            span = (k - 1) * d + 1
            if self.padding == "same":
                out = -(-n // s)  # ceil(n / s)
                total = max((out - 1) * s + span - n, 0)
                pads.append((total // 2, total - total // 2))  # the odd one at the end
            else:
                if span > n:
                    raise ValueError(
                        f"Conv2D: the kernel {self.kernel_size} with dilation_rate "
                        f"{self.dilation_rate} spans {(k - 1) * d + 1} pixels, more than the "
                        f"input's {n} (input height and width {tuple(size)}, "
                        f"padding='valid'); use padding='same' or a smaller kernel")
                out = (n - span) // s + 1
                pads.append((0, 0))
            out_size.append(out)
        return (out_size[0], out_size[1]), (pads[0], pads[1])

    def parameters(self) -> list[Parameter]:
        """``[kernel, bias]`` (``[kernel]`` without bias); empty before the layer is built."""
        return [p for p in (self.kernel, self.bias) if p is not None]

    def linear_forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        """``z``, the convolution plus bias, in the layer's dtype. Training keeps the window
        matrix for backward; inference keeps only ``x`` (a reference), and a backward after it
        builds the windows again: a server predicting big batches would otherwise hold the
        last one's window matrix, kh·kw times the input, for as long as the model lives."""
        x = self._checked_input(x)
        batch, height, width, _ = x.shape
        (out_height, out_width), _ = self._geometry((height, width))
        cols = self._cols_of(x, training)
        z = cols @ self.kernel.data.reshape(-1, self.filters)
        if self.bias is not None:
            # added to rows of a whole image row (out_width pixels): NumPy's loop over rows of
            # only `filters` numbers would pay its per-row cost out_width times as often
            z.reshape(batch * out_height, out_width * self.filters)[...] += np.tile(
                self.bias.data, out_width)
        self._x, self._cols = x, cols if training else None
        self._output_shape = (batch, out_height, out_width, self.filters)
        return z.reshape(self._output_shape)

    def _cols_of(self, x: np.ndarray, training: bool) -> np.ndarray:
        """Every window of ``x``, padded, as a row of one matrix: the one copy of the forward
        pass, which makes the whole convolution a single BLAS matmul."""
        batch, height, width, channels = x.shape
        _, ((top, bottom), (left, right)) = self._geometry((height, width))
        padded = x
        if top or bottom or left or right:
            padded = self._work_array("padded", (batch, height + top + bottom,
                                                 width + left + right, channels), training)
            padded[:, top:top + height, left:left + width] = x
        return self._window_rows("cols", padded, self.strides, training)

    def _checked_input(self, x: Any) -> np.ndarray:
        """``x`` as a (batch, height, width, channels) array in the layer's dtype; builds the
        layer if needed."""
        if (self.built and type(x) is np.ndarray and x.dtype == self.dtype and x.ndim == 4
                and x.shape[3] == self.kernel.shape[2]):
            return x  # the common case, checked with attribute reads only
        x = self._numeric_input(x, 4, "(batch, height, width, channels)")
        self.compute_output_shape(x.shape[1:])
        return np.asarray(x, dtype=self.dtype)

    def linear_backward(self, grad_z: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        """Write ∂L/∂kernel and ∂L/∂bias into their ``.grad``; return ∂L/∂x (None when
        ``input_grad`` is False: nobody needs it for a model's first layer)."""
        grad_z = self._incoming_grad(grad_z, self._output_shape, self.dtype)
        grad_rows = grad_z.reshape(-1, self.filters)
        # out=: assign into the existing arrays, which optimizers hold by reference; cols.T
        # is a transposed view that BLAS reads as it is
        cols = self._cols if self._cols is not None else self._cols_of(self._x, False)
        np.matmul(cols.T, grad_rows, out=self.kernel.grad.reshape(-1, self.filters))
        if self.bias is not None:
            # a matrix-vector product: NumPy's sum down the rows of a (rows, filters) array
            # this narrow is several times slower
            np.matmul(np.ones(len(grad_rows), dtype=self.dtype), grad_rows, out=self.bias.grad)
        if not input_grad:
            return None
        batch, height, width, channels = self._x.shape
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.strides, self.dilation_rate
        (pad_top, _), (pad_left, _) = self._geometry((height, width))[1]
        top, left = (kh - 1) * dh - pad_top, (kw - 1) * dw - pad_left
        _, out_height, out_width, _ = grad_z.shape
        spread = self._work_array("spread", (batch, height + (kh - 1) * dh,
                                             width + (kw - 1) * dw, self.filters), True)
        spread[:, top:top + (out_height - 1) * sh + 1:sh,
               left:left + (out_width - 1) * sw + 1:sw] = grad_z
        flipped = self.kernel.data[::-1, ::-1].transpose(0, 1, 3, 2).reshape(-1, channels)
        # the input gradient as a convolution, not a scatter of cols back into x: measured 2-4x
        # faster (NumPy's += over kh·kw strided windows runs one C-long stretch at a time)
        grad_cols = self._window_rows("grad_cols", spread, (1, 1), True)
        return (grad_cols @ flipped).reshape(self._x.shape)

    def _window_rows(self, name: str, padded: np.ndarray, strides: Pair,
                     training: bool) -> np.ndarray:
        """Every kernel window of ``padded`` (N, H, W, C) as a row of an (N·OH·OW, kh·kw·C)
        matrix, in the kernel's order; for C = 1 the transposed view of an offset-major
        array (see the class docstring). A copy into the work array ``name``, except for a
        1x1 kernel with stride 1, whose windows are ``padded`` itself."""
        kh, kw = self.kernel_size
        batch, _, _, channels = padded.shape
        if (kh, kw) == (1, 1) and strides == (1, 1):
            return padded.reshape(-1, channels)
        windows = _windows(padded, self.kernel_size, strides, self.dilation_rate)
        _, out_height, out_width, _, _, _ = windows.shape
        if channels > 1:
            rows = self._work_array(name, windows.shape, training)
            rows[...] = windows
            return rows.reshape(batch * out_height * out_width, kh * kw * channels)
        rows = self._work_array(name, (kh * kw, batch, out_height, out_width), training)
        for offset in range(kh * kw):
            i, j = divmod(offset, kw)
            rows[offset] = windows[:, :, :, i, j, 0]
        return rows.reshape(kh * kw, batch * out_height * out_width).T

    def _work_array(self, name: str, shape: tuple[int, ...], reuse: bool) -> np.ndarray:
        """A zeroed array of ``shape`` in the layer's dtype; with ``reuse`` (training steps,
        which never run two at once) the last step's array of that name and shape. A fresh
        array of tens of MB costs its page faults anew at every step, about as much as the
        copy into it. Every step writes the same positions of it, so what started as zeros
        (the padding) stays zero. Inference allocates anew: a server's threads may predict at
        the same time."""
        array = self._work_arrays.get(name) if reuse else None
        if array is None or array.shape != shape or array.dtype != self.dtype:
            array = np.zeros(shape, dtype=self.dtype)
            if reuse:
                self._work_arrays[name] = array
        return array

    def _linear_cache(self) -> np.ndarray | None:
        return self._x

    def get_config(self) -> dict[str, Any]:
        return {
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            "dilation_rate": list(self.dilation_rate),
            "activation": self._activation_name,
            "use_bias": self.use_bias,
            "kernel_initializer": self.kernel_initializer,
            "bias_initializer": self.bias_initializer,
            "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
            "bias_regularizer": regularizers.serialize(self.bias_regularizer),
            "input_shape": self.input_shape,
        }


def _windows(padded: np.ndarray, kernel_size: Pair, strides: Pair,
             dilation_rate: Pair) -> np.ndarray:
    """Every kernel window of ``padded`` (N, H, W, C): a view (N, OH, OW, kh, kw, C), its
    last three axes in the kernel's order."""
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, strides, dilation_rate
    spans = ((kh - 1) * dh + 1, (kw - 1) * dw + 1)
    windows = sliding_window_view(padded, spans, axis=(1, 2))  # (N, H', W', C, span, span)
    return windows[:, ::sh, ::sw, :, ::dh, ::dw].transpose(0, 1, 2, 4, 5, 3)
