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
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
from keras import layers, ops

from dlnotes import device_data, mixing


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


def build_resnet(
    num_classes: int,
    levels: Sequence[int] = (4, 6, 3, 2),
    width: int = 64,
    input_shape: tuple[int, int, int] = (64, 64, 3),
    *,
    dtype: Any = None,
    name: str = "resnet",
) -> keras.Model:
    """Build the pre-activation bottleneck ResNet.

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
    _check_positive_int(num_classes, "num_classes")
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    _check_positive_int(width, "width")
    if width % 4:
        raise ValueError(f"width must be divisible by 4 (integer bottlenecks), got {width}")
    levels = tuple(levels)
    if not levels:
        raise ValueError("levels must name at least one level, got an empty sequence")
    for count in levels:
        _check_positive_int(count, "every entry of levels")
    height, breadth = input_shape[0], input_shape[1]
    if height % 2 ** len(levels) or breadth % 2 ** len(levels):
        raise ValueError(
            f"input {input_shape[:2]} must be divisible by 2**{len(levels)} (one halving per level)"
        )
    inputs = keras.Input(shape=input_shape, name="images")
    x = layers.Conv2D(
        width,
        3,
        padding="same",
        use_bias=False,
        kernel_initializer="he_normal",
        name="stem_conv",
        dtype=dtype,
    )(inputs)
    x = projection_block(x, width, width // 4, name="entry", dtype=dtype)
    for level, repeats in enumerate(levels):
        for block in range(repeats):
            x = bottleneck_block(x, name=f"level{level}_block{block}", dtype=dtype)
        channels = x.shape[-1]
        x = projection_block(
            x, 2 * channels, channels // 2, strides=2, name=f"level{level}_downsample", dtype=dtype
        )
    x = preactivation(x, name="final", dtype=dtype)
    x = layers.GlobalAveragePooling2D(name="pool", dtype=dtype)(x)
    # Small initial logits: the untrained network predicts a near-uniform distribution, so the
    # first loss is close to ln(num_classes), a useful sanity check.
    logits = layers.Dense(
        num_classes,
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        name="logits",
        dtype="float32",
    )(x)
    return keras.Model(inputs, logits, name=name)


def resnet_full_width(num_classes: int, **kwargs: Any) -> keras.Model:
    """The default network: levels (4, 6, 3, 2), width 64."""
    return build_resnet(num_classes, width=64, name="resnet_full_width", **kwargs)


def resnet_half_width(num_classes: int, **kwargs: Any) -> keras.Model:
    """Half the channels everywhere: levels (4, 6, 3, 2), width 32."""
    return build_resnet(num_classes, width=32, name="resnet_half_width", **kwargs)


@keras.saving.register_keras_serializable(package="dlnotes")
class RandomShiftFlip(layers.Layer):
    """Training-time augmentation inside the model: a random shift of up to ``padding`` pixels
    with mirrored borders (a reflect-padded random crop) and a random horizontal flip, per image.

    Built from one ``take_along_axis`` gather with static shapes, so it compiles with XLA on every
    backend (unlike ``RandomTranslation``, which switches ``jit_compile`` off). Randomness comes
    from a ``keras.random.SeedGenerator``, as JAX requires. At inference it is the identity.

    Args:
        padding: Largest shift in pixels (≥ 0).
        seed: Seed of the generator.
    """

    def __init__(self, padding: int = 4, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
            raise ValueError(f"padding must be a non-negative integer, got {padding!r}")
        self.padding = padding
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images: Any, training: bool | None = None) -> Any:
        if not training:
            return images
        batch = ops.shape(images)[0]
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        if not self.padding < min(height, width):
            raise ValueError(
                f"padding {self.padding} must be smaller than the image {height}×{width}"
            )
        shifts = keras.random.randint(
            (batch, 2, 1, 1), -self.padding, self.padding + 1, seed=self.seed_generator
        )
        flip = keras.random.uniform((batch, 1, 1), seed=self.seed_generator) < 0.5
        columns = ops.reshape(ops.arange(width), (1, 1, width))
        columns = ops.where(flip, (width - 1) - columns, columns) + shifts[:, 1]
        rows = ops.reshape(ops.arange(height), (1, height, 1)) + shifts[:, 0]

        def reflect(index: Any, size: int) -> Any:
            index = ops.abs(index)
            return (size - 1) - ops.abs((size - 1) - index)

        source = ops.reshape(
            reflect(rows, height) * width + reflect(columns, width), (batch, -1, 1)
        )
        source = ops.broadcast_to(source, (batch, height * width, channels))
        flat = ops.reshape(images, (batch, height * width, channels))
        return ops.reshape(
            ops.take_along_axis(flat, source, axis=1), (batch, height, width, channels)
        )

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "seed": self.seed}


def _to_float(name: str) -> layers.Layer:
    return layers.Lambda(lambda t: ops.cast(t, "float32"), name=name)


def _normalization(mean: Sequence[float], std: Sequence[float], channels: int) -> layers.Layer:
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"need {channels} means and stds, got {len(mean)} and {len(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {list(std)}")
    return layers.Normalization(
        mean=[float(m) for m in mean], variance=[float(s) ** 2 for s in std], name="normalize"
    )


def with_preprocessing(
    backbone: keras.Model,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    augment: bool = True,
    padding: int = 4,
    seed: int | None = None,
) -> keras.Model:
    """Wrap a backbone into a model that takes raw uint8 images.

    ``uint8 → float32 → RandomShiftFlip (training only) → per-channel normalisation → backbone``.
    Feeding uint8 moves 4× fewer bytes from host to accelerator, and the augmentation runs on the
    accelerator inside the compiled step.

    Args:
        backbone: Model from :func:`build_resnet` (or any model of float images).
        mean: Per-channel mean of the training pixels, in [0, 255].
        std: Per-channel standard deviation, in [0, 255].
        augment: Include :class:`RandomShiftFlip`.
        padding: Its largest shift.
        seed: Its seed.

    Returns:
        The wrapped model (same outputs as the backbone).

    Raises:
        ValueError: If ``mean`` and ``std`` do not have one entry per channel or ``std`` ≤ 0.
    """
    normalize = _normalization(mean, std, backbone.input_shape[-1])
    inputs = keras.Input(shape=backbone.input_shape[1:], dtype="uint8", name="uint8_images")
    x = _to_float("to_float")(inputs)
    if augment:
        x = RandomShiftFlip(padding=padding, seed=seed, name="augment")(x)
    x = normalize(x)
    return keras.Model(inputs, backbone(x), name=f"{backbone.name}_with_preprocessing")


@dataclass(frozen=True)
class TrainingModels:
    """Three models that share one backbone and one normalisation layer.

    Attributes:
        train: Image indices (plus, with mixing, ``partner``, ``box`` and ``mix_weight``) →
            logits. Gathers the images from accelerator memory, augments them (random shift and
            flip), blends them with MixUp/CutMix in training, normalises them. Used by ``fit``
            and for the validation curves.
        flip_averaged: Image indices → the mean of the logits of each image and of its mirror
            image (test-time augmentation).
        inference: uint8 images ``(B, H, W, C)`` → logits, for use after training.
    """

    train: keras.Model
    flip_averaged: keras.Model
    inference: keras.Model


def build_training_models(
    backbone: keras.Model,
    images: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    padding: int = 4,
    seed: int | None = None,
    mix: bool = False,
) -> TrainingModels:
    """Build the models the trainer uses around a backbone, with the images in device memory.

    Args:
        backbone: Model of normalised float images, e.g. from :func:`build_resnet`.
        images: ``(N, H, W, C)`` uint8 array of every image the indices may name (training
            images first, then validation images); held by a
            :class:`dlnotes.device_data.ImageLookup` layer.
        mean: Per-channel mean of the training pixels, in [0, 255].
        std: Per-channel standard deviation, in [0, 255].
        padding: Largest random shift of :class:`RandomShiftFlip`.
        seed: Seed of the augmentation (the partner images use ``seed + 1``).
        mix: Add the MixUp/CutMix inputs and the :class:`dlnotes.mixing.MixImages` layer.

    Returns:
        The three models.

    Raises:
        ValueError: For images that do not match the backbone's input, or bad ``mean``/``std``.
    """
    image_shape = tuple(backbone.input_shape[1:])
    if np.ndim(images) != 4 or tuple(np.shape(images)[1:]) != image_shape:
        raise ValueError(
            f"images must have shape (N, {', '.join(map(str, image_shape))}), "
            f"got {np.shape(images)}"
        )
    normalize = _normalization(mean, std, image_shape[-1])
    lookup = device_data.ImageLookup(images, name="image_lookup")
    to_float = _to_float("to_float")

    def augmented(indices: Any, name: str, layer_seed: int | None) -> Any:
        x = to_float(lookup(indices))
        return RandomShiftFlip(padding=padding, seed=layer_seed, name=name)(x)

    index = keras.Input(shape=(), dtype="int32", name="index")
    inputs: dict[str, Any] = {"index": index}
    x = augmented(index, "augment", seed)
    if mix:
        inputs.update(
            partner=keras.Input(shape=(), dtype="int32", name="partner"),
            box=keras.Input(shape=(4,), dtype="int32", name="box"),
            mix_weight=keras.Input(shape=(), dtype="float32", name="mix_weight"),
        )
        partner = augmented(
            inputs["partner"], "augment_partner", None if seed is None else seed + 1
        )
        x = mixing.MixImages(name="mix")([x, partner, inputs["box"], inputs["mix_weight"]])
    train = keras.Model(inputs, backbone(normalize(x)), name="train_model")

    eval_index = keras.Input(shape=(), dtype="int32", name="index")
    plain = normalize(to_float(lookup(eval_index)))
    mirrored = layers.Lambda(lambda t: ops.flip(t, axis=2), name="mirror")(plain)
    averaged = layers.Average(name="flip_average", dtype="float32")(
        [backbone(plain), backbone(mirrored)]
    )
    flip_averaged = keras.Model({"index": eval_index}, averaged, name="flip_averaged_model")

    uint8_images = keras.Input(shape=image_shape, dtype="uint8", name="uint8_images")
    inference = keras.Model(
        uint8_images, backbone(normalize(to_float(uint8_images))), name="inference_model"
    )
    return TrainingModels(train=train, flip_averaged=flip_averaged, inference=inference)


def layer_costs(model: keras.Model) -> dict[str, tuple[int, int]]:
    """Parameters and forward FLOPs per image of every convolution and dense layer.

    Two FLOPs per multiply-accumulate. Batch normalisation, activations, additions and pooling are
    left out (they are memory-bound and add well under 1 % of the arithmetic).

    Args:
        model: A built Keras model; nested models are included, their layer names prefixed with
            the nested model's name and a slash.

    Returns:
        ``{layer name: (parameters, FLOPs)}`` in layer order.
    """
    costs: dict[str, tuple[int, int]] = {}
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            for name, cost in layer_costs(layer).items():
                costs[f"{layer.name}/{name}"] = cost
        elif isinstance(layer, layers.Conv2D):
            kernel_h, kernel_w = layer.kernel_size
            in_channels = layer.input.shape[-1]
            _, out_h, out_w, out_channels = layer.output.shape
            macs = out_h * out_w * out_channels * kernel_h * kernel_w * in_channels // layer.groups
            costs[layer.name] = (layer.count_params(), 2 * macs)
        elif isinstance(layer, layers.Dense):
            costs[layer.name] = (layer.count_params(), 2 * layer.input.shape[-1] * layer.units)
    return costs


def forward_flops(model: keras.Model) -> int:
    """FLOPs of one image's forward pass (see :func:`layer_costs`).

    A training step costs about 3× this (forward, gradient with respect to the activations,
    gradient with respect to the weights).

    Args:
        model: A built Keras model; nested models are counted too.

    Returns:
        Floating-point operations per image.
    """
    return int(sum(flops for _, flops in layer_costs(model).values()))
