"""Convolution arithmetic: output sizes, parameter counts, receptive fields, a reference conv.

The formulas of the convolution chapter, written once and checked against Keras layers in the
tests and in the chapters:

* output size ``⌊(n + p_total − d(k − 1) − 1) / s⌋ + 1``, with Keras' ``"valid"`` (no padding)
  and ``"same"`` (``⌈n / s⌉`` outputs, the extra padding row at the bottom/right);
* parameters ``k_h · k_w · (C_in / groups) · C_out (+ C_out biases)``;
* receptive fields by the recurrence ``r ← r + (k − 1) · d · j``, ``j ← j · s``;
* :func:`conv2d`, a float64 NumPy convolution to compare with ``keras.layers.Conv2D``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

Array = NDArray[np.float64]


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair):
        raise ValueError(f"{name} must be a positive integer or a pair of them, got {value!r}")
    return pair


def _positive_int(value: Any, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}")
    return value


def same_padding(
    size: int, kernel_size: int, strides: int = 1, dilation_rate: int = 1
) -> tuple[int, int]:
    """Zero padding that Keras' ``padding="same"`` adds before and after one spatial axis.

    ``"same"`` gives ``⌈n / s⌉`` outputs. The total padding is whatever that needs,
    ``max((⌈n/s⌉ − 1)·s + d(k − 1) + 1 − n, 0)``; when it is odd, the extra row goes **after**
    (bottom/right) — TensorFlow's convention, which PyTorch's symmetric ``padding=k//2`` does not
    reproduce for even sizes and stride 2.

    Args:
        size: Input size n along the axis.
        kernel_size: Kernel size k.
        strides: Stride s.
        dilation_rate: Dilation d.

    Returns:
        ``(before, after)``.

    Raises:
        ValueError: If an argument is not a positive integer.
    """
    _positive_int(size, "size")
    _positive_int(kernel_size, "kernel_size")
    _positive_int(strides, "strides")
    _positive_int(dilation_rate, "dilation_rate")
    outputs = -(-size // strides)
    total = max((outputs - 1) * strides + dilation_rate * (kernel_size - 1) + 1 - size, 0)
    return total // 2, total - total // 2


def conv_output_size(
    size: int,
    kernel_size: int,
    *,
    strides: int = 1,
    padding: str | int = "valid",
    dilation_rate: int = 1,
) -> int:
    """Output size of a convolution or pooling window along one spatial axis.

    ``⌊(n + p_before + p_after − d(k − 1) − 1) / s⌋ + 1``.

    Args:
        size: Input size n.
        kernel_size: Kernel (or pooling window) size k.
        strides: Stride s.
        padding: ``"valid"`` (none), ``"same"`` (see :func:`same_padding`) or an integer p of
            zeros added on **each** side.
        dilation_rate: Dilation d.

    Returns:
        The output size.

    Raises:
        ValueError: For non-positive sizes, an unknown padding, or a kernel larger than the
            padded input.
    """
    _positive_int(size, "size")
    _positive_int(kernel_size, "kernel_size")
    _positive_int(strides, "strides")
    _positive_int(dilation_rate, "dilation_rate")
    if padding == "valid":
        before = after = 0
    elif padding == "same":
        before, after = same_padding(size, kernel_size, strides, dilation_rate)
    elif isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        before = after = padding
    else:
        raise ValueError(f"padding must be 'valid', 'same' or an integer ≥ 0, got {padding!r}")
    span = dilation_rate * (kernel_size - 1) + 1
    if size + before + after < span:
        raise ValueError(
            f"a kernel spanning {span} pixels does not fit an input of {size} "
            f"padded by {before + after}"
        )
    return (size + before + after - span) // strides + 1


def conv_parameters(
    kernel_size: int | Sequence[int],
    in_channels: int,
    filters: int,
    *,
    use_bias: bool = True,
    groups: int = 1,
) -> int:
    """Number of weights of a 2-D convolution: ``k_h · k_w · (C_in / groups) · C_out (+ C_out)``.

    The count does not depend on the image size: every position shares the same kernel. A
    depthwise convolution is the case ``groups = in_channels = filters``.

    Args:
        kernel_size: k or (k_h, k_w).
        in_channels: Input channels C_in.
        filters: Output channels C_out.
        use_bias: Whether the layer has one bias per output channel.
        groups: Channel groups; C_in and C_out must be divisible by it.

    Returns:
        The parameter count.

    Raises:
        ValueError: For non-positive sizes or channels not divisible by ``groups``.
    """
    kernel_h, kernel_w = _pair(kernel_size, "kernel_size")
    _positive_int(in_channels, "in_channels")
    _positive_int(filters, "filters")
    _positive_int(groups, "groups")
    if in_channels % groups or filters % groups:
        raise ValueError(
            f"in_channels {in_channels} and filters {filters} must be divisible by groups {groups}"
        )
    return kernel_h * kernel_w * (in_channels // groups) * filters + (filters if use_bias else 0)


def receptive_field(layers: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """Receptive field and jump after each layer of a chain of convolutions or poolings.

    Starting from one input pixel (size 1, jump 1), a layer with kernel k, stride s and dilation
    d gives ``size ← size + (k − 1)·d·jump`` and ``jump ← jump · s``. The *jump* is the distance,
    in input pixels, between neighbouring outputs of the layer.

    Args:
        layers: One ``(kernel_size, strides)`` or ``(kernel_size, strides, dilation_rate)`` per
            layer, in order.

    Returns:
        ``(size, jump)`` after each layer.

    Raises:
        ValueError: For an entry that is not two or three positive integers.
    """
    size, jump = 1, 1
    fields = []
    for layer in layers:
        values = tuple(layer)
        if len(values) not in (2, 3):
            raise ValueError(f"each layer is (kernel, stride[, dilation]), got {layer!r}")
        kernel = _positive_int(values[0], "kernel_size")
        stride = _positive_int(values[1], "strides")
        dilation = _positive_int(values[2], "dilation_rate") if len(values) == 3 else 1
        size += (kernel - 1) * dilation * jump
        jump *= stride
        fields.append((size, jump))
    return fields


def conv2d(
    images: ArrayLike, kernel: ArrayLike, *, strides: int = 1, padding: str = "valid"
) -> Array:
    """A 2-D convolution (a cross-correlation, as in every framework) in float64 NumPy.

    ``out[n, i, j, c] = Σ_{a, b, m} x[n, i·s + a, j·s + b, m] · kernel[a, b, m, c]`` over the
    zero-padded input. Written for reading and checking, not for speed: one array product per
    kernel offset.

    Args:
        images: ``(N, H, W, C_in)``.
        kernel: ``(k_h, k_w, C_in, C_out)``, Keras' layout.
        strides: Stride s along both axes.
        padding: ``"valid"`` or ``"same"`` (Keras' asymmetric padding, see :func:`same_padding`).

    Returns:
        ``(N, H_out, W_out, C_out)``.

    Raises:
        ValueError: For mismatched shapes or an unknown padding.
    """
    x = np.asarray(images, dtype=np.float64)
    w = np.asarray(kernel, dtype=np.float64)
    if x.ndim != 4 or w.ndim != 4 or x.shape[-1] != w.shape[2]:
        raise ValueError(
            f"need images (N, H, W, C) and kernel (kh, kw, C, C_out), got {x.shape} and {w.shape}"
        )
    if padding not in ("valid", "same"):
        raise ValueError(f"padding must be 'valid' or 'same', got {padding!r}")
    kernel_h, kernel_w = w.shape[:2]
    if padding == "same":
        pads = [
            same_padding(x.shape[1], kernel_h, strides),
            same_padding(x.shape[2], kernel_w, strides),
        ]
        x = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    out_h = conv_output_size(x.shape[1], kernel_h, strides=strides)
    out_w = conv_output_size(x.shape[2], kernel_w, strides=strides)
    out = np.zeros((x.shape[0], out_h, out_w, w.shape[3]))
    for a in range(kernel_h):
        for b in range(kernel_w):
            window = x[:, a::strides, b::strides][:, :out_h, :out_w]
            out += window @ w[a, b]
    return out
