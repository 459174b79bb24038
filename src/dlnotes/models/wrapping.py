"""The models built around a backbone: raw uint8 images in, logits out.

:func:`with_preprocessing` wraps a backbone for uint8 images (augmentation and normalisation
inside the model). :func:`build_training_models` builds the three models the trainer uses, around
one backbone and one normalisation layer, with the images held in accelerator memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes.data import augmentation, device_data, mixing
from dlnotes.runtime import import_quietly

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")  # quietly: the first import of TensorFlow logs to stderr
layers, ops = keras.layers, keras.ops


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
    normalize = augmentation.normalization(mean, std, backbone.input_shape[-1])
    inputs = keras.Input(shape=backbone.input_shape[1:], dtype="uint8", name="uint8_images")
    x = augmentation.to_float("to_float")(inputs)
    if augment:
        x = augmentation.RandomShiftFlip(padding=padding, seed=seed, name="augment")(x)
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
            :class:`dlnotes.data.device_data.ImageLookup` layer.
        mean: Per-channel mean of the training pixels, in [0, 255].
        std: Per-channel standard deviation, in [0, 255].
        padding: Largest random shift of :class:`RandomShiftFlip`.
        seed: Seed of the augmentation (the partner images use ``seed + 1``).
        mix: Add the MixUp/CutMix inputs and the :class:`dlnotes.data.mixing.MixImages` layer.

    Returns:
        The three models.

    Raises:
        ValueError: For images that do not match the backbone's input, or bad ``mean``/``std``.
    """
    accepted = tuple(backbone.input_shape[1:])
    fits = np.ndim(images) == 4 and len(accepted) == 3
    if fits:
        image_shape = tuple(int(size) for size in np.shape(images)[1:])
        fits = all(want in (None, have) for want, have in zip(accepted, image_shape, strict=True))
    if not fits:
        raise ValueError(
            f"the backbone takes images of shape (N, {', '.join(map(str, accepted))}), "
            f"got images of shape {np.shape(images)}"
        )
    shared = _SharedLayers(
        normalize=augmentation.normalization(mean, std, image_shape[-1]),
        lookup=device_data.ImageLookup(images, name="image_lookup"),
        to_float=augmentation.to_float("to_float"),
    )
    return TrainingModels(
        train=_train_model(backbone, shared, padding=padding, seed=seed, mix=mix),
        flip_averaged=_flip_averaged_model(backbone, shared),
        inference=_inference_model(backbone, shared, image_shape),
    )


@dataclass(frozen=True)
class _SharedLayers:
    """The layers the three models share: normalisation, image lookup, uint8 → float cast."""

    normalize: Any
    lookup: Any
    to_float: Any


def _train_model(
    backbone: keras.Model, shared: _SharedLayers, *, padding: int, seed: int | None, mix: bool
) -> keras.Model:
    """Indices (and, with ``mix``, the mixing inputs) → augmented, mixed, normalised → logits."""

    def augmented(indices: Any, name: str, layer_seed: int | None) -> Any:
        x = shared.to_float(shared.lookup(indices))
        return augmentation.RandomShiftFlip(padding=padding, seed=layer_seed, name=name)(x)

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
    return keras.Model(inputs, backbone(shared.normalize(x)), name="train_model")


def _flip_averaged_model(backbone: keras.Model, shared: _SharedLayers) -> keras.Model:
    """Indices → the mean of the logits of each image and of its mirror image."""
    eval_index = keras.Input(shape=(), dtype="int32", name="index")
    plain = shared.normalize(shared.to_float(shared.lookup(eval_index)))
    mirrored = layers.Lambda(lambda t: ops.flip(t, axis=2), name="mirror")(plain)
    averaged = layers.Average(name="flip_average", dtype="float32")(
        [backbone(plain), backbone(mirrored)]
    )
    return keras.Model({"index": eval_index}, averaged, name="flip_averaged_model")


def _inference_model(
    backbone: keras.Model, shared: _SharedLayers, image_shape: tuple[int, ...]
) -> keras.Model:
    """uint8 images → logits, for use after training."""
    uint8_images = keras.Input(shape=image_shape, dtype="uint8", name="uint8_images")
    logits = backbone(shared.normalize(shared.to_float(uint8_images)))
    return keras.Model(uint8_images, logits, name="inference_model")
