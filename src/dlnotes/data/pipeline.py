"""tf.data input pipelines for Tiny ImageNet.

Training: shuffle → parallel decode (``channels=3``: about 2 % of the JPEGs are grayscale) →
optional cache of the decoded **uint8** images (memory or file) → shuffle → batch → random crop
and flip per image (after the cache, so every epoch sees new
augmentations; done on whole batches, which is much faster) → per-channel normalisation →
prefetch. Evaluation: the same without shuffling or augmentation, in a fixed order.

Everything here needs TensorFlow (tf.data is part of it); the models themselves are pure Keras.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from dlnotes import runtime
from dlnotes.data import augmentation, decoding

if TYPE_CHECKING:
    import tensorflow as tf
else:
    tf = runtime.import_quietly("tensorflow")

AUTOTUNE = tf.data.AUTOTUNE
IMAGE_SIZE = 64
CHANNELS = 3


@dataclass(frozen=True)
class ChannelStats:
    """Per-channel mean and standard deviation of pixel values in [0, 255]."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


def decode_image(encoded: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """Decode JPEG or PNG bytes into a uint8 tensor of shape ``(image_size, image_size, 3)``.

    Grayscale files are expanded to three channels. Images of another size are resized (Tiny
    ImageNet's are all 64×64, so this is a no-op there).

    Args:
        encoded: Scalar string tensor with the file contents.
        image_size: Height and width of the result.

    Returns:
        The uint8 image.
    """
    image = tf.io.decode_image(encoded, channels=CHANNELS, expand_animations=False)
    if image_size != IMAGE_SIZE:
        image = tf.cast(tf.image.resize(image, (image_size, image_size)), tf.uint8)
    else:
        shape = tf.shape(image)
        image = tf.cond(
            tf.reduce_all(shape[:2] == image_size),
            lambda: image,
            lambda: tf.cast(tf.image.resize(image, (image_size, image_size)), tf.uint8),
        )
    return tf.ensure_shape(image, (image_size, image_size, CHANNELS))


def load_image(path: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """Read and decode one image file (see :func:`decode_image`)."""
    return decode_image(tf.io.read_file(path), image_size)


def channel_stats(
    paths: Sequence[str], *, max_images: int | None = 5000, seed: int = 0
) -> ChannelStats:
    """Compute per-channel mean and standard deviation over (a sample of) training images.

    Args:
        paths: Image files.
        max_images: Use a random sample of at most this many images (None: all of them).
        seed: Seed of the sample.

    Returns:
        The statistics, in pixel units [0, 255].

    Raises:
        ValueError: If ``paths`` is empty.
    """
    if len(paths) == 0:
        raise ValueError("channel_stats needs at least one image path, got none")
    chosen = list(paths)
    if max_images is not None and len(chosen) > max_images:
        rng = np.random.default_rng(seed)
        chosen = [chosen[i] for i in rng.choice(len(chosen), size=max_images, replace=False)]
    dataset = (
        tf.data.Dataset.from_tensor_slices(chosen)
        .map(load_image, num_parallel_calls=AUTOTUNE)
        .batch(256)
    )
    # TensorFlow's decoder (this pipeline's pixels), the trainer's statistics code.
    mean, std = decoding.pixel_stats(batch.numpy() for batch in dataset)
    return ChannelStats(_rgb(mean), _rgb(std))


def _rgb(values: NDArray[np.float64]) -> tuple[float, float, float]:
    red, green, blue = (float(value) for value in values)
    return red, green, blue


def random_crop_flip(images: tf.Tensor, padding: int = 4) -> tf.Tensor:
    """Augment a batch of images: random ``padding``-pixel translation with reflection at the
    borders (a reflect-padded random crop) and a random horizontal flip, per image.

    The shifts and flips are drawn with ``tf.random``; the augmentation itself is
    :func:`dlnotes.data.augmentation.shift_and_flip`, the same function the trainer's
    :class:`~dlnotes.data.augmentation.RandomShiftFlip` layer applies on the accelerator.

    Args:
        images: Batch ``(B, H, W, C)`` of any dtype (uint8 in the pipeline).
        padding: Largest shift in pixels (0: flip only). Must be smaller than H and W.

    Returns:
        The augmented batch, same shape and dtype.

    Raises:
        ValueError: If the input is not a 4-D batch with static H, W, C or ``padding`` is too large.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.rank != 4 or None in images.shape[1:]:
        raise ValueError(
            f"images must be a batch (B, H, W, C) with static H, W, C, got {images.shape}"
        )
    height, width = images.shape[1], images.shape[2]
    if not 0 <= padding < min(height, width):
        raise ValueError(f"padding must be in [0, {min(height, width)}), got {padding}")
    batch = tf.shape(images)[0]
    shifts = tf.random.uniform([batch, 2], -padding, padding + 1, tf.int32)
    flips = tf.random.uniform([batch]) < 0.5
    return augmentation.shift_and_flip(images, shifts, flips)


def normalize(images: tf.Tensor, stats: ChannelStats) -> tf.Tensor:
    """Convert uint8 images ``(..., H, W, C)`` to float32, zero mean and unit variance per channel
    (:func:`dlnotes.data.augmentation.normalize`, the trainer's normalisation)."""
    return augmentation.normalize(tf.convert_to_tensor(images), stats.mean, stats.std)


def _check_inputs(
    paths: Sequence[str], labels: Sequence[int] | np.ndarray | None, batch_size: int
) -> None:
    if len(paths) == 0:
        raise ValueError("the pipeline needs at least one image path, got none")
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f"got {len(labels)} labels for {len(paths)} paths")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")


def train_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | np.ndarray,
    stats: ChannelStats,
    *,
    batch_size: int = 128,
    cache: bool | str | os.PathLike[str] = False,
    shuffle_buffer: int = 10_000,
    augment: bool = True,
    drop_remainder: bool = True,
    seed: int | None = None,
) -> tf.data.Dataset:
    """The training pipeline: batches of ``(float32 images, int32 labels)``, reshuffled every epoch.

    Args:
        paths: Image files.
        labels: Class indices, one per path.
        stats: Normalisation statistics (see :func:`channel_stats`).
        batch_size: Images per batch.
        cache: False for no cache, True to keep decoded uint8 images in memory (≈12 KiB per
            image: 1.2 GB for the 100,000 training images), or a file path prefix to cache on disk.
        shuffle_buffer: Shuffle buffer applied after the cache (without cache the file list is
            shuffled in full before decoding, which costs nothing).
        augment: Apply :func:`random_crop_flip`.
        drop_remainder: Drop the last partial batch (static batch shapes for XLA).
        seed: Seed of shuffling and augmentation; None for a fresh one.

    Returns:
        The dataset (one epoch; Keras iterates it once per epoch).

    Raises:
        ValueError: For empty inputs, mismatched labels or a bad batch size.
    """
    _check_inputs(paths, labels, batch_size)
    labels = np.asarray(labels, dtype=np.int32)
    dataset = tf.data.Dataset.from_tensor_slices((list(map(str, paths)), labels))
    if cache is False:
        dataset = dataset.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(
        lambda path, label: (load_image(path), label),
        num_parallel_calls=AUTOTUNE,
        deterministic=False,
    )
    if cache is not False:
        dataset = dataset.cache("" if cache is True else os.fspath(cache))
    return prepare_training(
        dataset,
        stats,
        batch_size=batch_size,
        shuffle_buffer=min(shuffle_buffer, len(paths)) if cache is not False else 0,
        augment=augment,
        drop_remainder=drop_remainder,
        seed=seed,
    )


def prepare_training(
    dataset: tf.data.Dataset,
    stats: ChannelStats,
    *,
    batch_size: int = 128,
    shuffle_buffer: int = 10_000,
    augment: bool = True,
    drop_remainder: bool = True,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Shuffle, augment, batch, normalise and prefetch a dataset of ``(uint8 image, label)``.

    The shared tail of :func:`train_dataset` and of training from TFRecord shards
    (:func:`dlnotes.data.tfrecord.image_label_dataset`).

    Args:
        dataset: Unbatched ``(image, label)`` pairs with uint8 images.
        stats: Normalisation statistics.
        batch_size: Images per batch (at least 1).
        shuffle_buffer: Size of the shuffle buffer; 0 for none.
        augment: Apply :func:`random_crop_flip`.
        drop_remainder: Drop the last partial batch.
        seed: Seed of shuffling.

    Returns:
        Batches of ``(float32 images, labels)``.

    Raises:
        ValueError: For a bad batch size or a negative buffer.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if shuffle_buffer < 0:
        raise ValueError(f"shuffle_buffer must be non-negative, got {shuffle_buffer}")
    if shuffle_buffer:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)

    def finish(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if augment:
            images = random_crop_flip(images)
        return normalize(images, stats), labels

    dataset = dataset.map(finish, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def eval_dataset(
    paths: Sequence[str],
    labels: Sequence[int] | np.ndarray | None,
    stats: ChannelStats,
    *,
    batch_size: int = 256,
) -> tf.data.Dataset:
    """The evaluation pipeline: deterministic order, no augmentation, no dropped images.

    Args:
        paths: Image files.
        labels: Class indices, or None to yield images only (e.g. the test split).
        stats: Normalisation statistics of the training set.
        batch_size: Images per batch.

    Returns:
        Batches of ``(images, labels)``, or of images when ``labels`` is None.

    Raises:
        ValueError: For empty inputs, mismatched labels or a bad batch size.
    """
    _check_inputs(paths, labels, batch_size)
    files = tf.data.Dataset.from_tensor_slices(list(map(str, paths)))
    images = files.map(load_image, num_parallel_calls=AUTOTUNE, deterministic=True)
    if labels is None:
        dataset = images
        return dataset.batch(batch_size).map(lambda x: normalize(x, stats)).prefetch(AUTOTUNE)
    label_ds = tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.int32))
    dataset = tf.data.Dataset.zip((images, label_ds)).batch(batch_size)
    return dataset.map(lambda x, y: (normalize(x, stats), y)).prefetch(AUTOTUNE)


def denormalize(images: np.ndarray, stats: ChannelStats) -> np.ndarray:
    """Undo :func:`normalize` for display: float images back to uint8 in [0, 255]."""
    scale, shift = np.asarray(stats.std), np.asarray(stats.mean)
    restored: NDArray[np.float64] = np.asarray(images) * scale + shift
    return np.clip(restored, 0, 255).astype(np.uint8)
