"""SavedModels made here that are called like TF Hub's MobileNetV2 classifier.

* :func:`export_hub_convention_classifier`: Keras' MobileNetV2 ImageNet classifier (weights from
  ``$DLNOTES_PRETRAINED_DIR``) with TF Hub's calling convention, and
  :func:`cached_hub_convention_classifier`, which exports it once into the cache;
* :func:`export_standin_classifier`: a small network trained on the dataset's own images, a weak
  but honest stand-in where no pretrained classifier can be had.

Every export is built by :func:`dlnotes.runtime.storage.staged_folder` beside its final
place and moved there with one rename: a killed export leaves no half-written model, and
processes exporting at the same time (parallel tests) do not mix their files.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dlnotes import runtime
from dlnotes.data.imagenet_classes import (
    BACKGROUND_OFFSET,
    class_logit_indices,
    imagenet_wnids,
)
from dlnotes.models.hub.loading import MOBILENET_V2_INPUT_SIZE
from dlnotes.runtime import paths, storage


def _export(model: Any, path: Path) -> None:
    """Export ``model`` as a SavedModel folder ``path``, which appears only once complete.

    Raises:
        OSError: If the finished export cannot be moved to ``path`` (e.g. another process's
            export arrived there first).
    """
    with storage.staged_folder(path) as built:
        built.rmdir()  # the SavedModel writer creates its own folder
        model.export(str(built), format="tf_saved_model", verbose=False)


def _background_logit_layer() -> Any:
    """A Keras layer that puts a background logit in front of 1,000 ImageNet logits."""
    keras = runtime.import_quietly("keras")

    base: Any = keras.layers.Layer  # Keras is untyped for mypy

    class BackgroundLogit(base):
        """Prepend a "background" logit equal to the row's smallest logit (it never wins)."""

        def call(self, logits: Any) -> Any:
            ops = keras.ops
            return ops.concatenate([ops.min(logits, axis=-1, keepdims=True), logits], axis=-1)

    return BackgroundLogit(name="background_logit")


def _hub_convention_model(weights: Path) -> Any:
    """Keras' MobileNetV2 classifier between a [0, 1] → [−1, 1] rescaling and a background logit."""
    keras = runtime.import_quietly("keras")
    runtime.import_quietly("tensorflow")
    size = MOBILENET_V2_INPUT_SIZE
    network = keras.applications.MobileNetV2(
        input_shape=(size, size, 3),
        include_top=True,
        weights=str(weights),
        classifier_activation=None,
    )
    images = keras.Input((size, size, 3), name="images")  # float32 in [0, 1], as TF Hub's
    scaled = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus_one_one")(images)
    logits = _background_logit_layer()(network(scaled))
    return keras.Model(images, logits, name="mobilenet_v2_hub_convention")


def export_hub_convention_classifier(
    weights: str | os.PathLike[str], path: str | os.PathLike[str]
) -> Path:
    """Export Keras' MobileNetV2 ImageNet classifier as a SavedModel that is called like TF Hub's.

    TF Hub's ``tf2-preview/mobilenet_v2/classification`` takes float32 images of 224×224 in
    [0, 1] and returns 1001 logits, index 0 being a "background" class. Keras'
    ``MobileNetV2(include_top=True)`` takes pixels scaled to [−1, 1] and has 1,000 classes, with a
    softmax. The exported model rescales [0, 1] → [−1, 1], returns the logits (no softmax) and
    puts a background logit in front, equal to the smallest logit of the row, so that it never wins.

    Args:
        weights: The Keras weights file of the full classifier
            (:data:`dlnotes.runtime.paths.MOBILENET_V2_WEIGHTS`).
        path: Folder to export to; must not exist. It appears only once complete.

    Returns:
        The export folder.

    Raises:
        FileNotFoundError: If ``weights`` is missing.
        FileExistsError: If ``path`` exists.
    """
    weights, path = Path(weights), Path(path)
    if not weights.is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    if path.exists():
        raise FileExistsError(f"export folder exists already: {path}")
    _export(_hub_convention_model(weights), path)
    return path


def cached_hub_convention_classifier(weights: str | os.PathLike[str]) -> Path:
    """The SavedModel of :func:`export_hub_convention_classifier`, exported once into the cache.

    The export folder is named after the weights' SHA-256, so other weights get their own.

    Args:
        weights: The Keras weights file of the full classifier.

    Returns:
        The SavedModel folder under ``dlnotes.runtime.paths.cache_dir() / "models"``.

    Raises:
        FileNotFoundError: If ``weights`` is missing.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    path = paths.cache_dir() / "models" / f"mobilenet_v2_1.0_224_hub_convention-{digest}"
    if (path / "saved_model.pb").is_file():
        return path
    if path.is_dir():  # left by an export of an older version: exports only ever rename into place
        shutil.rmtree(path, ignore_errors=True)
    try:
        _export(_hub_convention_model(weights), path)
    except OSError:
        if not (path / "saved_model.pb").is_file():  # not another process's finished export
            raise
    return path


def _standin_network(outputs: int, input_size: int) -> Any:
    """The stand-in's small network: downsize to 64×64, two strided convolutions, logits."""
    keras = runtime.import_quietly("keras")
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input((input_size, input_size, 3)),
            layers.Resizing(64, 64, name="downsize"),
            layers.Conv2D(32, 3, strides=2, activation="relu", name="conv1"),
            layers.Conv2D(64, 3, strides=2, activation="relu", name="conv2"),
            layers.GlobalAveragePooling2D(name="pool"),
            layers.Dense(outputs, name="imagenet_logits"),
        ],
        name="standin_classifier",
    )


def export_standin_classifier(
    path: str | os.PathLike[str],
    images: np.ndarray,
    labels: np.ndarray,
    class_ids: Sequence[str],
    *,
    epochs: int = 8,
    input_size: int = MOBILENET_V2_INPUT_SIZE,
    seed: int = 0,
) -> Path:
    """Train a small Keras model with the interface of TF Hub's MobileNetV2 and export it as a
    SavedModel: a local stand-in where the hub cannot be reached (tests, offline builds).

    Its input is ``(N, input_size, input_size, 3)`` float32 in [0, 1]; its output 1001 logits in the
    ImageNet index order with the background at 0. It is trained on ``images`` (uint8, any size)
    only for the dataset's classes, so it is a weak, honest classifier — not a pretrained one.

    Args:
        path: Folder to export to (must not exist). It appears only once complete.
        images: uint8 training images ``(N, H, W, 3)``.
        labels: Their dataset labels.
        class_ids: The dataset's class ids (ImageNet-1k classes).
        epochs: Training epochs.
        input_size: Input height and width of the exported model.
        seed: Random seed.

    Returns:
        The export folder.

    Raises:
        FileExistsError: If ``path`` exists.
        ValueError: If a class is not an ImageNet-1k class.
    """
    keras = runtime.import_quietly("keras")
    tf = runtime.import_quietly("tensorflow")
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"export folder exists already: {path}")
    targets = class_logit_indices(class_ids)[np.asarray(labels)]
    keras.utils.set_random_seed(seed)
    model = _standin_network(len(imagenet_wnids()) + BACKGROUND_OFFSET, input_size)
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    inputs = tf.image.resize(tf.cast(images, tf.float32) / 255.0, (input_size, input_size))
    model.fit(inputs, targets, batch_size=64, epochs=epochs, verbose=0)
    _export(model, path)
    return path
