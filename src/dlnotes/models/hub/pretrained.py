"""Which classifier a chapter gets: the pretrained MobileNetV2, offline or from TF Hub, or a
stand-in trained here when neither can be had (with a warning saying so).

Offline, :func:`load_pretrained_classifier` exports the network from the Keras weights in
``$DLNOTES_PRETRAINED_DIR`` with TF Hub's calling convention
(:func:`dlnotes.models.hub.export.cached_hub_convention_classifier`) and loads it through the same
loader as a TF Hub handle.
"""

from __future__ import annotations

import os
from typing import Any

from dlnotes import data, runtime
from dlnotes.data import download
from dlnotes.models.hub.export import cached_hub_convention_classifier, export_standin_classifier
from dlnotes.models.hub.loading import MOBILENET_V2_HANDLE, Classifier, load_classifier
from dlnotes.runtime import paths


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
