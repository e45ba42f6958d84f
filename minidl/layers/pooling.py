r"""Pooling layers: ``MaxPooling2D``, ``AveragePooling2D``, ``GlobalMaxPooling2D`` and
``GlobalAveragePooling2D``, channels last, as in Keras.

Inputs are images ``(batch, height, width, channels)``; each channel is pooled on its own.
A window of ``pool_size`` :math:`(k_h, k_w)` moves by ``strides`` :math:`(s_h, s_w)`; along
the height (the width alike), as TensorFlow computes it:

* ``padding="valid"``: windows stay inside the image, :math:`H_{out} =
  \lfloor (H - k_h) / s_h \rfloor + 1`, which needs :math:`k_h \le H`;
* ``padding="same"``: :math:`H_{out} = \lceil H / s_h \rceil`, and the image is padded with
  :math:`p_h = \max((H_{out} - 1) s_h + k_h - H, 0)` rows, :math:`\lfloor p_h / 2 \rfloor` on
  top and the rest at the bottom (the extra one when :math:`p_h` is odd). Since
  :math:`p_h < k_h`, every window holds at least one real row.

The windows are never materialised one by one: the element at offset :math:`(a, b)` of every
window of every image is one strided slice ``x[:, a::s_h, b::s_w]`` of the (padded) batch,
so a pooling is :math:`k_h k_w` whole-array operations, forward and backward (for 2x2
windows, 4 to 10 times faster than reducing a ``sliding_window_view`` or a reshape of the
batch over its window axes, which NumPy walks element by element). Overlapping
windows (strides smaller than the pool) then need no special case: the backward pass adds
each offset's gradients into its slice, and sums where slices overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from minidl.layers.base import Layer, positive_pair

Pair = tuple[int, int]


class _Pooling2D(Layer):
    """What the windowed poolings share: arguments, output shape, padding, window slices."""

    def __init__(self, pool_size: int | Pair = (2, 2), strides: int | Pair | None = None,
                 padding: str = "valid", input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        self.pool_size = positive_pair(pool_size, "pool_size", type(self).__name__)
        # as in Keras: no strides means windows side by side, strides = pool_size
        self.strides = (self.pool_size if strides is None
                        else positive_pair(strides, "strides", type(self).__name__))
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise ValueError(f"{type(self).__name__}: padding must be 'valid' or 'same', "
                             f"got {padding!r}")
        self.padding = padding.lower()

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        height, width, channels = _image_shape(input_shape, type(self).__name__)
        if self.padding == "same":
            return (-(-height // self.strides[0]), -(-width // self.strides[1]), channels)
        if self.pool_size[0] > height or self.pool_size[1] > width:
            raise ValueError(f"{type(self).__name__}: pool_size {self.pool_size} is larger than "
                             f"the input images (height, width) = {(height, width)} with "
                             f"padding='valid'; use a smaller pool_size or padding='same'")
        return ((height - self.pool_size[0]) // self.strides[0] + 1,
                (width - self.pool_size[1]) // self.strides[1] + 1, channels)

    def _pads(self, input_shape: tuple[int, ...]) -> tuple[Pair, Pair]:
        """``((top, bottom), (left, right))``: TensorFlow's, the extra one bottom and right."""
        if self.padding == "valid":
            return (0, 0), (0, 0)
        out_height, out_width, _ = self.compute_output_shape(input_shape)
        pads = []
        for size, out, pool, stride in zip(input_shape[:2], (out_height, out_width),
                                           self.pool_size, self.strides, strict=True):
            total = max((out - 1) * stride + pool - size, 0)
            pads.append((total // 2, total - total // 2))
        return pads[0], pads[1]

    def _padded(self, x: np.ndarray, value: float) -> tuple[np.ndarray, tuple[Pair, Pair]]:
        """``x`` padded with ``value`` as ``padding`` says (``x`` itself when there is no pad)."""
        (top, bottom), (left, right) = pads = self._pads(x.shape[1:])
        if top == bottom == left == right == 0:
            return x, pads
        return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)),
                      constant_values=value), pads

    def _window_offsets(self, out_height: int, out_width: int) -> list[tuple[slice, ...]]:
        """One index per offset (a, b) of a window, in row-major order: ``x_padded[index]``
        is the element at that offset of every window, shape (N, H_out, W_out, C)."""
        (pool_h, pool_w), (stride_h, stride_w) = self.pool_size, self.strides
        return [(slice(None), slice(a, a + (out_height - 1) * stride_h + 1, stride_h),
                 slice(b, b + (out_width - 1) * stride_w + 1, stride_w))
                for a in range(pool_h) for b in range(pool_w)]

    def _checked_input(self, x: Any) -> tuple[np.ndarray, tuple[int, ...]]:
        """``x`` as a float batch of images, and the shape of one output example."""
        x = _image_batch(self, x)
        return x, self.compute_output_shape(x.shape[1:])

    @staticmethod
    def _cropped(grad_padded: np.ndarray, pads: tuple[Pair, Pair]) -> np.ndarray:
        (top, bottom), (left, right) = pads
        height, width = grad_padded.shape[1] - bottom, grad_padded.shape[2] - right
        return grad_padded[:, top:height, left:width]


class MaxPooling2D(_Pooling2D):
    r"""Max pooling: the largest value of each window, per channel.

    With :math:`x` the input padded with :math:`-\infty` (``padding="same"``; see the module
    docstring), :math:`k` = ``pool_size``, :math:`s` = ``strides`` (default ``pool_size``):

    .. math::
        y_{n,i,j,c} = \max_{0 \le a < k_h,\ 0 \le b < k_w} x_{n,\,i s_h + a,\,j s_w + b,\,c},
        \qquad
        \frac{\partial L}{\partial x_{n,p,q,c}} = \sum_{i,j}
            [(p, q) = m_{n,i,j,c}] \, \frac{\partial L}{\partial y_{n,i,j,c}}

    where :math:`m_{n,i,j,c}` is the position of the window's maximum: each output's gradient
    goes to one element of its window, the *first* maximum in row-major order when several
    tie (as PyTorch's ``max_pool2d``), and sums where windows overlap. A NaN in a window
    gives a NaN output, as in PyTorch.
    """

    def __init__(self, pool_size: int | Pair = (2, 2), strides: int | Pair | None = None,
                 padding: str = "valid", input_shape: Sequence[int] | None = None) -> None:
        super().__init__(pool_size, strides, padding, input_shape)
        self._x_padded: np.ndarray | None = None
        self._y: np.ndarray | None = None
        self._pads_of_x: tuple[Pair, Pair] | None = None

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x, (out_height, out_width, _) = self._checked_input(x)
        x_padded, self._pads_of_x = self._padded(x, -np.inf)
        offsets = self._window_offsets(out_height, out_width)
        y = x_padded[offsets[0]].copy()
        for offset in offsets[1:]:
            np.maximum(y, x_padded[offset], out=y)  # in place: one output array in all
        self._x_padded, self._y = x_padded, y
        return y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        y, x_padded = self._y, self._x_padded
        grad_y = self._incoming_grad_like(grad_y, y)
        grad_padded = np.zeros_like(x_padded)
        unrouted = np.ones(y.shape, dtype=bool)  # windows whose maximum is not yet found
        for offset in self._window_offsets(*y.shape[1:3]):
            # offsets run in row-major order: a tie goes to the first maximum only
            is_max = (x_padded[offset] == y) & unrouted
            unrouted ^= is_max
            grad_padded[offset] += grad_y * is_max
        return self._cropped(grad_padded, self._pads_of_x)


class AveragePooling2D(_Pooling2D):
    r"""Average pooling: the mean of each window, per channel.

    With :math:`x` the input padded with zeros (``padding="same"``; see the module docstring)
    and :math:`|W_{i,j}|` the number of *real* (not padded) elements in window :math:`(i, j)`,
    as TensorFlow counts (:math:`k_h k_w` everywhere with ``padding="valid"``):

    .. math::
        y_{n,i,j,c} = \frac{1}{|W_{i,j}|} \sum_{0 \le a < k_h,\ 0 \le b < k_w}
            x_{n,\,i s_h + a,\,j s_w + b,\,c},
        \qquad
        \frac{\partial L}{\partial x_{n,p,q,c}} = \sum_{i,j \,:\, (p,q) \in W_{i,j}}
            \frac{1}{|W_{i,j}|} \frac{\partial L}{\partial y_{n,i,j,c}}
    """

    def __init__(self, pool_size: int | Pair = (2, 2), strides: int | Pair | None = None,
                 padding: str = "valid", input_shape: Sequence[int] | None = None) -> None:
        super().__init__(pool_size, strides, padding, input_shape)
        self._counts: np.ndarray | None = None
        self._pads_of_x: tuple[Pair, Pair] | None = None
        self._padded_shape: tuple[int, ...] | None = None
        self._output_shape: tuple[int, ...] | None = None
        self._dtype: np.dtype | None = None

    def _window_counts(self, input_shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """|W_{i,j}| as an (H_out, W_out, 1) array: real rows times real columns."""
        out_height, out_width, _ = self.compute_output_shape(input_shape)
        counts = []
        for size, out, pool, stride, (before, _) in zip(
                input_shape[:2], (out_height, out_width), self.pool_size, self.strides,
                self._pads(input_shape), strict=True):
            start = np.arange(out) * stride - before  # first row of each window, unpadded
            counts.append(np.minimum(start + pool, size) - np.maximum(start, 0))
        return np.multiply.outer(*counts)[:, :, None].astype(dtype)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x, (out_height, out_width, _) = self._checked_input(x)
        x_padded, self._pads_of_x = self._padded(x, 0.0)
        offsets = self._window_offsets(out_height, out_width)
        y = x_padded[offsets[0]].copy()  # the window sums first
        for offset in offsets[1:]:
            y += x_padded[offset]
        self._counts = self._window_counts(x.shape[1:], x.dtype)
        y /= self._counts  # in place, the sums become the means: no second output array
        self._padded_shape, self._output_shape, self._dtype = x_padded.shape, y.shape, x.dtype
        return y

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        grad_y = self._incoming_grad(grad_y, self._output_shape, self._dtype)
        grad_window = grad_y / self._counts  # the same share for every element of a window
        grad_padded = np.zeros(self._padded_shape, dtype=self._dtype)
        for offset in self._window_offsets(*grad_y.shape[1:3]):
            grad_padded[offset] += grad_window
        return self._cropped(grad_padded, self._pads_of_x)


class _GlobalPooling2D(Layer):
    """What the global poolings share: ``keepdims``, the output shape and ``forward``, which
    reduces the image axes with the subclass's ``_reduce`` (a mean or a max)."""

    def __init__(self, keepdims: bool = False,
                 input_shape: Sequence[int] | None = None) -> None:
        super().__init__(input_shape=input_shape)
        if not isinstance(keepdims, bool):
            raise TypeError(f"{type(self).__name__}: keepdims must be True or False, "
                            f"got {keepdims!r}")
        self.keepdims = keepdims
        self._x: np.ndarray | None = None
        self._output_shape: tuple[int, ...] | None = None

    def compute_output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        channels = _image_shape(input_shape, type(self).__name__)[2]
        return (1, 1, channels) if self.keepdims else (channels,)

    def forward(self, x: np.ndarray, training: bool = False) -> np.ndarray:
        x = _image_batch(self, x)
        y = self._reduce(x, keepdims=self.keepdims)  # each subclass's mean or max
        self._x, self._output_shape = x, y.shape
        return y


class GlobalAveragePooling2D(_GlobalPooling2D):
    r"""The mean of each channel over the whole image: (N, H, W, C) → (N, C), or
    (N, 1, 1, C) with ``keepdims=True``.

    .. math::
        y_{n,c} = \frac{1}{H W} \sum_{p,q} x_{n,p,q,c}, \qquad
        \frac{\partial L}{\partial x_{n,p,q,c}} = \frac{1}{H W}
            \frac{\partial L}{\partial y_{n,c}}
    """

    @staticmethod
    def _reduce(x: np.ndarray, keepdims: bool) -> np.ndarray:
        return x.mean(axis=(1, 2), keepdims=keepdims)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        x = self._x
        grad_y = self._incoming_grad(grad_y, self._output_shape, None if x is None else x.dtype)
        batch_size, height, width, channels = x.shape
        grad_pixel = grad_y.reshape(batch_size, 1, 1, channels) * (1.0 / (height * width))
        return np.broadcast_to(grad_pixel, x.shape).copy()  # a copy: writable, as any gradient


class GlobalMaxPooling2D(_GlobalPooling2D):
    r"""The maximum of each channel over the whole image: (N, H, W, C) → (N, C), or
    (N, 1, 1, C) with ``keepdims=True``.

    .. math::
        y_{n,c} = \max_{p,q} x_{n,p,q,c}, \qquad
        \frac{\partial L}{\partial x_{n,p,q,c}} = [(p, q) = m_{n,c}] \,
            \frac{\partial L}{\partial y_{n,c}}

    where :math:`m_{n,c}` is the position of the maximum, the *first* in row-major order when
    several tie: the gradient goes to one pixel, as with ``MaxPooling2D`` (and PyTorch's
    ``max_pool2d`` over the whole image; ``torch.amax`` would share it among the ties).
    """

    @staticmethod
    def _reduce(x: np.ndarray, keepdims: bool) -> np.ndarray:
        return x.max(axis=(1, 2), keepdims=keepdims)

    def backward(self, grad_y: np.ndarray) -> np.ndarray:
        x = self._x
        grad_y = self._incoming_grad(grad_y, self._output_shape, None if x is None else x.dtype)
        batch_size, height, width, channels = x.shape
        pixels = x.reshape(batch_size, height * width, channels)
        first_max = pixels.argmax(axis=1)[:, None, :]  # argmax returns the first of ties
        grad_pixels = np.zeros_like(pixels)
        np.put_along_axis(grad_pixels, first_max,
                          grad_y.reshape(batch_size, 1, channels), axis=1)
        return grad_pixels.reshape(x.shape)


def _image_batch(layer: Layer, x: Any) -> np.ndarray:
    """``x`` as a float array (batch, height, width, channels), or a ValueError naming its shape."""
    x = layer._float_input(x)
    if x.ndim != 4:
        raise ValueError(f"{type(layer).__name__}: expected inputs of shape (batch, height, "
                         f"width, channels), got shape {x.shape}")
    return x


def _image_shape(input_shape: tuple[int, ...], layer_name: str) -> tuple[int, int, int]:
    """``(height, width, channels)`` of one example, or a ValueError naming the shape."""
    if len(input_shape) != 3:
        raise ValueError(f"{layer_name}: expected examples of shape (height, width, channels), "
                         f"got {tuple(input_shape)}")
    height, width, channels = (int(n) for n in input_shape)
    return height, width, channels
