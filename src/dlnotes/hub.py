"""Pretrained ImageNet classifiers from TF Hub (or a local SavedModel), and their predictions
restricted to a dataset's own classes.

Keras 3 cannot put ``hub.KerasLayer`` in a model ("Only instances of `keras.Layer` can be added to
a Sequential model"): ``KerasLayer`` subclasses the Keras 2 layer class of ``tf_keras``. Setting
``TF_USE_LEGACY_KERAS=1`` would make ``tf.keras`` mean Keras 2 again — for the whole process, so
every Keras 3 model and helper of the course would break. We do not need a Keras layer at all for
inference: :func:`load_classifier` loads the SavedModel with ``hub.load`` (or
``tf.saved_model.load`` for a local folder) and calls it as a function.

The default model is the MobileNetV2 ImageNet classifier of the source notes: 224×224 RGB input in
[0, 1], 1001 logits where index 0 is a "background" class and index ``k + 1`` is ImageNet-1k class
``k``.
"""

from __future__ import annotations

import csv
import importlib.resources
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlnotes import runtime

MOBILENET_V2_HANDLE = "https://tfhub.dev/google/tf2-preview/mobilenet_v2/classification/4"
MOBILENET_V2_INPUT_SIZE = 224
BACKGROUND_OFFSET = 1


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids in class-index order (shipped with the package)."""
    text = (
        importlib.resources.files("dlnotes").joinpath("resources/imagenet1k_wnids.txt").read_text()
    )
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def class_logit_indices(
    class_ids: Sequence[str], *, background_offset: int = BACKGROUND_OFFSET
) -> np.ndarray:
    """Indices of a dataset's classes among the outputs of an ImageNet classifier.

    Args:
        class_ids: The dataset's WordNet ids (e.g. from ``wnids.txt``).
        background_offset: 1 for models with a background logit at index 0 (TF Hub's
            MobileNetV2), 0 for 1000-way models (``keras.applications``).

    Returns:
        int64 array: output index of each class.

    Raises:
        ValueError: Naming the classes that are not ImageNet-1k classes.
    """
    index = {wnid: i for i, wnid in enumerate(imagenet_wnids())}
    missing = [wnid for wnid in class_ids if wnid not in index]
    if missing:
        raise ValueError(f"classes not in ImageNet-1k, the model cannot predict them: {missing}")
    return np.array([index[wnid] + background_offset for wnid in class_ids], dtype=np.int64)


def restrict_predictions(logits: Any, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Predict among the dataset's classes only: softmax over their logits, then argmax.

    The winning ImageNet class is often not a class of the dataset at all ("cardigan" for a
    "military uniform"). Keeping only the dataset's logits and renormalising answers the right
    question: which of *these* classes is it?

    Args:
        logits: ``(N, outputs)`` logits of an ImageNet classifier.
        indices: Output index of each dataset class (:func:`class_logit_indices`).

    Returns:
        ``(labels, confidence)``: dataset label indices ``(N,)`` and the renormalised
        probability of the chosen class ``(N,)``.

    Raises:
        ValueError: If an index is outside the logits.
    """
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 2:
        raise ValueError(f"logits must have shape (N, outputs), got {logits.shape}")
    if indices.size == 0 or indices.min() < 0 or indices.max() >= logits.shape[1]:
        raise ValueError(
            f"class indices must lie in [0, {logits.shape[1]}), got {indices.tolist()}"
        )
    restricted = logits[:, indices]
    restricted = restricted - restricted.max(axis=1, keepdims=True)
    probabilities = np.exp(restricted)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    labels = probabilities.argmax(axis=1)
    return labels, probabilities[np.arange(len(labels)), labels]


@dataclass
class Classifier:
    """A loaded image classifier: ``classifier(images)`` → logits.

    Attributes:
        source: The handle or path it was loaded from.
        input_size: Expected height and width (images are resized to it).
        module: The loaded SavedModel object.
    """

    source: str
    input_size: int
    module: Any

    def __call__(self, images: Any) -> Any:
        """Logits for float32 images in [0, 1] of shape ``(N, input_size, input_size, 3)``."""
        if hasattr(self.module, "serve"):  # exported with keras.Model.export
            return self.module.serve(images)
        if callable(self.module):  # TF Hub modules are callable
            return self.module(images)
        outputs = self.module.signatures["serving_default"](images)
        return next(iter(outputs.values()))


def load_classifier(
    handle_or_path: str, *, input_size: int = MOBILENET_V2_INPUT_SIZE
) -> Classifier:
    """Load an image classifier from a TF Hub handle or a local SavedModel folder.

    Args:
        handle_or_path: A TF Hub URL (downloaded and cached by ``tensorflow_hub``; needs the
            internet the first time) or a folder holding ``saved_model.pb``.
        input_size: The model's input height and width.

    Returns:
        The classifier.

    Raises:
        FileNotFoundError: For a local path that is not a SavedModel.
    """
    tf = runtime.import_quietly("tensorflow")
    path = Path(handle_or_path).expanduser()
    if "://" not in handle_or_path:
        if not (path / "saved_model.pb").is_file():
            raise FileNotFoundError(f"not a SavedModel folder (no saved_model.pb): {path}")
        module = tf.saved_model.load(str(path))
    else:
        hub = runtime.import_quietly("tensorflow_hub")
        module = hub.load(handle_or_path)
    return Classifier(str(handle_or_path), input_size, module)


def predict_split(
    classifier: Classifier,
    paths: Sequence[str],
    indices: np.ndarray,
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Batched inference over image files through tf.data, restricted to the dataset's classes.

    Args:
        classifier: From :func:`load_classifier`.
        paths: Image files.
        indices: Output indices of the dataset's classes.
        batch_size: Images per batch.
        progress: Show a progress bar.

    Returns:
        ``(labels, confidence)`` as in :func:`restrict_predictions`.

    Raises:
        ValueError: For no paths or a bad batch size.
    """
    from tqdm import tqdm

    from dlnotes import pipeline

    tf = runtime.import_quietly("tensorflow")
    if not paths:
        raise ValueError("no images to label")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    size = classifier.input_size

    def load(path: Any) -> Any:
        image = tf.cast(pipeline.load_image(path), tf.float32) / 255.0
        return tf.image.resize(image, (size, size))

    dataset = (
        tf.data.Dataset.from_tensor_slices(list(map(str, paths)))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    labels, confidence = [], []
    batches = -(-len(paths) // batch_size)
    for images in tqdm(
        dataset, total=batches, desc="labelling", unit="batch", disable=not progress
    ):
        batch_labels, batch_confidence = restrict_predictions(classifier(images).numpy(), indices)
        labels.append(batch_labels)
        confidence.append(batch_confidence)
    return np.concatenate(labels), np.concatenate(confidence)


def write_manifest(
    out: str | os.PathLike[str],
    paths: Sequence[str],
    labels: np.ndarray,
    confidence: np.ndarray,
    class_ids: Sequence[str],
    *,
    threshold: float = 0.0,
) -> int:
    """Write ``path,wnid,confidence`` rows for predictions at or above ``threshold``, atomically.

    Args:
        out: CSV file to write (its folder is created).
        paths: Image files.
        labels: Predicted dataset label per image.
        confidence: Confidence per image.
        class_ids: The dataset's class ids.
        threshold: Minimum confidence in [0, 1] to keep a row.

    Returns:
        Number of rows written.

    Raises:
        ValueError: For a threshold outside [0, 1] or mismatched lengths.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold must be in [0, 1], got {threshold!r}")
    if not len(paths) == len(labels) == len(confidence):
        raise ValueError(
            f"got {len(paths)} paths, {len(labels)} labels, {len(confidence)} confidences"
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    kept = 0
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "wnid", "confidence"])
        for path, label, value in zip(paths, labels, confidence, strict=True):
            if value >= threshold:
                writer.writerow([path, class_ids[int(label)], f"{value:.6f}"])
                kept += 1
    os.replace(partial, out)
    return kept


def threshold_curve(
    correct: np.ndarray, confidence: np.ndarray, thresholds: Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of the kept predictions and coverage (fraction kept) for each threshold.

    Args:
        correct: Boolean per image: was the prediction right.
        confidence: Confidence per image.
        thresholds: Thresholds to evaluate.

    Returns:
        ``(accuracy, coverage)`` arrays; accuracy is NaN where nothing is kept.
    """
    correct = np.asarray(correct, dtype=bool)
    confidence = np.asarray(confidence, dtype=np.float64)
    accuracy, coverage = [], []
    for threshold in thresholds:
        kept = confidence >= threshold
        coverage.append(kept.mean())
        accuracy.append(correct[kept].mean() if kept.any() else np.nan)
    return np.array(accuracy), np.array(coverage)


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
        path: Folder to export to (must not exist).
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
    outputs = len(imagenet_wnids()) + BACKGROUND_OFFSET
    targets = class_logit_indices(class_ids)[np.asarray(labels)]
    keras.utils.set_random_seed(seed)
    layers = keras.layers
    model = keras.Sequential(
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
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    inputs = tf.image.resize(tf.cast(images, tf.float32) / 255.0, (input_size, input_size))
    model.fit(inputs, targets, batch_size=64, epochs=epochs, verbose=0)
    model.export(str(path), format="tf_saved_model", verbose=False)
    return path
