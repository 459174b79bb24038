"""Which data a chapter or run reads: the dataset root, and the part of it the profile reads.

:func:`find_root` finds Tiny ImageNet, downloading it once when it is absent (a synthetic stand-in
in the same layout only when the download cannot be made, in the smoke profile).
:func:`profile_subset` gives the subset of the run profile: the ``smoke`` profile reads at most 10
classes and 100 training images per class of whatever dataset is present, so the full dataset
costs no more time or memory than a small one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dlnotes.data.tiny_imagenet import Subset, read_class_ids

SMOKE_CLASSES = 10
"""At most this many classes in the smoke profile."""

SMOKE_TRAIN_PER_CLASS = 100
"""At most this many training images per class in the smoke profile."""

SMOKE_TEST_IMAGES = 100
"""At most this many (unlabelled) test images in the smoke profile."""


def smoke_subset(root: str | os.PathLike[str]) -> Subset:
    """The smoke profile's subset of a dataset: at most 10 classes, 100 training images each.

    The classes are chosen deterministically and spread over the dataset: every
    ``(n / 10)``-th id of the sorted class list (for the 200 classes of the full archive:
    animals, objects, food and scenes alike). A dataset with 10 classes or fewer keeps them all.

    Args:
        root: The dataset root.

    Returns:
        The subset (also capped at 100 test images).

    Raises:
        FileNotFoundError: If ``root`` is not a dataset root.
    """
    class_ids = read_class_ids(root)
    chosen = None
    if len(class_ids) > SMOKE_CLASSES:
        ordered = sorted(class_ids)
        chosen = tuple(
            ordered[index * len(ordered) // SMOKE_CLASSES] for index in range(SMOKE_CLASSES)
        )
    return Subset(chosen, SMOKE_TRAIN_PER_CLASS, SMOKE_TEST_IMAGES)


def profile_subset(root: str | os.PathLike[str], profile: Any = None) -> Subset:
    """The subset of ``root`` that a run profile reads: :func:`smoke_subset` or everything.

    Args:
        root: The dataset root.
        profile: A :class:`dlnotes.runtime.profiles.Profile`, a profile name (``"smoke"``,
            ``"full"``, ``"auto"``) or None for the current profile.

    Returns:
        ``Subset()`` (everything) in the full profile, :func:`smoke_subset` otherwise.

    Raises:
        ValueError: For an unknown profile name.
        FileNotFoundError: If ``root`` is not a dataset root.
    """
    from dlnotes.runtime import profiles

    if profile is None or isinstance(profile, str):
        profile = profiles.get_profile(profile)
    return Subset() if profile.is_full else smoke_subset(root)


SYNTHETIC_FOLDER = "synthetic-tiny-imagenet"


def _synthetic_stand_in() -> Path:
    """The synthetic stand-in in the cache, written there (staged, then renamed) if absent."""
    from dlnotes.data import synthetic
    from dlnotes.runtime import paths, storage

    folder = paths.cache_dir() / SYNTHETIC_FOLDER
    stand_in = folder / "tiny-imagenet-200"
    if not (stand_in / "wnids.txt").is_file():
        with storage.staged_folder(folder, replace=True) as staging:  # an incomplete one: replaced
            synthetic.write_tiny_imagenet(
                staging, num_classes=10, train_per_class=100, val_per_class=50, test_images=100
            )
    return stand_in


def find_root(profile: Any = None, *, announce: bool = True) -> Path:
    """The dataset root a chapter reads; downloads Tiny ImageNet the first time.

    * ``$DLNOTES_DATA_DIR`` or the cache (:func:`dlnotes.runtime.paths.data_dir`) when it holds a
      dataset;
    * otherwise the real Tiny ImageNet is downloaded there — verified, extracted atomically,
      with a progress bar (:func:`dlnotes.data.download.prepare_tiny_imagenet`; a mirror can be set
      with ``$DLNOTES_DATA_URL`` and ``$DLNOTES_DATA_MD5``);
    * only when the download cannot be made: in the smoke profile, a synthetic stand-in in the
      original layout (10 classes, 100 training images each), with a warning box on the page
      (:func:`dlnotes.runtime.notices.show_stand_in`); in the full profile, an error.

    Args:
        profile: A :class:`dlnotes.runtime.profiles.Profile`; defaults to the current one.
        announce: Print which data is used.

    Returns:
        The dataset root.

    Raises:
        FileNotFoundError: In the full profile when the dataset is missing and cannot be
            downloaded.
        ValueError: If ``$DLNOTES_DATA_URL`` is set without ``$DLNOTES_DATA_MD5`` or the other
            way round.
    """
    from dlnotes.data import download
    from dlnotes.runtime import paths, profiles

    root = paths.data_dir()
    if not download.is_prepared(root):
        try:
            root = _download(root, announce)
        except download.DownloadError as failure:
            profile = profile if profile is not None else profiles.get_profile()
            if profile.is_full:
                raise FileNotFoundError(
                    f"Tiny ImageNet not found at {root} and the download failed ({failure}). Run "
                    f"{download.DOWNLOAD_COMMAND} or set DLNOTES_DATA_DIR"
                ) from failure
            return _stand_in_instead_of(root, failure, announce)
    if announce:
        print(f"data: {root}")
    return root


def _download(root: Path, announce: bool) -> Path:
    """Download Tiny ImageNet into ``root`` (:func:`.download.prepare_tiny_imagenet`)."""
    from dlnotes import runtime
    from dlnotes.data import download

    url, md5 = download.archive_source()
    if announce:
        print(f"data: no Tiny ImageNet at {root}; downloading it once from {url}", flush=True)
    runtime.import_quietly("keras")
    return download.prepare_tiny_imagenet(root, url=url, md5=md5)


def _stand_in_instead_of(root: Path, failure: Exception, announce: bool) -> Path:
    """The synthetic stand-in, announced on the page with why the real data is missing."""
    from dlnotes import runtime
    from dlnotes.data import download

    stand_in = _synthetic_stand_in()
    if announce:
        print(f"data: SYNTHETIC stand-in at {stand_in}")
    runtime.show_stand_in(
        "synthetic images instead of Tiny ImageNet",
        f"There is no dataset at {root} and it could not be downloaded ({failure}). This page "
        "ran on coloured stripe patterns in Tiny ImageNet's layout.",
        f"Run `{download.DOWNLOAD_COMMAND}` where the internet can be reached (or set "
        "`DLNOTES_DATA_DIR` to a Tiny ImageNet root), then run this notebook again.",
    )
    return stand_in
