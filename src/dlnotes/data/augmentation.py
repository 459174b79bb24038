"""Augmentation and normalisation as Keras layers: one definition for every input path.

The trainer applies them on the accelerator inside the compiled step; the ``tf.data`` pipeline of
:mod:`dlnotes.data.pipeline` maps the same layers over its batches. Built from ``keras.ops`` with
static shapes, they compile with XLA on every backend.
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


@keras.saving.register_keras_serializable(package="dlnotes")
class RandomShiftFlip(keras.layers.Layer):
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


def to_float(name: str) -> keras.layers.Layer:
    """A layer that casts images (e.g. uint8) to float32.

    Args:
        name: The layer's name.

    Returns:
        The layer.
    """
    return layers.Lambda(lambda t: ops.cast(t, "float32"), name=name)


def normalization(mean: Sequence[float], std: Sequence[float], channels: int) -> keras.layers.Layer:
    """Per-channel normalisation ``(x − mean) / std`` as a Keras ``Normalization`` layer.

    Args:
        mean: Per-channel mean of the training pixels, in [0, 255].
        std: Per-channel standard deviation, in [0, 255].
        channels: Number of channels the images have.

    Returns:
        The layer, named ``"normalize"``.

    Raises:
        ValueError: If ``mean`` and ``std`` do not have one entry per channel or ``std`` ≤ 0.
    """
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"need {channels} means and stds, got {len(mean)} and {len(std)}")
    if min(std) <= 0:
        raise ValueError(f"std must be positive, got {list(std)}")
    return layers.Normalization(
        mean=[float(m) for m in mean], variance=[float(s) ** 2 for s in std], name="normalize"
    )
