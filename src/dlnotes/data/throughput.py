"""Measure input-pipeline throughput: five ways to feed Tiny ImageNet, side by side.

Used by ``benchmarks/pipeline.py``, which writes its measurements to the package resource
``resources/pipeline_benchmark.json``; the input-pipeline chapter and the README quote that file
(:func:`reference_results`), so there is one source for these numbers. Every loader delivers
float32 batches of 64×64×3 training images with random horizontal flips (ours also random
4-pixel crops).
"""

from __future__ import annotations

import importlib.resources
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes import runtime
from dlnotes.data import tiny_imagenet

if TYPE_CHECKING:
    from dlnotes.data.pipeline import ChannelStats

LOADERS = (
    "image_data_generator",
    "image_dataset_from_directory",
    "pipeline_files",
    "pipeline_cache",
    "pipeline_tfrecord",
)
LOADER_NAMES = {
    "image_data_generator": "ImageDataGenerator.flow_from_directory (source notes)",
    "image_dataset_from_directory": "keras.utils.image_dataset_from_directory",
    "pipeline_files": "our pipeline from files",
    "pipeline_cache": "our pipeline from the in-memory cache",
    "pipeline_tfrecord": "our pipeline from TFRecord shards",
}
"""How the chapter and the README name each loader."""
RESULTS_RESOURCE = "resources/pipeline_benchmark.json"
"""The committed measurements of ``benchmarks/pipeline.py``, inside the package."""


def check_results(results: Mapping[str, Any]) -> None:
    """Check the structure of a benchmark results record (see :func:`reference_results`).

    Args:
        results: The parsed JSON record.

    Raises:
        ValueError: Naming the first missing key, or a run that lacks a loader or has a rate that
            is not a positive number.
    """
    for key in ("machine", "date", "tensorflow", "dataset", "images", "repeat", "batch_size"):
        if key not in results:
            raise ValueError(f"benchmark results lack {key!r}")
    runs = results.get("runs")
    if not isinstance(runs, list) or not runs:
        raise ValueError(f"benchmark results need a non-empty list of runs, got {runs!r}")
    for number, run in enumerate(runs, start=1):
        for loader in LOADERS:
            rate = run.get(loader) if isinstance(run, Mapping) else None
            if not isinstance(rate, (int, float)) or rate <= 0:
                raise ValueError(f"run {number}: {loader} must be a positive rate, got {rate!r}")


def reference_results() -> dict[str, Any]:
    """The committed measurements of ``benchmarks/pipeline.py`` (images per second per loader).

    Returns:
        A record with the ``machine`` description, ``date``, ``tensorflow`` version, ``dataset``,
        ``images``, ``repeat``, ``batch_size`` and ``runs``: one mapping from loader (as in
        :data:`LOADERS`) to images per second per run.

    Raises:
        ValueError: If the file is malformed.
    """
    text = importlib.resources.files("dlnotes").joinpath(RESULTS_RESOURCE).read_text()
    results: dict[str, Any] = json.loads(text)
    check_results(results)
    return results


def images_per_second(batches: Callable[[], Iterable[Any]], passes: int = 1) -> float:
    """Images per second over ``passes`` iterations of ``batches()``, after one warm-up batch.

    Args:
        batches: Returns a fresh iterable of batches (``(images, labels)`` or images).
        passes: How many times to iterate it (at least 1).

    Returns:
        The rate.

    Raises:
        ValueError: If ``passes`` < 1 or fewer than two batches were produced.
    """
    if passes < 1:
        raise ValueError(f"passes must be at least 1, got {passes}")
    count, start = 0, None
    for _ in range(passes):
        for batch in batches():
            images = batch[0] if isinstance(batch, tuple) else batch
            if start is None:  # the first batch pays for start-up (threads, file listing)
                start = time.perf_counter()
                continue
            count += int(images.shape[0])
    if start is None or count == 0:
        raise ValueError("need at least two batches to measure a rate")
    return count / (time.perf_counter() - start)


def compare_loaders(
    root: str | os.PathLike[str], *, repeat: int = 20, batch_size: int = 128
) -> dict[str, float]:
    """Measure the five loaders of :data:`LOADERS` on the training split of ``root``.

    The legacy ``ImageDataGenerator`` iterates ``repeat`` epochs; the tf.data loaders read one
    epoch over the file list repeated ``repeat`` times, so short test archives give epochs of
    realistic length (the full training split has 100,000 images). The cached pipeline is
    measured after a first pass has filled its cache.

    Args:
        root: Tiny ImageNet root.
        repeat: Passes over the training split (at least 1).
        batch_size: Images per batch.

    Returns:
        Images per second of each loader, keyed as in :data:`LOADERS`.

    Raises:
        ValueError: For ``repeat`` < 1.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1, got {repeat}")
    from dlnotes.data import pipeline

    files, labels, class_ids = tiny_imagenet.read_split(root, "train")
    assert labels is not None  # the training split is always labelled
    stats = pipeline.channel_stats(files, max_images=2000)
    long_files, long_labels = files * repeat, np.tile(labels, repeat)
    train_dir = str(Path(root) / "train")
    legacy_batches = _image_data_generator(train_dir, class_ids, batch_size)
    directory_ds = _directory_dataset(train_dir, class_ids, batch_size)
    from_files = pipeline.train_dataset(long_files, long_labels, stats, batch_size=batch_size)
    cached = pipeline.train_dataset(
        long_files, long_labels, stats, batch_size=batch_size, cache=True
    )
    for _ in cached:  # fill the cache
        pass
    # The shards are a throw-away input of this measurement, read by no one else: a temporary
    # folder that is deleted afterwards, not a folder published with dlnotes.runtime.storage.
    with tempfile.TemporaryDirectory() as shard_dir:
        from_records = _tfrecord_dataset(
            shard_dir, long_files, long_labels, class_ids, stats, batch_size
        )
        return {
            "image_data_generator": images_per_second(legacy_batches, repeat),
            "image_dataset_from_directory": images_per_second(lambda: directory_ds, repeat),
            "pipeline_files": images_per_second(lambda: from_files),
            "pipeline_cache": images_per_second(lambda: cached),
            "pipeline_tfrecord": images_per_second(lambda: from_records),
        }


def _image_data_generator(
    train_dir: str, class_ids: list[str], batch_size: int
) -> Callable[[], Iterable[Any]]:
    """One epoch of the legacy ``ImageDataGenerator.flow_from_directory``, per call."""
    runtime.import_quietly("keras")
    # ImageDataGenerator left Keras' public API in Keras 3; its implementation still ships.
    from keras.src.legacy.preprocessing.image import ImageDataGenerator

    generator = ImageDataGenerator(rescale=1 / 255, horizontal_flip=True).flow_from_directory(
        train_dir,
        target_size=(64, 64),
        batch_size=batch_size,
        class_mode="sparse",
        classes=class_ids,
        shuffle=True,
    )

    def legacy_batches() -> Iterable[Any]:
        for _ in range(len(generator)):
            yield next(generator)

    return legacy_batches


def _directory_dataset(train_dir: str, class_ids: list[str], batch_size: int) -> Any:
    """``keras.utils.image_dataset_from_directory`` with random flips, scaled to [0, 1]."""
    tf = runtime.import_quietly("tensorflow")
    keras = runtime.import_quietly("keras")
    flip = keras.layers.RandomFlip("horizontal")
    return (
        keras.utils.image_dataset_from_directory(
            train_dir,
            labels="inferred",
            class_names=class_ids,
            image_size=(64, 64),
            batch_size=batch_size,
            shuffle=True,
            verbose=False,
        )
        .map(lambda x, y: (flip(x / 255.0), y))
        .prefetch(tf.data.AUTOTUNE)
    )


def _tfrecord_dataset(
    shard_dir: str,
    files: list[str],
    labels: np.ndarray,
    class_ids: list[str],
    stats: ChannelStats,
    batch_size: int,
) -> Any:
    """Our pipeline reading ``files`` from 8 TFRecord shards written into ``shard_dir``."""
    from dlnotes.data import pipeline, tfrecord

    shards = tfrecord.write_shards(
        files, labels, class_ids, shard_dir, prefix="train", num_shards=8, progress=False
    )
    return pipeline.prepare_training(
        tfrecord.image_label_dataset(shards),
        stats,
        batch_size=batch_size,
        shuffle_buffer=min(10_000, len(files)),
    )
