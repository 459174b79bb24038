"""The data layer: Tiny ImageNet on disk, decoded images, and the ways to feed them.

The functions re-exported here need only NumPy and Pillow. Import the others by name:
:mod:`~dlnotes.data.download`, :mod:`~dlnotes.data.synthetic`,
:mod:`~dlnotes.data.imagenet_classes` (light); :mod:`~dlnotes.data.augmentation`,
:mod:`~dlnotes.data.mixing`, :mod:`~dlnotes.data.device_data` (Keras);
:mod:`~dlnotes.data.pipeline`, :mod:`~dlnotes.data.tfrecord` (with
:mod:`~dlnotes.data.tfrecord_format`), :mod:`~dlnotes.data.throughput` (TensorFlow).
"""

from __future__ import annotations

from dlnotes.data.decoding import (
    load_images,
    pixel_stats,
    verify_images,
)
from dlnotes.data.selection import (
    SMOKE_CLASSES,
    SMOKE_TEST_IMAGES,
    SMOKE_TRAIN_PER_CLASS,
    SYNTHETIC_FOLDER,
    find_root,
    profile_subset,
    smoke_subset,
)
from dlnotes.data.tiny_imagenet import (
    IMAGE_SUFFIXES,
    SPLITS,
    SplitFiles,
    Subset,
    read_class_ids,
    read_class_names,
    read_labels_csv,
    read_split,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "SMOKE_CLASSES",
    "SMOKE_TEST_IMAGES",
    "SMOKE_TRAIN_PER_CLASS",
    "SPLITS",
    "SYNTHETIC_FOLDER",
    "SplitFiles",
    "Subset",
    "find_root",
    "load_images",
    "pixel_stats",
    "profile_subset",
    "read_class_ids",
    "read_class_names",
    "read_labels_csv",
    "read_split",
    "smoke_subset",
    "verify_images",
]
