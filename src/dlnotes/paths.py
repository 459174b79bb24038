"""Where the course keeps its data: one answer for chapters, scripts and tests."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "DLNOTES_DATA_DIR"
"""Environment variable that points at a Tiny ImageNet root (the folder holding ``wnids.txt``)."""

DATASET_FOLDER = "tiny-imagenet-200"
"""Name of the top folder inside the official archive."""


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
    ``cache_dir() / "tiny-imagenet-200"``, which is where
    ``data_scripts/download_tiny_imagenet.py`` extracts the archive by default.
    The folder may not exist yet; :func:`dlnotes.data.read_split` reports that clearly.

    Returns:
        The dataset root, the folder that holds ``wnids.txt``.
    """
    configured = os.environ.get(DATA_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return cache_dir() / DATASET_FOLDER
