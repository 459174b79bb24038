"""A pre-activation bottleneck ResNet for Tiny ImageNet, in pure Keras 3.

Only ``keras.layers`` and ``keras.ops`` are used, so the same code trains on the TensorFlow
backend (Colab, CI) and with ``KERAS_BACKEND=jax`` (the GPU machine). Following
``keras/src/applications/resnet.py``, the network is made of small tensor-in/tensor-out block
functions with named layers, one general builder and thin variants.

The architecture is the one of the course's source notes, with their bugs fixed:

* a 3×3 stem convolution at full 64×64 resolution (no early downsampling: the images are small);
* an entry bottleneck with a 1×1 projection shortcut (the notes' "special bottleneck");
* per level, ``levels[i]`` identity bottlenecks (BN-ReLU-Conv 1×1 → 3×3 → 1×1, inner width a
  quarter of the channels) and a downsampling bottleneck that halves the resolution and doubles
  the channels (the stride sits on the 3×3 convolution, not on a 1×1 that would skip 3/4 of the
  pixels);
* a final BN-ReLU, global average pooling and one dense layer of logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from dlnotes.runtime import import_quietly

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")  # quietly: the first import of TensorFlow logs to stderr
layers, ops = keras.layers, keras.ops


def _check_positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def preactivation(x: Any, *, name: str, dtype: Any = None) -> Any:
    """Batch normalisation followed by ReLU: the "pre-activation" that opens every unit."""
    x = layers.BatchNormalization(name=f"{name}_bn", dtype=dtype)(x)
    return layers.ReLU(name=f"{name}_relu", dtype=dtype)(x)


def conv_unit(
    x: Any, filters: int, kernel_size: int, *, strides: int = 1, name: str, dtype: Any = None
) -> Any:
    """BN → ReLU → Conv (no bias: the next batch normalisation has one). The notes' ``ResnetBasic``.

    Args:
        x: Input tensor ``(B, H, W, C)``.
        filters: Output channels.
        kernel_size: Square kernel size.
        strides: Convolution stride.
        name: Prefix of the layer names.
        dtype: Keras dtype policy (e.g. ``"mixed_bfloat16"``), None for the global default.

    Returns:
        The output tensor.
    """
    x = preactivation(x, name=name, dtype=dtype)
    return layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_conv",
        dtype=dtype,
    )(x)


def bottleneck_block(x: Any, *, name: str, dtype: Any = None) -> Any:
    """Identity bottleneck: ``x + conv_unit(1×1, C/4) → conv_unit(3×3, C/4) → conv_unit(1×1, C)``.

    Args:
        x: Input ``(B, H, W, C)`` with C divisible by 4.
        name: Prefix of the layer names.
        dtype: Keras dtype policy.

    Returns:
        Output of the same shape.
    """
    channels = x.shape[-1]
    inner = channels // 4
    residual = conv_unit(x, inner, 1, name=f"{name}_1", dtype=dtype)
    residual = conv_unit(residual, inner, 3, name=f"{name}_2", dtype=dtype)
    residual = conv_unit(residual, channels, 1, name=f"{name}_3", dtype=dtype)
    return layers.Add(name=f"{name}_add", dtype=dtype)([x, residual])


def projection_block(
    x: Any, filters: int, inner: int, *, strides: int = 1, name: str, dtype: Any = None
) -> Any:
    """Bottleneck whose shortcut is a 1×1 convolution, to change channels and/or resolution.

    The shortcut and the residual path share one pre-activation (as in pre-activation ResNets).

    Args:
        x: Input ``(B, H, W, C)``.
        filters: Output channels.
        inner: Channels inside the bottleneck.
        strides: 2 to halve the resolution (on the 3×3 convolution and the shortcut).
        name: Prefix of the layer names.
        dtype: Keras dtype policy.

    Returns:
        Output ``(B, H/strides, W/strides, filters)``.
    """
    pre = preactivation(x, name=f"{name}_preact", dtype=dtype)
    shortcut = layers.Conv2D(
        filters,
        1,
        strides=strides,
        use_bias=False,
        kernel_initializer="he_normal",
        name=f"{name}_shortcut_conv",
        dtype=dtype,
    )(pre)
    residual = layers.Conv2D(
        inner, 1, use_bias=False, kernel_initializer="he_normal", name=f"{name}_1_conv", dtype=dtype
    )(pre)
    residual = conv_unit(residual, inner, 3, strides=strides, name=f"{name}_2", dtype=dtype)
    residual = conv_unit(residual, filters, 1, name=f"{name}_3", dtype=dtype)
    return layers.Add(name=f"{name}_add", dtype=dtype)([shortcut, residual])


def stem(x: Any, width: int, *, dtype: Any = None) -> Any:
    """The 3×3 stem convolution at full resolution (no early downsampling: the images are small).

    Args:
        x: The input images ``(B, H, W, C)``.
        width: Output channels.
        dtype: Keras dtype policy.

    Returns:
        ``(B, H, W, width)``.
    """
    return layers.Conv2D(
        width,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name="stem_conv",
        dtype=dtype,
    )(x)


def stack(x: Any, repeats: int, *, name: str, dtype: Any = None) -> Any:
    """One level (a "stack" in keras.applications): ``repeats`` identity bottlenecks, then a
    downsampling projection bottleneck.

    Args:
        x: Input ``(B, H, W, C)``.
        repeats: Identity bottlenecks.
        name: Prefix of the layer names (``{name}_block{i}``, ``{name}_downsample``).
        dtype: Keras dtype policy.

    Returns:
        Output ``(B, H/2, W/2, 2C)``.
    """
    for block in range(repeats):
        x = bottleneck_block(x, name=f"{name}_block{block}", dtype=dtype)
    channels = x.shape[-1]
    return projection_block(
        x, 2 * channels, channels // 2, strides=2, name=f"{name}_downsample", dtype=dtype
    )


def classifier_head(x: Any, num_classes: int, *, dtype: Any = None) -> Any:
    """The final BN-ReLU, global average pooling and a dense layer of float32 logits.

    Args:
        x: Features ``(B, H, W, C)``.
        num_classes: Number of logits.
        dtype: Keras dtype policy of the pre-activation and the pooling.

    Returns:
        Logits ``(B, num_classes)``, float32 whatever ``dtype``.
    """
    x = preactivation(x, name="final", dtype=dtype)
    x = layers.GlobalAveragePooling2D(name="pool", dtype=dtype)(x)
    # Small initial logits: the untrained network predicts a near-uniform distribution, so the
    # first loss is close to ln(num_classes), a useful sanity check.
    return layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="logits",
        dtype="float32",
    )(x)


def _check_architecture(
    num_classes: int, levels: tuple[int, ...], width: int, input_shape: tuple[int, int, int]
) -> None:
    """Raise a ValueError naming the first argument of :func:`build_resnet` that cannot work."""
    _check_positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    _check_positive_int(width, "width")
    if width % 4:
        raise ValueError(f"width must be divisible by 4 (integer bottlenecks), got {width}")
    if not levels:
        raise ValueError("levels must name at least one level, got an empty sequence")
    for count in levels:
        _check_positive_int(count, "every entry of levels")
    height, breadth = input_shape[0], input_shape[1]
    if height % 2 ** len(levels) or breadth % 2 ** len(levels):
        raise ValueError(
            f"input {input_shape[:2]} must be divisible by 2**{len(levels)} (one halving per level)"
        )


def build_resnet(
    num_classes: int,
    levels: Sequence[int] = (4, 6, 3, 2),
    width: int = 64,
    input_shape: tuple[int, int, int] = (64, 64, 3),
    *,
    dtype: Any = None,
    name: str = "resnet",
) -> keras.Model:
    """Build the pre-activation bottleneck ResNet: stem, entry block, levels, head.

    Args:
        num_classes: Number of output logits (at least 2).
        levels: Identity bottlenecks per level; each level ends with a downsampling block.
        width: Channels after the stem (divisible by 4): 64 is "full width", 32 "half width".
        input_shape: ``(H, W, C)`` of the (already normalised, float) input images; H and W
            must be divisible by ``2 ** len(levels)``.
        dtype: Keras dtype policy for every layer except the float32 logits, e.g.
            ``"mixed_bfloat16"``; None uses Keras' global default (float32).
        name: Model name.

    Returns:
        An uncompiled ``keras.Model`` mapping images to logits.

    Raises:
        ValueError: For a non-positive or non-integer argument, a width not divisible by 4,
            or an input too small for the number of levels.
    """
    levels = tuple(levels)
    _check_architecture(num_classes, levels, width, input_shape)
    inputs = keras.Input(shape=input_shape, name="images")
    x = stem(inputs, width, dtype=dtype)
    x = projection_block(x, width, width // 4, name="entry", dtype=dtype)
    for index, repeats in enumerate(levels):
        x = stack(x, repeats, name=f"level{index}", dtype=dtype)
    return keras.Model(inputs, classifier_head(x, num_classes, dtype=dtype), name=name)


def resnet_full_width(num_classes: int, **kwargs: Any) -> keras.Model:
    """The default network: levels (4, 6, 3, 2), width 64."""
    return build_resnet(num_classes, width=64, name="resnet_full_width", **kwargs)


def resnet_half_width(num_classes: int, **kwargs: Any) -> keras.Model:
    """Half the channels everywhere: levels (4, 6, 3, 2), width 32."""
    return build_resnet(num_classes, width=32, name="resnet_half_width", **kwargs)
