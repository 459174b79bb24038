"""Decoded images kept on disk, so that a re-run of the trainer does not decode the JPEGs again.

Decoding the 110,000 JPEGs of Tiny ImageNet takes seconds to tens of seconds, every run. The
trainer stores what it decoded — the training and validation images as uint8 arrays (``.npy``)
and the training pixels' mean and standard deviation — in a folder named by a key of the files it
decoded (:attr:`dlnotes.training.datasets.DataFiles.cache_key`: every file's path, size,
modification time and label). A re-run on the same files loads the arrays (about a second for
the full dataset); a changed, added, removed or relabelled file changes the key, and the images
are decoded afresh.

Where: ``$DLNOTES_DECODE_CACHE`` if set (``off`` disables the cache), else
``~/.cache/dlnotes/decoded`` (``$XDG_CACHE_HOME`` honoured). The full dataset takes 1.4 GB there;
only the :data:`KEEP` most recently used entries are kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlnotes.runtime import paths, storage

DECODE_CACHE_ENV = "DLNOTES_DECODE_CACHE"
"""Environment variable: the cache folder, or ``off`` to decode every time."""

KEEP = 3
"""Entries kept: storing a new one removes the least recently used beyond this many."""

_FORMAT = 1
"""Version of the stored layout; part of every key."""


@dataclass(frozen=True)
class DecodedImages:
    """A run's decoded images and the training pixels' statistics.

    Attributes:
        train_images: ``(N, H, W, 3)`` uint8.
        val_images: ``(M, H, W, 3)`` uint8.
        mean: Per-channel mean of the training pixels.
        std: Per-channel standard deviation of the training pixels.
    """

    train_images: np.ndarray
    val_images: np.ndarray
    mean: list[float]
    std: list[float]


def cache_folder() -> Path | None:
    """The folder of decoded images, or None when ``$DLNOTES_DECODE_CACHE`` is ``off``.

    Returns:
        ``$DLNOTES_DECODE_CACHE``, else ``paths.cache_dir() / "decoded"`` (not created here).
    """
    configured = os.environ.get(DECODE_CACHE_ENV, "").strip()
    if configured.lower() in {"off", "0", "false", "no", "none"}:
        return None
    return Path(configured).expanduser() if configured else paths.cache_dir() / "decoded"


def _entry(folder: Path | None, key: str, image_size: int) -> Path | None:
    """The entry's folder in ``folder`` (default: :func:`cache_folder`), None when off."""
    if not key or not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"a cache key is a hexadecimal digest, got {key!r}")
    folder = cache_folder() if folder is None else folder
    return None if folder is None else folder / f"v{_FORMAT}-{image_size}px-{key[:32]}"


def load(
    key: str, counts: tuple[int, int], *, image_size: int = 64, folder: Path | None = None
) -> DecodedImages | None:
    """The images stored under ``key``, or None if there are none (or they do not fit).

    Args:
        key: Hexadecimal digest of the decoded files (``DataFiles.cache_key``).
        counts: Training and validation images the caller expects.
        image_size: Height and width of the images.
        folder: The cache folder (default: :func:`cache_folder`).

    Returns:
        The images, or None: no entry, the cache is off, or an entry that is damaged or holds
        other counts (it is then ignored, and replaced by the next :func:`store`).

    Raises:
        ValueError: For a key that is not a hexadecimal digest.
    """
    entry = _entry(folder, key, image_size)
    if entry is None:
        return None
    try:
        stats = json.loads((entry / "stats.json").read_text())
        train = np.load(entry / "train.npy", allow_pickle=False)
        val = np.load(entry / "val.npy", allow_pickle=False)
    except (OSError, ValueError, KeyError):
        return None
    expected = [(count, image_size, image_size, 3) for count in counts]
    if [train.shape, val.shape] != expected or train.dtype != np.uint8 or val.dtype != np.uint8:
        return None
    with contextlib.suppress(OSError):
        os.utime(entry)  # most recently used
    return DecodedImages(train, val, list(stats["mean"]), list(stats["std"]))


def store(
    key: str, decoded: DecodedImages, *, image_size: int = 64, folder: Path | None = None
) -> Path | None:
    """Keep decoded images under ``key``; a failure to write (a full disk) is not an error.

    The entry is written into a staging folder and renamed into place
    (:func:`dlnotes.runtime.storage.staged_folder`), so a reader never sees half an entry, and a
    process killed while writing leaves only a staging folder that the next store removes. Entries
    beyond the :data:`KEEP` most recently used are deleted.

    Args:
        key: Hexadecimal digest of the decoded files.
        decoded: The images and statistics.
        image_size: Height and width of the images.
        folder: The cache folder (default: :func:`cache_folder`).

    Returns:
        The entry's folder, or None when the cache is off or could not be written.

    Raises:
        ValueError: For a key that is not a hexadecimal digest.
    """
    entry = _entry(folder, key, image_size)
    if entry is None:
        return None
    try:
        # Staging folders of other keys' entries left by killed stores; staged_folder removes
        # those of this entry.
        storage.remove_abandoned(entry.parent, f".v{_FORMAT}-*.partial-*")
        with storage.staged_folder(entry, replace=True) as staging:  # damaged or stale: replaced
            np.save(staging / "train.npy", decoded.train_images, allow_pickle=False)
            np.save(staging / "val.npy", decoded.val_images, allow_pickle=False)
            storage.write_json(staging / "stats.json", {"mean": decoded.mean, "std": decoded.std})
    except OSError:
        return None
    _evict(entry.parent)
    return entry


def _evict(folder: Path) -> None:
    entries = sorted(
        (path for path in folder.glob(f"v{_FORMAT}-*") if path.is_dir()),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for stale in entries[KEEP:]:
        shutil.rmtree(stale, ignore_errors=True)
