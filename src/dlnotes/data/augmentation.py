"""Augmentation and normalisation as Keras layers: one definition for every input path.

The trainer applies them on the accelerator inside the compiled step; the ``tf.data`` pipeline of
:mod:`dlnotes.data.pipeline` maps the same layers over its batches. Built from ``keras.ops`` with
static shapes, they compile with XLA on every backend.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes.runtime import import_quietly

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")  # quietly: the first import of TensorFlow logs to stderr
layers, ops = keras.layers, keras.ops


def shift_and_flip(images: Any, shifts: Any, flips: Any) -> Any:
    """Shift each image by whole pixels, mirroring at the borders, then flip it horizontally.

    The one implementation of the course's augmentation: one gather with static shapes, so it
    compiles with XLA on every backend and is fast in ``tf.data``. The random draws are the
    caller's (:class:`RandomShiftFlip` inside a model, ``tf.random`` in a pipeline).

    Args:
        images: Batch ``(B, H, W, C)`` of any dtype, with static H, W and C.
        shifts: ``(B, 2)`` int32 row and column shifts, each in ``[−H + 1, H − 1]`` and
            ``[−W + 1, W − 1]``.
        flips: ``(B,)`` booleans: flip the shifted image horizontally.

    Returns:
        The augmented batch, same shape and dtype.

    Raises:
        ValueError: If ``images`` is not a batch with static H, W and C.
    """
    if len(images.shape) != 4 or None in tuple(images.shape[1:]):
        raise ValueError(
            f"images must be a batch (B, H, W, C) with static H, W, C, got {images.shape}"
        )
    batch = ops.shape(images)[0]
    height, width, channels = images.shape[1], images.shape[2], images.shape[3]
    shifts = ops.cast(shifts, "int32")
    flips = ops.reshape(flips, (-1, 1, 1))
    columns = ops.reshape(ops.arange(width, dtype="int32"), (1, 1, width))
    columns = ops.where(flips, (width - 1) - columns, columns) + ops.reshape(
        shifts[:, 1], (-1, 1, 1)
    )
    rows = ops.reshape(ops.arange(height, dtype="int32"), (1, height, 1)) + ops.reshape(
        shifts[:, 0], (-1, 1, 1)
    )

    def reflect(index: Any, size: int) -> Any:
        index = ops.abs(index)
        return (size - 1) - ops.abs((size - 1) - index)

    source = reflect(rows, height) * width + reflect(columns, width)  # (B, H, W) pixel indices
    # One plain gather of whole pixels from the flattened batch: six times faster in tf.data on
    # a CPU than take_along_axis over a (B, H·W, C) index (benchmarks/pipeline.py).
    first_pixel = ops.reshape(ops.arange(batch, dtype="int32") * (height * width), (-1, 1, 1))
    pixels = ops.reshape(images, (-1, channels))
    gathered = ops.take(pixels, ops.reshape(source + first_pixel, (-1,)), axis=0)
    return ops.reshape(gathered, (batch, height, width, channels))


@keras.saving.register_keras_serializable(package="dlnotes")
class RandomShiftFlip(keras.layers.Layer):
    """Training-time augmentation inside the model: a random shift of up to ``padding`` pixels
    with mirrored borders (a reflect-padded random crop) and a random horizontal flip, per image.

    Draws the shifts and flips and applies :func:`shift_and_flip`, which compiles with XLA on
    every backend (unlike ``RandomTranslation``, which switches ``jit_compile`` off). Randomness
    comes from a ``keras.random.SeedGenerator``, as JAX requires. At inference it is the identity.

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
        height, width = images.shape[1], images.shape[2]
        if not self.padding < min(height, width):
            raise ValueError(
                f"padding {self.padding} must be smaller than the image {height}×{width}"
            )
        batch = ops.shape(images)[0]
        shifts = keras.random.randint(
            (batch, 2), -self.padding, self.padding + 1, seed=self.seed_generator
        )
        flips = keras.random.uniform((batch,), seed=self.seed_generator) < 0.5
        return shift_and_flip(images, shifts, flips)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "padding": self.padding, "seed": self.seed}


def to_float(name: str) -> keras.layers.Layer:
    """A layer that casts images (e.g. uint8) to float32.

    Args:
        name: The layer's name.

    Returns:
        The layer.
    """
    return layers.Lambda(lambda t: ops.cast(t, "float32"), name=name)


def normalize(images: Any, mean: Sequence[float], std: Sequence[float]) -> Any:
    """``(x − mean) / std`` per channel, as float32: the one normalisation of the course.

    Computed as ``x · scale + offset`` with the constants expanded to the full image shape:
    broadcasting a ``(C,)`` vector over the last axis is several times slower in TensorFlow's CPU
    kernels.

    Args:
        images: ``(…, H, W, C)`` images with static H, W and C, any numeric dtype.
        mean: Per-channel mean of the training pixels, in [0, 255].
        std: Per-channel standard deviation, in [0, 255].

    Returns:
        float32 images of the same shape.

    Raises:
        ValueError: If ``mean`` and ``std`` do not have one entry per channel or ``std`` ≤ 0.
    """
    channels = images.shape[-1]
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"need {channels} means and stds, got {len(mean)} and {len(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {list(std)}")
    shape = tuple(images.shape[-3:])
    scale = 1.0 / np.asarray(std, dtype=np.float32)
    offset = -np.asarray(mean, dtype=np.float32) * scale
    if None not in shape:
        scale = np.broadcast_to(scale, shape).copy()
        offset = np.broadcast_to(offset, shape).copy()
    return ops.cast(images, "float32") * scale + offset


@keras.saving.register_keras_serializable(package="dlnotes")
class Normalize(keras.layers.Layer):
    """:func:`normalize` as a layer (constants only, no weights to save).

    Args:
        mean: Per-channel mean of the training pixels, in [0, 255].
        std: Per-channel standard deviation, in [0, 255].
        **kwargs: Passed to ``keras.layers.Layer`` (e.g. ``name``).

    Raises:
        ValueError: If ``std`` has a non-positive entry or ``mean`` and ``std`` differ in length.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(mean) != len(std) or min(std) <= 0:
            raise ValueError(
                f"need one positive std per mean, got means {list(mean)} and stds {list(std)}"
            )
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def call(self, images: Any) -> Any:
        return normalize(images, self.mean, self.std)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mean": self.mean, "std": self.std}


def normalization(mean: Sequence[float], std: Sequence[float], channels: int) -> keras.layers.Layer:
    """The normalisation layer of a model for ``channels``-channel images (see :func:`normalize`).

    Args:
        mean: Per-channel mean of the training pixels, in [0, 255].
        std: Per-channel standard deviation, in [0, 255].
        channels: Number of channels the images have.

    Returns:
        A :class:`Normalize` layer named ``"normalize"``.

    Raises:
        ValueError: If ``mean`` and ``std`` do not have one entry per channel or ``std`` ≤ 0.
    """
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"need {channels} means and stds, got {len(mean)} and {len(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {list(std)}")
    return Normalize(mean, std, name="normalize")
