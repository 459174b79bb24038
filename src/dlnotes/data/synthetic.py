"""A small synthetic dataset in the exact layout of Tiny ImageNet.

The course's tests run on a real 10-class subset of Tiny ImageNet. Where that archive is not at
hand (a fresh clone of the repository), :func:`write_tiny_imagenet` writes a stand-in with the
same folders, annotation files and traps — a grayscale JPEG, a stray ``.DS_Store`` — so that the
code paths stay the same. Each class is a distinct colour and stripe pattern plus noise, so a
model can learn it, but nothing here is meant as a benchmark.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

IMAGE_SIZE = 64


def _class_image(rng: np.random.Generator, label: int, num_classes: int) -> np.ndarray:
    hue = label / num_classes
    base = np.array([np.sin(2 * np.pi * (hue + k / 3)) * 0.5 + 0.5 for k in range(3)]) * 255
    y, x = np.mgrid[:IMAGE_SIZE, :IMAGE_SIZE]
    angle = np.pi * label / num_classes
    stripes = np.sin((x * np.cos(angle) + y * np.sin(angle)) / (2 + label % 4))
    image: NDArray[np.float64] = base[None, None, :] * (0.6 + 0.4 * stripes[..., None])
    image += rng.normal(0, 20, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def write_tiny_imagenet(
    root: str | os.PathLike[str],
    *,
    num_classes: int = 4,
    train_per_class: int = 12,
    val_per_class: int = 4,
    test_images: int = 6,
    seed: int = 0,
) -> Path:
    """Write a synthetic Tiny ImageNet into ``root`` and return the dataset root.

    The layout is the original one: ``root/tiny-imagenet-200/{wnids.txt, words.txt, train/,
    val/, test/}``, with ``*_boxes.txt`` beside each class's ``images/`` folder and the val labels
    only in ``val/val_annotations.txt``. The first training image is stored as a grayscale JPEG
    and a ``.DS_Store`` file is left in the first class folder, as in the real archive.

    The files are written in place; a caller that needs the dataset to appear whole builds it in
    :func:`dlnotes.runtime.storage.staged_folder` (as :func:`dlnotes.data.find_root` does).

    Args:
        root: Folder to write into (created if needed).
        num_classes: Number of classes (at least 2).
        train_per_class: Training images per class (at least 1).
        val_per_class: Validation images per class (at least 1).
        test_images: Unlabelled test images.
        seed: Seed of the pixel noise.

    Returns:
        The dataset root, ``root / "tiny-imagenet-200"``.

    Raises:
        ValueError: If a count is out of range.
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    for name, value in (("train_per_class", train_per_class), ("val_per_class", val_per_class)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    if test_images < 0:
        raise ValueError(f"test_images must be non-negative, got {test_images}")
    # Real ImageNet-1k ids (spread over the list), so that code mapping classes onto ImageNet
    # outputs (pseudo-labelling) runs on the stand-in too. The pixels are synthetic patterns.
    from dlnotes.data import imagenet_classes

    imagenet = imagenet_classes.imagenet_wnids()
    if num_classes > len(imagenet):
        raise ValueError(f"num_classes must be at most {len(imagenet)}, got {num_classes}")
    class_ids = imagenet[:: len(imagenet) // num_classes][:num_classes]
    rng = np.random.default_rng(seed)
    dataset = Path(root) / "tiny-imagenet-200"
    _write_class_lists(dataset, class_ids)
    _write_train(dataset, class_ids, train_per_class, rng)
    _write_val(dataset, class_ids, val_per_class, rng)
    _write_test(dataset, len(class_ids), test_images, rng)
    return dataset


def _write_class_lists(dataset: Path, class_ids: list[str]) -> None:
    """``wnids.txt`` and ``words.txt`` (with an id that is no class, as in the real file)."""
    dataset.mkdir(parents=True, exist_ok=True)
    (dataset / "wnids.txt").write_text("".join(f"{wnid}\n" for wnid in class_ids))
    (dataset / "words.txt").write_text(
        "n00001740\tentity\n"
        + "".join(f"{wnid}\tsynthetic pattern {i}\n" for i, wnid in enumerate(class_ids))
    )


def _write_train(
    dataset: Path, class_ids: list[str], per_class: int, rng: np.random.Generator
) -> None:
    """``train/<wnid>/images/*.JPEG`` and ``<wnid>_boxes.txt``; one grayscale JPEG, a .DS_Store."""
    for label, wnid in enumerate(class_ids):
        images = dataset / "train" / wnid / "images"
        images.mkdir(parents=True, exist_ok=True)
        boxes = []
        for i in range(per_class):
            name = f"{wnid}_{i}.JPEG"
            image = Image.fromarray(_class_image(rng, label, len(class_ids)))
            if label == 0 and i == 0:
                image = image.convert("L")  # the real archive has ~2 % grayscale JPEGs
            image.save(images / name, format="JPEG", quality=90)
            boxes.append(f"{name}\t0\t0\t{IMAGE_SIZE - 1}\t{IMAGE_SIZE - 1}\n")
        (dataset / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    (dataset / "train" / class_ids[0] / "images" / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def _write_val(
    dataset: Path, class_ids: list[str], per_class: int, rng: np.random.Generator
) -> None:
    """``val/images/*.JPEG``, labelled only in ``val/val_annotations.txt``."""
    num_classes = len(class_ids)
    val_images = dataset / "val" / "images"
    val_images.mkdir(parents=True, exist_ok=True)
    annotations = []
    for index in range(num_classes * per_class):
        label = index % num_classes
        name = f"val_{index}.JPEG"
        Image.fromarray(_class_image(rng, label, num_classes)).save(val_images / name, "JPEG")
        annotations.append(
            f"{name}\t{class_ids[label]}\t0\t0\t{IMAGE_SIZE - 1}\t{IMAGE_SIZE - 1}\n"
        )
    (dataset / "val" / "val_annotations.txt").write_text("".join(annotations))


def _write_test(dataset: Path, num_classes: int, count: int, rng: np.random.Generator) -> None:
    """``test/images/*.JPEG``, unlabelled."""
    test_folder = dataset / "test" / "images"
    test_folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        label = int(rng.integers(num_classes))
        Image.fromarray(_class_image(rng, label, num_classes)).save(
            test_folder / f"test_{index}.JPEG", "JPEG"
        )
