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
:class:`Subset` restricts what is read — some classes, a few images of each.
:mod:`dlnotes.data.selection` chooses which dataset and which subset a chapter or run reads.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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

    See :func:`dlnotes.data.selection.profile_subset` for the subset of a run profile.
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
        subset: Read only part of the split (see :class:`Subset` and
            :func:`dlnotes.data.selection.profile_subset`);
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
