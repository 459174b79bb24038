"""Where the course keeps its data and pretrained weights: one answer for chapters, scripts and
tests."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "DLNOTES_DATA_DIR"
"""Environment variable that points at a Tiny ImageNet root (the folder holding ``wnids.txt``)."""

DATASET_FOLDER = "tiny-imagenet-200"
"""Name of the top folder inside the official archive."""

DATA_URL_ENV = "DLNOTES_DATA_URL"
"""Environment variable naming a mirror of the Tiny ImageNet zip archive (default: the official
one)."""

DATA_MD5_ENV = "DLNOTES_DATA_MD5"
"""Environment variable with the MD5 checksum of the archive at ``$DLNOTES_DATA_URL``."""

PRETRAINED_DIR_ENV = "DLNOTES_PRETRAINED_DIR"
"""Environment variable naming a folder of pretrained weights for offline use (see
:func:`pretrained_dir`)."""


def cache_dir() -> Path:
    """Return the per-user cache folder of dlnotes.

    ``$XDG_CACHE_HOME/dlnotes`` when ``XDG_CACHE_HOME`` is set, otherwise ``~/.cache/dlnotes``.
    The folder is not created.

    Returns:
        The cache folder.
    """
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base) if base else Path.home() / ".cache") / "dlnotes"


def data_dir() -> Path:
    """Return the Tiny ImageNet root used by chapters and scripts.

    ``$DLNOTES_DATA_DIR`` when set (and non-empty), otherwise
    ``cache_dir() / "tiny-imagenet-200"``, which is where ``dlnotes-download`` (and
    :func:`dlnotes.data.find_root`) extract the archive by default.
    The folder may not exist yet; :func:`dlnotes.data.read_split` reports that clearly.

    Returns:
        The dataset root, the folder that holds ``wnids.txt``.
    """
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return cache_dir() / DATASET_FOLDER


MOBILENET_V2_WEIGHTS = "mobilenet_v2_1.0_224.weights.h5"
"""Keras 3 weights of the full MobileNetV2 1.0/224 ImageNet classifier (1,000 classes)."""

MOBILENET_V2_NO_TOP_WEIGHTS = "mobilenet_v2_1.0_224_no_top.weights.h5"
"""Keras 3 weights of the MobileNetV2 1.0/224 ImageNet feature extractor (no classifier)."""


class PretrainedUnavailable(RuntimeError):
    """Pretrained weights are neither in ``$DLNOTES_PRETRAINED_DIR`` nor downloadable."""


def pretrained_dir() -> Path | None:
    """Return the folder of offline pretrained weights, ``$DLNOTES_PRETRAINED_DIR``, if set.

    The folder holds the two Keras weight files of MobileNetV2 1.0/224 trained on ImageNet,
    ``mobilenet_v2_1.0_224.weights.h5`` (the full classifier) and
    ``mobilenet_v2_1.0_224_no_top.weights.h5`` (the feature extractor). Where it is not set, the
    chapters download the pretrained models from TF Hub and Keras instead.

    Returns:
        The folder, or None when the variable is unset or blank.

    Raises:
        FileNotFoundError: If the variable names a folder that does not exist.
    """
    configured = os.environ.get(PRETRAINED_DIR_ENV, "").strip()
    if not configured:
        return None
    folder = Path(configured).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"{PRETRAINED_DIR_ENV}={configured!r} is not a folder")
    return folder


def pretrained_file(name: str) -> Path | None:
    """Return ``$DLNOTES_PRETRAINED_DIR/name``, or None when the variable is not set.

    Args:
        name: File name, e.g. :data:`MOBILENET_V2_WEIGHTS`.

    Returns:
        The file, or None without ``$DLNOTES_PRETRAINED_DIR``.

    Raises:
        FileNotFoundError: If the folder is set but does not hold the file.
    """
    folder = pretrained_dir()
    if folder is None:
        return None
    path = folder / name
    if not path.is_file():
        raise FileNotFoundError(f"{PRETRAINED_DIR_ENV}={str(folder)!r} holds no {name}")
    return path
