"""Pretrained ImageNet classifiers from TF Hub (or a local SavedModel), and their predictions
restricted to a dataset's own classes.

Keras 3 cannot put ``hub.KerasLayer`` in a model ("Only instances of `keras.Layer` can be added to
a Sequential model"): ``KerasLayer`` subclasses the Keras 2 layer class of ``tf_keras``. Setting
``TF_USE_LEGACY_KERAS=1`` would make ``tf.keras`` mean Keras 2 again — for the whole process, so
every Keras 3 model and helper of the course would break. We do not need a Keras layer at all for
inference: :func:`load_classifier` loads the SavedModel with ``hub.load`` (or
``tf.saved_model.load`` for a local folder) and calls it as a function.

The default model is the MobileNetV2 ImageNet classifier of the source notes, at its current
version: 224×224 RGB input in [0, 1], 1001 logits where index 0 is a "background" class and index
``k + 1`` is ImageNet-1k class ``k``. TF Hub's models now live on Kaggle Models; ``tfhub.dev``
handles redirect there. Offline, :func:`load_pretrained_classifier` exports the same network from
Keras weights in ``$DLNOTES_PRETRAINED_DIR`` with the same calling convention, and loads it through
the same loader.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlnotes import data, runtime
from dlnotes.data import download, imagenet_classes
from dlnotes.data.imagenet_classes import (
    BACKGROUND_OFFSET,
    class_logit_indices,
    imagenet_wnids,
    restrict_predictions,
)
from dlnotes.runtime import paths, storage

SOURCE_NOTES_HANDLE = "https://tfhub.dev/google/tf2-preview/mobilenet_v2/classification/2"
"""The classifier the source notes used (version 2)."""

MOBILENET_V2_HANDLE = (
    "https://www.kaggle.com/models/google/mobilenet-v2/TensorFlow2/tf2-preview-classification/4"
)
"""The same classifier at its current version (4), where ``tfhub.dev`` now redirects."""

MOBILENET_V2_INPUT_SIZE = 224


@dataclass
class Classifier:
    """A loaded image classifier: ``classifier(images)`` → logits.

    Attributes:
        source: The handle or path it was loaded from.
        input_size: Expected height and width (images are resized to it).
        module: The loaded SavedModel object.
        description: What the model is, for printing.
    """

    source: str
    input_size: int
    module: Any
    description: str = ""

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
        ValueError: If the model's signature fixes another input size (naming both).
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
    expected = signature_input_size(module)
    if expected is not None and expected != input_size:
        raise ValueError(
            f"the model {handle_or_path} takes images of {expected}×{expected} pixels, not "
            f"{input_size}×{input_size}: pass --input-size {expected}"
        )
    return Classifier(str(handle_or_path), input_size, module, str(handle_or_path))


def signature_input_size(module: Any) -> int | None:
    """The square input size fixed by a loaded SavedModel's signature, if it fixes one.

    Args:
        module: From ``tf.saved_model.load`` or ``hub.load``.

    Returns:
        The height (= width) of the images the model takes, or None where its signature leaves
        the size open or cannot be read.
    """
    specs: list[Any] = []
    serve = getattr(module, "serve", None)
    if serve is not None and getattr(serve, "input_signature", None):
        specs = list(serve.input_signature)
    else:
        signatures = getattr(module, "signatures", None)
        if signatures is not None and "serving_default" in signatures:
            args, kwargs = signatures["serving_default"].structured_input_signature
            specs = [*args, *kwargs.values()]
    if len(specs) != 1:
        return None
    shape = getattr(specs[0], "shape", None)
    if shape is None or shape.rank != 4:
        return None
    height, width = shape[1], shape[2]
    return int(height) if height is not None and height == width else None


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
    keras = runtime.import_quietly("keras")
    runtime.import_quietly("tensorflow")
    weights, path = Path(weights), Path(path)
    if not weights.is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    if path.exists():
        raise FileExistsError(f"export folder exists already: {path}")
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
    model = keras.Model(images, logits, name="mobilenet_v2_hub_convention")
    path.parent.mkdir(parents=True, exist_ok=True)
    storage.remove_abandoned(path.parent, f".{path.name}.partial-*")  # left by killed exports
    with storage.staging_folder(path.parent, f".{path.name}.partial-") as staging:
        model.export(str(staging / "model"), format="tf_saved_model", verbose=False)
        os.replace(staging / "model", path)
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
    # Exported beside the target and renamed into place: a killed export leaves no half-written
    # model, and processes exporting at the same time (parallel tests) do not mix their files.
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        export_hub_convention_classifier(weights, staging / "model")
        if path.is_dir() and not (path / "saved_model.pb").is_file():
            shutil.rmtree(path, ignore_errors=True)  # left by an export of an older version
        try:
            os.replace(staging / "model", path)
        except OSError:
            if not (path / "saved_model.pb").is_file():  # not another process's finished export
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


def load_pretrained_classifier(handle: str = MOBILENET_V2_HANDLE) -> Classifier:
    """Load the pretrained MobileNetV2 ImageNet classifier, offline or from TF Hub.

    With ``$DLNOTES_PRETRAINED_DIR`` set, the SavedModel of
    :func:`cached_hub_convention_classifier` made from its full-classifier weights; otherwise the
    model at ``handle`` (downloaded once by ``tensorflow_hub``). Both are loaded by
    :func:`load_classifier` and called the same way.

    Args:
        handle: TF Hub / Kaggle handle of the classifier.

    Returns:
        The classifier.

    Raises:
        dlnotes.runtime.paths.PretrainedUnavailable: If neither source is available (no
            ``$DLNOTES_PRETRAINED_DIR`` and the download failed).
        FileNotFoundError: If ``$DLNOTES_PRETRAINED_DIR`` lacks the weights file.
    """
    weights = paths.pretrained_file(paths.MOBILENET_V2_WEIGHTS)
    if weights is not None:
        classifier = load_classifier(str(cached_hub_convention_classifier(weights)))
        classifier.description = (
            f"MobileNetV2 1.0/224 ImageNet classifier from {weights} (exported with TF Hub's "
            "calling convention)"
        )
        return classifier
    tf = runtime.import_quietly("tensorflow")
    try:
        return load_classifier(handle)
    except (OSError, ValueError, RuntimeError, tf.errors.OpError) as error:
        download.close_http_errors(error)
        raise paths.PretrainedUnavailable(
            f"the pretrained classifier could not be downloaded from {handle} ({error}), and "
            f"{paths.PRETRAINED_DIR_ENV} is not set"
        ) from error


def toy_classifier(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str],
    subset: Any = None,
    *,
    reason: str,
    epochs: int = 15,
) -> Classifier:
    """Train the weak stand-in of :func:`export_standin_classifier` and show a stand-in warning.

    Used only where no pretrained classifier can be had (:func:`load_pretrained_classifier`
    failed).

    Args:
        path: Folder to export the stand-in to (must not exist).
        root: Dataset root; the stand-in is trained on its training split.
        subset: A :class:`dlnotes.data.Subset` of the training split, or None for all of it.
        reason: Why no pretrained classifier is available (shown in the warning).
        epochs: Training epochs.

    Returns:
        The loaded stand-in classifier.

    Raises:
        FileExistsError: If ``path`` exists.
    """
    from dlnotes import data

    train = data.read_split(root, "train", subset=subset)
    assert train.labels is not None  # the training split is always labelled
    folder = export_standin_classifier(
        path, data.load_images(train.paths), train.labels, train.class_ids, epochs=epochs
    )
    runtime.show_stand_in(
        "a small classifier trained here instead of the pretrained MobileNetV2",
        f"{reason}. It was trained on this dataset's own training images, so it is not a "
        "pretrained model.",
        f"Run where TF Hub can be reached, or set `{paths.PRETRAINED_DIR_ENV}` to a folder holding "
        f"`{paths.MOBILENET_V2_WEIGHTS}`, then run this notebook again.",
    )
    classifier = load_classifier(str(folder))
    classifier.description = "a toy classifier trained here (stand-in, not pretrained)"
    return classifier


def predict_logits(
    classifier: Classifier,
    paths: Sequence[str],
    *,
    batch_size: int = 64,
    progress: bool = False,
) -> np.ndarray:
    """Batched inference over image files through tf.data: every output of the classifier.

    Each image is decoded with three channels, scaled to [0, 1] and resized to the classifier's
    input size (bilinear).

    Args:
        classifier: From :func:`load_classifier`.
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

    from dlnotes import data
    from dlnotes.data import pipeline

    tf = runtime.import_quietly("tensorflow")
    if not paths:
        raise ValueError("no images to label")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    # Cheap (headers only): tf.data would name no file for a TIFF named .JPEG, and would try to
    # allocate what a decompression bomb declares.
    data.verify_images(paths, decode=False)
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
    batches = -(-len(paths) // batch_size)

    def call(images: Any) -> np.ndarray:
        try:
            return np.asarray(classifier(images), dtype=np.float32)
        except (TypeError, ValueError) as error:  # what a SavedModel says for another shape
            raise ValueError(
                f"the classifier {classifier.source} does not take images of {size}×{size} "
                f"pixels ({type(error).__name__}): pass its input size with --input-size"
            ) from None

    try:
        logits = [
            call(images)
            for images in tqdm(
                dataset, total=batches, desc="labelling", unit="batch", disable=not progress
            )
        ]
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
    :func:`restrict_predictions`.

    Args:
        classifier: From :func:`load_classifier`.
        paths: Image files.
        indices: Output indices of the dataset's classes.
        batch_size: Images per batch.
        progress: Show a progress bar.

    Returns:
        ``(labels, confidence)`` as in :func:`restrict_predictions`.

    Raises:
        ValueError: For no paths or a bad batch size, or naming the images that cannot be
            decoded.
    """
    logits = predict_logits(classifier, paths, batch_size=batch_size, progress=progress)
    return restrict_predictions(logits, indices)


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


_CLI_DOC = """Label a split of Tiny ImageNet with a pretrained ImageNet classifier, moving no file.

Usage:
    python data_scripts/pseudo_label.py --data-dir ROOT --split test [--model HANDLE_OR_PATH]
        --out labels.csv [--threshold T] [--batch-size B]

HANDLE_OR_PATH is a TF Hub handle or a local SavedModel folder; by default the MobileNetV2 ImageNet
classifier of the source notes (offline: exported from the weights in $DLNOTES_PRETRAINED_DIR, see
dlnotes.models.hub.load_pretrained_classifier). Predictions are restricted to the dataset's own
classes; rows below the confidence threshold are left out. The CSV (path,wnid,confidence) can be
passed to dlnotes.data.read_split(..., labels_csv=...) to use the labels.
"""


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``dlnotes-pseudo-label``; returns the exit status.

    Errors are printed on one line (exit status 1), never as a traceback; unreadable images are
    named.
    """
    parser = argparse.ArgumentParser(
        prog="dlnotes-pseudo-label", description=_CLI_DOC.splitlines()[0]
    )
    parser.add_argument("--data-dir", type=Path, default=None, help="dataset root")
    parser.add_argument("--split", choices=data.SPLITS, default="test")
    parser.add_argument(
        "--model",
        default=None,
        help=f"TF Hub handle or SavedModel folder (default: {MOBILENET_V2_HANDLE}, or the "
        f"weights in ${paths.PRETRAINED_DIR_ENV})",
    )
    parser.add_argument("--out", type=Path, required=True, help="CSV manifest to write")
    parser.add_argument(
        "--threshold", type=float, default=0.0, help="minimum confidence to keep a row"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=MOBILENET_V2_INPUT_SIZE)
    args = parser.parse_args(argv)
    root = args.data_dir if args.data_dir is not None else paths.data_dir()
    try:
        if not 0 <= args.threshold <= 1:
            raise ValueError(f"--threshold must be in [0, 1], got {args.threshold}")
        if args.batch_size < 1 or args.input_size < 1:
            raise ValueError(
                f"--batch-size and --input-size must be positive, got {args.batch_size} and "
                f"{args.input_size}"
            )
        split = data.read_split(root, args.split)
        indices = imagenet_classes.class_logit_indices(split.class_ids)
        classifier = (
            load_pretrained_classifier()
            if args.model is None
            else load_classifier(args.model, input_size=args.input_size)
        )
        labels, confidence = predict_split(
            classifier,
            split.paths,
            indices,
            batch_size=args.batch_size,
            progress=sys.stderr.isatty(),
        )
        kept = write_manifest(
            args.out, split.paths, labels, confidence, split.class_ids, threshold=args.threshold
        )
    except (OSError, ValueError, paths.PretrainedUnavailable) as error:  # bad images are named
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(
        f"labelled {len(split.paths)} {args.split} images; wrote {kept} rows with confidence "
        f"≥ {args.threshold} to {args.out}"
    )
    return 0
