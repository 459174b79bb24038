"""Tiny ImageNet on disk: reading the splits without touching the files.

The archive keeps its labels in three different places, and this module reads each one where it
is, never moving or renaming an image:

* ``wnids.txt`` lists the classes of the dataset; the label of a class is its line number there;
* ``train/<wnid>/images/*.JPEG`` holds the training images of each class (the ``*_boxes.txt``
  file beside ``images/`` holds bounding boxes, not images);
* ``val/images/*.JPEG`` holds the validation images; their classes are only in
  ``val/val_annotations.txt``;
* ``test/images/*.JPEG`` holds unlabelled images.

Any number of classes works: the course tests run on a 10-class subset of the real archive. A
:class:`Subset` restricts what is read — some classes, a few images of each — and
:func:`profile_subset` gives the subset of the run profile: the ``smoke`` profile reads at most 10
classes and 100 training images per class of whatever dataset is present, so the full dataset costs
no more time or memory than a small one. :func:`find_root` finds the dataset, downloading it when
it is absent.
"""

from __future__ import annotations

import csv
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

SPLITS = ("train", "val", "test")

IMAGE_SUFFIXES = frozenset({".jpeg", ".jpg", ".png"})


class SplitFiles(NamedTuple):
    """The files of one split: ``paths[i]`` has label ``labels[i]``, an index into ``class_ids``.

    Attributes:
        paths: Image paths as strings, in a deterministic order.
        labels: int64 array of class indices, or None for the unlabelled test split.
        class_ids: WordNet ids of the classes in ``wnids.txt`` order.
    """

    paths: list[str]
    labels: np.ndarray | None
    class_ids: list[str]


def _is_image(path: Path) -> bool:
    return (
        path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES
    )


def _list_images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.iterdir() if _is_image(p))


def read_class_ids(root: str | os.PathLike[str]) -> list[str]:
    """Read the class ids of a Tiny ImageNet root from ``wnids.txt``, in file order.

    Args:
        root: The dataset root (the folder holding ``wnids.txt``).

    Returns:
        The WordNet ids; the label of a class is its index in this list.

    Raises:
        FileNotFoundError: If ``root`` does not exist or has no ``wnids.txt``.
        ValueError: If ``wnids.txt`` is empty or lists a class twice.
    """
    root = Path(root)
    wnids_file = root / "wnids.txt"
    if not wnids_file.is_file():
        hint = "" if root.is_dir() else " (the folder does not exist)"
        raise FileNotFoundError(
            f"not a Tiny ImageNet root: {wnids_file} is missing{hint}. Set DLNOTES_DATA_DIR or "
            "run dlnotes-download"
        )
    class_ids = [line.strip() for line in wnids_file.read_text().splitlines() if line.strip()]
    if not class_ids:
        raise ValueError(f"{wnids_file} lists no classes")
    duplicates = sorted({c for c in class_ids if class_ids.count(c) > 1})
    if duplicates:
        raise ValueError(f"{wnids_file} lists classes more than once: {duplicates}")
    return class_ids


def read_class_names(
    root: str | os.PathLike[str], class_ids: Sequence[str] | None = None
) -> list[str]:
    """Return a short human-readable name for each class, from ``words.txt``.

    Args:
        root: The dataset root.
        class_ids: Ids to name; defaults to :func:`read_class_ids`.

    Returns:
        The first synonym of each id (``"goldfish"`` for ``"goldfish, Carassius auratus"``);
        the id itself where ``words.txt`` has no entry.

    Raises:
        FileNotFoundError: If ``words.txt`` is missing.
    """
    root = Path(root)
    class_ids = list(class_ids) if class_ids is not None else read_class_ids(root)
    words_file = root / "words.txt"
    if not words_file.is_file():
        raise FileNotFoundError(f"class names file not found: {words_file}")
    wanted = set(class_ids)
    names: dict[str, str] = {}
    with words_file.open(encoding="utf-8") as handle:
        for line in handle:
            wnid, _, words = line.rstrip("\n").partition("\t")
            if wnid in wanted:
                names[wnid] = words.split(",")[0].strip() or wnid
    return [names.get(wnid, wnid) for wnid in class_ids]


SMOKE_CLASSES = 10
"""At most this many classes in the smoke profile."""

SMOKE_TRAIN_PER_CLASS = 100
"""At most this many training images per class in the smoke profile."""

SMOKE_TEST_IMAGES = 100
"""At most this many (unlabelled) test images in the smoke profile."""


def _positive_or_none(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}")


@dataclass(frozen=True)
class Subset:
    """The part of a dataset that a run reads. The default, ``Subset()``, is everything.

    Attributes:
        classes: WordNet ids of the classes to read, or None for all. Labels number the kept
            classes in ``wnids.txt`` order.
        max_per_class: At most this many training images per class (the first ones in file-name
            order), or None for all. Validation images are never capped: every val image of a
            kept class is read.
        max_test: At most this many test images (the first ones in file-name order), or None.

    Raises:
        ValueError: For an empty or repeated class list or a count below 1.
    """

    classes: tuple[str, ...] | None = None
    max_per_class: int | None = None
    max_test: int | None = None

    def __post_init__(self) -> None:
        if self.classes is not None:
            classes = tuple(self.classes)
            if not classes:
                raise ValueError("classes must name at least one class, or be None for all")
            if len(set(classes)) != len(classes):
                raise ValueError(f"classes lists a class more than once: {list(classes)}")
            object.__setattr__(self, "classes", classes)
        _positive_or_none("max_per_class", self.max_per_class)
        _positive_or_none("max_test", self.max_test)

    def describe(self) -> str:
        """One line that says what is read, e.g. ``"10 classes, ≤ 100 training images each"``."""
        if self == Subset():
            return "all classes, all images"
        parts = [
            "all classes" if self.classes is None else f"{len(self.classes)} classes",
            "all training images"
            if self.max_per_class is None
            else f"≤ {self.max_per_class} training images each",
        ]
        if self.max_test is not None:
            parts.append(f"≤ {self.max_test} test images")
        return ", ".join(parts)


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


def _kept_classes(root: Path, subset: Subset) -> tuple[list[str], list[str]]:
    """All class ids of ``root`` and the ones ``subset`` keeps, both in wnids.txt order."""
    class_ids = read_class_ids(root)
    if subset.classes is None:
        return class_ids, class_ids
    unknown = sorted(set(subset.classes) - set(class_ids))
    if unknown:
        raise ValueError(f"subset names classes that {root / 'wnids.txt'} lacks: {unknown}")
    wanted = set(subset.classes)
    return class_ids, [wnid for wnid in class_ids if wnid in wanted]


def _read_val_annotations(
    root: Path, all_classes: Sequence[str], class_index: dict[str, int]
) -> tuple[list[str], np.ndarray]:
    annotations = root / "val" / "val_annotations.txt"
    if not annotations.is_file():
        raise FileNotFoundError(
            f"validation labels not found: {annotations} is missing (Tiny ImageNet keeps the val "
            "labels only in this file)"
        )
    images = root / "val" / "images"
    known = set(all_classes)
    paths: list[str] = []
    labels: list[int] = []
    with annotations.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2:
                raise ValueError(f"{annotations}:{number}: expected 'file<TAB>wnid…', got {line!r}")
            name, wnid = fields[0], fields[1]
            if wnid not in known:
                raise ValueError(
                    f"{annotations}:{number}: class {wnid!r} of {name} is not in wnids.txt"
                )
            if wnid not in class_index:  # a class left out by the subset
                continue
            path = images / name
            if not path.is_file():
                raise FileNotFoundError(f"{annotations}:{number}: image not found: {path}")
            paths.append(str(path))
            labels.append(class_index[wnid])
    order = np.argsort(paths, kind="stable")
    return [paths[i] for i in order], np.asarray(labels, dtype=np.int64)[order]


def read_labels_csv(
    manifest: str | os.PathLike[str], class_ids: Sequence[str]
) -> tuple[list[str], np.ndarray]:
    """Read a label manifest (``path,wnid[,confidence]``), e.g. one written by pseudo-labelling.

    Args:
        manifest: CSV file with a header row naming at least ``path`` and ``wnid``.
        class_ids: The dataset's class ids; labels are indices into this list.

    Returns:
        ``(paths, labels)`` in the manifest's order.

    Raises:
        FileNotFoundError: If the manifest or one of the images it names is missing.
        ValueError: If a header column is missing or a row names an unknown class.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"label manifest not found: {manifest}")
    class_index = {wnid: i for i, wnid in enumerate(class_ids)}
    paths: list[str] = []
    labels: list[int] = []
    with manifest.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"path", "wnid"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{manifest}: header lacks column(s) {sorted(missing)}")
        for number, row in enumerate(reader, start=2):
            if row["wnid"] not in class_index:
                raise ValueError(f"{manifest}:{number}: class {row['wnid']!r} is not in wnids.txt")
            path = Path(row["path"])
            if not path.is_absolute():
                path = manifest.parent / path
            if not path.is_file():
                raise FileNotFoundError(f"{manifest}:{number}: image not found: {path}")
            paths.append(str(path))
            labels.append(class_index[row["wnid"]])
    return paths, np.asarray(labels, dtype=np.int64)


def read_split(
    root: str | os.PathLike[str],
    split: str,
    *,
    labels_csv: str | os.PathLike[str] | None = None,
    subset: Subset | None = None,
) -> SplitFiles:
    """List the images and labels of one split of a Tiny ImageNet root.

    Args:
        root: The dataset root (the folder holding ``wnids.txt``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        labels_csv: Optional manifest (``path,wnid[,confidence]``) whose rows replace the
            split's own labels; with it the test split becomes labelled (pseudo-labels).
        subset: Read only part of the split (see :class:`Subset` and :func:`profile_subset`);
            None reads everything. Only the kept classes' folders and images are touched.

    Returns:
        ``(paths, labels, class_ids)``; ``labels`` is None for ``test`` without a manifest;
        ``class_ids`` are the kept classes.

    Raises:
        ValueError: For an unknown split, an annotation naming an unknown class or a subset
            naming classes the dataset lacks.
        FileNotFoundError: For a wrong root, a missing annotations file or a missing image.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: expected one of {SPLITS}")
    root = Path(root)
    subset = subset if subset is not None else Subset()
    all_classes, class_ids = _kept_classes(root, subset)
    class_index = {wnid: i for i, wnid in enumerate(class_ids)}
    if labels_csv is not None:
        paths, labels = read_labels_csv(labels_csv, class_ids)
        return SplitFiles(paths, labels, class_ids)
    if split == "train":
        paths, label_list = [], []
        for index, wnid in enumerate(class_ids):
            images = _list_images(root / "train" / wnid / "images")[: subset.max_per_class]
            paths.extend(str(p) for p in images)
            label_list.extend([index] * len(images))
        return SplitFiles(paths, np.asarray(label_list, dtype=np.int64), class_ids)
    if split == "val":
        paths, label_array = _read_val_annotations(root, all_classes, class_index)
        return SplitFiles(paths, label_array, class_ids)
    test_images = _list_images(root / "test" / "images")[: subset.max_test]
    return SplitFiles([str(p) for p in test_images], None, class_ids)


SYNTHETIC_FOLDER = "synthetic-tiny-imagenet"


def _synthetic_stand_in() -> Path:
    from dlnotes.data import synthetic
    from dlnotes.runtime import paths

    stand_in = paths.cache_dir() / SYNTHETIC_FOLDER / "tiny-imagenet-200"
    if not (stand_in / "wnids.txt").is_file():
        staging = paths.cache_dir() / f".{SYNTHETIC_FOLDER}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        synthetic.write_tiny_imagenet(
            staging, num_classes=10, train_per_class=100, val_per_class=50, test_images=100
        )
        stand_in.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / "tiny-imagenet-200", stand_in)
        shutil.rmtree(staging, ignore_errors=True)
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
    from dlnotes import runtime
    from dlnotes.data import download
    from dlnotes.runtime import paths, profiles

    root = paths.data_dir()
    if download.is_prepared(root):
        if announce:
            print(f"data: {root}")
        return root
    url, md5 = download.archive_source()
    if announce:
        print(f"data: no Tiny ImageNet at {root}; downloading it once from {url}", flush=True)
    try:
        runtime.import_quietly("keras")
        root = download.prepare_tiny_imagenet(root, url=url, md5=md5)
    except download.DownloadError as error:
        failure = error
    else:
        if announce:
            print(f"data: {root}")
        return root
    profile = profile if profile is not None else profiles.get_profile()
    if profile.is_full:
        raise FileNotFoundError(
            f"Tiny ImageNet not found at {root} and the download failed ({failure}). Run "
            f"{download.DOWNLOAD_COMMAND} or set DLNOTES_DATA_DIR"
        ) from failure
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
