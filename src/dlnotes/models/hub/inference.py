"""Batched inference of a :class:`~dlnotes.models.hub.loading.Classifier` over image files.

The images are read and resized by a tf.data pipeline (:func:`image_batches`); a file that cannot
be decoded is named, whatever went wrong with it (empty, truncated, not an image, of another
format than its name says, a decompression bomb).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from dlnotes import data, runtime
from dlnotes.data.imagenet_classes import restrict_predictions
from dlnotes.models.hub.loading import Classifier


def image_batches(paths: Sequence[str], size: int, batch_size: int) -> Any:
    """A tf.data dataset of the images in batches, as a TF Hub classifier takes them.

    Each image is decoded with three channels, scaled to [0, 1] and resized to ``size × size``
    (bilinear).

    Args:
        paths: Image files.
        size: The classifier's input height and width.
        batch_size: Images per batch.

    Returns:
        A ``tf.data.Dataset`` of float32 batches ``(B, size, size, 3)``, in the order of
        ``paths``.
    """
    from dlnotes.data import pipeline  # imports TensorFlow

    tf = runtime.import_quietly("tensorflow")

    def load(path: Any) -> Any:
        image = tf.cast(pipeline.load_image(path), tf.float32) / 255.0
        return tf.image.resize(image, (size, size))

    return (
        tf.data.Dataset.from_tensor_slices(list(map(str, paths)))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )


def _logits(classifier: Classifier, images: Any) -> np.ndarray:
    """The classifier's outputs for one batch, or a ValueError advising ``--input-size``."""
    size = classifier.input_size
    try:
        return np.asarray(classifier(images), dtype=np.float32)
    except (TypeError, ValueError) as error:  # what a SavedModel says for another shape
        raise ValueError(
            f"the classifier {classifier.source} does not take images of {size}×{size} "
            f"pixels ({type(error).__name__}): pass its input size with --input-size"
        ) from None


def predict_logits(
    classifier: Classifier,
    paths: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Batched inference over image files through tf.data: every output of the classifier.

    Each image is decoded with three channels, scaled to [0, 1] and resized to the classifier's
    input size (bilinear, :func:`image_batches`).

    Args:
        classifier: From :func:`~dlnotes.models.hub.loading.load_classifier`.
        paths: Image files.
        batch_size: Images per batch.
        progress: Show a progress bar.

    Returns:
        float32 logits ``(len(paths), outputs)``.

    Raises:
        ValueError: For no paths or a bad batch size, a classifier that does not take images of
            its ``input_size``, or naming every image file that cannot be decoded (empty,
            truncated, not an image, of another format than its name says, a decompression
            bomb).
    """
    from tqdm import tqdm

    tf = runtime.import_quietly("tensorflow")
    if not paths:
        raise ValueError("no images to label")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    # Cheap (headers only): tf.data would name no file for a TIFF named .JPEG, and would try to
    # allocate what a decompression bomb declares.
    data.verify_images(paths, decode=False)
    batches = tqdm(
        image_batches(paths, classifier.input_size, batch_size),
        total=-(-len(paths) // batch_size),
        desc="labelling",
        unit="batch",
        disable=not progress,
    )
    try:
        logits = [_logits(classifier, images) for images in batches]
    except (
        tf.errors.InvalidArgumentError,
        tf.errors.NotFoundError,
        tf.errors.DataLossError,
    ) as error:
        # tf.data names no file when a JPEG cannot be decoded: find and name the culprits.
        data.verify_images(paths)
        raise ValueError(f"could not decode the images: {error.message}") from error
    return np.concatenate(logits)


def predict_split(
    classifier: Classifier,
    paths: Sequence[str],
    indices: np.ndarray,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Predict the dataset's classes for image files: :func:`predict_logits`, then
    :func:`~dlnotes.data.imagenet_classes.restrict_predictions`.

    Args:
        classifier: From :func:`~dlnotes.models.hub.loading.load_classifier`.
        paths: Image files.
        indices: Output indices of the dataset's classes.
        batch_size: Images per batch.
        progress: Show a progress bar.

    Returns:
        ``(labels, confidence)`` as in
        :func:`~dlnotes.data.imagenet_classes.restrict_predictions`.

    Raises:
        ValueError: For no paths or a bad batch size, or naming the images that cannot be
            decoded.
    """
    logits = predict_logits(classifier, paths, batch_size=batch_size, progress=progress)
    return restrict_predictions(logits, indices)
