"""The dataset assembly: list a run's image files, decode them (or load them decoded), and cut
them into batches of indices.

:class:`TinyImageNet` is the trainer's data source; another dataset plugs in as another
:class:`DataSource` given to :func:`dlnotes.training.train` (its :class:`Dataset` holds uint8
images of one size and int64 labels, whatever their origin).
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from dlnotes import data, runtime
from dlnotes.data import decode_cache, device_data
from dlnotes.runtime import profiles
from dlnotes.training.config import TrainConfig


@dataclass(frozen=True)
class Dataset:
    """The decoded images of a run, in host memory.

    Attributes:
        train_images: ``(N, 64, 64, 3)`` uint8.
        train_labels: ``(N,)`` int64.
        val_images: ``(M, 64, 64, 3)`` uint8.
        val_labels: ``(M,)`` int64.
        class_ids: WordNet ids, the label order.
        mean: Per-channel mean of the training pixels.
        std: Per-channel standard deviation of the training pixels.
        decode_seconds: Time spent decoding the files (or loading them decoded).
        fingerprint: :attr:`DataFiles.fingerprint` of the files (empty when not from files).
        decode_cache: ``"hit"`` (loaded from :mod:`dlnotes.data.decode_cache`), ``"stored"``
            (decoded, then stored there), or ``"off"`` (not cached).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    class_ids: list[str]
    mean: list[float]
    std: list[float]
    decode_seconds: float
    fingerprint: str = ""
    decode_cache: str = "off"


@dataclass(frozen=True)
class DataFiles:
    """The image files of a run and their labels, listed but not decoded.

    Attributes:
        root: The dataset root.
        train_paths: Training image files.
        train_labels: Their labels.
        val_paths: Validation image files.
        val_labels: Their labels.
        class_ids: WordNet ids, the label order.
        shards: With ``--tfrecords``, the folder of the TFRecord shards the images are read
            from instead (the paths are then the shard files, and the labels come with the
            images).
    """

    root: Path
    train_paths: list[str]
    train_labels: np.ndarray
    val_paths: list[str]
    val_labels: np.ndarray
    class_ids: list[str]
    shards: Path | None = None

    @functools.cached_property
    def _stats(self) -> list[os.stat_result]:
        """One ``stat`` per file, training files first (1.3 s for the 110,000 files of the full
        dataset on the 2-core development machine); raises ``FileNotFoundError`` if a file has
        disappeared."""
        return [os.stat(path) for path in [*self.train_paths, *self.val_paths]]

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 of every file's path relative to the root, size and label, in order.

        Cheap (the files' ``stat``, nothing is read), computed once. It changes when a file is
        added, removed, renamed, relabelled or rewritten with another size; the data may move to
        another root without changing it. Raises ``FileNotFoundError`` if a file has disappeared.
        """
        digest = hashlib.sha256("\n".join(self.class_ids).encode())
        if self.shards is not None:  # the shard files stand for the images they hold
            for path, stat in zip([*self.train_paths, *self.val_paths], self._stats, strict=True):
                digest.update(f"{Path(path).name}\t{stat.st_size}\n".encode())
            return digest.hexdigest()
        stats = iter(self._stats)
        for split, files, labels in (
            ("train", self.train_paths, self.train_labels),
            ("val", self.val_paths, self.val_labels),
        ):
            for path, label in zip(files, labels, strict=True):
                relative = Path(os.path.relpath(path, self.root)).as_posix()
                digest.update(f"{split}\t{relative}\t{next(stats).st_size}\t{label}\n".encode())
        return digest.hexdigest()

    @functools.cached_property
    def cache_key(self) -> str:
        """:attr:`fingerprint` and every file's absolute path and modification time: the key of
        the decoded images in :mod:`dlnotes.data.decode_cache` (a file rewritten with the same
        size, or the same data at another place, is decoded afresh)."""
        digest = hashlib.sha256(self.fingerprint.encode())
        for path, stat in zip([*self.train_paths, *self.val_paths], self._stats, strict=True):
            digest.update(f"{os.path.abspath(path)}\t{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()


def _subset(split: data.SplitFiles, per_class: int | None) -> tuple[list[str], np.ndarray]:
    labels = split.labels
    assert labels is not None
    if per_class is None:
        return split.paths, labels
    keep = np.concatenate(
        [np.flatnonzero(labels == c)[:per_class] for c in range(len(split.class_ids))]
    )
    keep.sort()
    return [split.paths[i] for i in keep], labels[keep]


def dataset_files(root: Path, config: TrainConfig, *, tfrecords: Path | None = None) -> DataFiles:
    """List the training and validation images of a run (the profile's subset), without decoding.

    Args:
        root: Tiny ImageNet root.
        config: The run's configuration (``profile``, ``max_train_per_class``).
        tfrecords: Folder of ``train`` and ``val`` TFRecord shards written by
            ``dlnotes-make-tfrecords`` to read the images from (TensorFlow backend); the classes
            are still those of the root's (subset of) ``wnids.txt``.

    Returns:
        The files and their labels.

    Raises:
        FileNotFoundError: For a wrong root or missing files.
        ValueError: For malformed annotations.
    """
    # The profile's part of the data (smoke: at most 10 classes, 100 training images per class).
    subset = data.profile_subset(root, config.data_profile)
    train_split = data.read_split(root, "train", subset=subset)
    val_split = data.read_split(root, "val", subset=subset)
    train_paths, train_labels = _subset(train_split, config.max_train_per_class)
    assert val_split.labels is not None
    if tfrecords is not None:
        if runtime.keras_backend() != "tensorflow":
            raise ValueError(
                f"--tfrecords reads shards with tf.data and needs KERAS_BACKEND=tensorflow, "
                f"not {runtime.keras_backend()}"
            )
        from dlnotes.data import tfrecord

        shards = {split: tfrecord.shard_files(tfrecords, split) for split in ("train", "val")}
        for split, found in shards.items():
            if not found:
                raise FileNotFoundError(
                    f"no {split!r} shards in {tfrecords}: write them with dlnotes-make-tfrecords"
                )
        return DataFiles(
            root=Path(root),
            train_paths=[str(path) for path in shards["train"]],
            train_labels=np.zeros(0, dtype=np.int64),
            val_paths=[str(path) for path in shards["val"]],
            val_labels=np.zeros(0, dtype=np.int64),
            class_ids=train_split.class_ids,
            shards=Path(tfrecords),
        )
    return DataFiles(
        root=Path(root),
        train_paths=train_paths,
        train_labels=train_labels,
        val_paths=val_split.paths,
        val_labels=val_split.labels,
        class_ids=train_split.class_ids,
    )


def load_dataset(
    root: Path, config: TrainConfig, *, workers: int = 1, files: DataFiles | None = None
) -> Dataset:
    """List and decode the training and validation images of a run.

    Args:
        root: Tiny ImageNet root.
        config: The run's configuration (``max_train_per_class``).
        workers: Decoding processes.
        files: The listing of :func:`dataset_files`, if made already.

    Returns:
        The decoded dataset with its pixel statistics.

    Raises:
        FileNotFoundError: For a wrong root or missing files.
        ValueError: For malformed annotations or unreadable images.
    """
    started = time.perf_counter()
    files = dataset_files(root, config) if files is None else files
    if files.shards is not None:
        decoded, train_labels, val_labels = _decode_shards(root, config, files)
        cache_state = "off"
    else:
        decoded, cache_state = _decode_files(files, workers)
        train_labels, val_labels = files.train_labels, files.val_labels
    return Dataset(
        train_images=decoded.train_images,
        train_labels=train_labels,
        val_images=decoded.val_images,
        val_labels=val_labels,
        class_ids=files.class_ids,
        mean=list(decoded.mean),
        std=list(decoded.std),
        decode_seconds=time.perf_counter() - started,
        fingerprint=files.fingerprint,
        decode_cache=cache_state,
    )


def _decode_shards(
    root: Path, config: TrainConfig, files: DataFiles
) -> tuple[decode_cache.DecodedImages, np.ndarray, np.ndarray]:
    """Read the images and labels of the TFRecord shards (never cached)."""
    from dlnotes.data import tfrecord

    assert files.shards is not None
    print(f"decoding the TFRecord shards in {files.shards}", flush=True)
    per_class = data.profile_subset(root, config.data_profile).max_per_class
    if config.max_train_per_class is not None:
        per_class = min(per_class or config.max_train_per_class, config.max_train_per_class)
    train_images, train_labels = tfrecord.shard_arrays(
        files.shards, "train", files.class_ids, per_class=per_class
    )
    val_images, val_labels = tfrecord.shard_arrays(files.shards, "val", files.class_ids)
    mean, std = (stat.tolist() for stat in data.pixel_stats(train_images))
    return decode_cache.DecodedImages(train_images, val_images, mean, std), train_labels, val_labels


def _decode_files(files: DataFiles, workers: int) -> tuple[decode_cache.DecodedImages, str]:
    """Decode the JPEG files, or load them decoded from the cache; and the cache's state."""
    counts = (len(files.train_paths), len(files.val_paths))
    decoded = decode_cache.load(files.cache_key, counts)
    if decoded is not None:
        print(f"decoded images from the cache {decode_cache.cache_folder()}", flush=True)
        return decoded, "hit"
    print(
        f"decoding {counts[0]} training and {counts[1]} validation images with "
        f"{workers} process(es)",
        flush=True,
    )
    progress = sys.stderr.isatty()
    train_images = data.load_images(files.train_paths, progress=progress, workers=workers)
    val_images = data.load_images(files.val_paths, progress=progress, workers=workers)
    mean, std = data.pixel_stats(train_images)
    decoded = decode_cache.DecodedImages(train_images, val_images, mean.tolist(), std.tolist())
    stored = decode_cache.store(files.cache_key, decoded)
    return decoded, "off" if stored is None else "stored"


class DataSource(Protocol):
    """Where a run's images come from: the seam for another dataset.

    The trainer lists the files first (cheap; their fingerprint is checked against the run
    folder before anything is written), then decodes them.
    """

    def root(self, data_dir: Path | None, config: TrainConfig) -> Path:
        """The dataset's folder: ``data_dir``, or where the course finds it by default."""
        ...

    def files(self, root: Path, config: TrainConfig) -> DataFiles:
        """List the run's files without decoding them."""
        ...

    def load(self, root: Path, config: TrainConfig, files: DataFiles, workers: int) -> Dataset:
        """Decode the listed files with ``workers`` processes."""
        ...


@dataclass(frozen=True)
class TinyImageNet:
    """The trainer's data source: Tiny ImageNet's JPEG files, or TFRecord shards of them.

    Attributes:
        tfrecords: Folder of the shards of ``dlnotes-make-tfrecords`` to read instead of the
            JPEG files (TensorFlow backend), or None.
    """

    tfrecords: Path | None = None

    def root(self, data_dir: Path | None, config: TrainConfig) -> Path:
        """The given root, else the cache (downloaded once): the one way the course finds it."""
        if data_dir is not None:
            return data_dir
        return data.find_root(profiles.get_profile(config.data_profile))

    def files(self, root: Path, config: TrainConfig) -> DataFiles:
        """:func:`dataset_files`."""
        return dataset_files(root, config, tfrecords=self.tfrecords)

    def load(self, root: Path, config: TrainConfig, files: DataFiles, workers: int) -> Dataset:
        """:func:`load_dataset`."""
        return load_dataset(root, config, workers=workers, files=files)


def training_batches(
    config: TrainConfig,
    dataset: Dataset,
    global_batch: int,
    *,
    first_epoch: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> device_data.IndexBatches:
    """The shuffled training batches of indices (with MixUp/CutMix parameters) of a run.

    Args:
        config: The run's configuration.
        dataset: The decoded images.
        global_batch: Images per step over all replicas.
        first_epoch: Epoch to start the sequence at (resuming).
        process_index: This process's id (it gets its share of every global batch).
        process_count: Processes sharing each batch.

    Returns:
        A :class:`dlnotes.data.device_data.IndexBatches`.
    """
    return device_data.IndexBatches(
        dataset.train_labels,
        len(dataset.class_ids),
        global_batch,
        shuffle=True,
        seed=config.seed,
        mix_mode=config.mix,
        mix_alpha=config.mix_alpha,
        mix_probability=config.mix_probability,
        mixing_inputs=config.mix != "none",
        image_size=(dataset.train_images.shape[1], dataset.train_images.shape[2]),
        first_epoch=first_epoch,
        process_index=process_index,
        process_count=process_count,
    )


def validation_batches(
    dataset: Dataset,
    global_batch: int,
    *,
    mixing_inputs: bool,
    process_index: int = 0,
    process_count: int = 1,
) -> device_data.IndexBatches:
    """The validation batches of indices of a run, in order (the images follow the training ones).

    Args:
        dataset: The decoded images.
        global_batch: Images per step over all replicas.
        mixing_inputs: Whether the model takes the mixing parameters too (a mixing run's
            training model).
        process_index: This process's id (it gets its share of every global batch).
        process_count: Processes sharing each batch.

    Returns:
        A :class:`dlnotes.data.device_data.IndexBatches`.
    """
    return device_data.IndexBatches(
        dataset.val_labels,
        len(dataset.class_ids),
        global_batch,
        shuffle=False,
        offset=len(dataset.train_images),
        mixing_inputs=mixing_inputs,
        process_index=process_index,
        process_count=process_count,
    )
