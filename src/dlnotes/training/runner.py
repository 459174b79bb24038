"""One training run, step by step: list and decode the data, check and lock the run folder, build
and compile the models inside the distribution's scope, train with resumable checkpoints,
evaluate, and write ``metrics.json``. :func:`run` strings the steps together; the command line is
:mod:`dlnotes.training.cli`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import hashlib
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes import data, models, runtime
from dlnotes.data import decode_cache, device_data
from dlnotes.runtime import paths, profiles, storage
from dlnotes.training import callbacks, manifest, multihost, optimization
from dlnotes.training.config import DISTRIBUTE_CHOICES, TrainConfig, make_config

if TYPE_CHECKING:
    import keras


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
        from dlnotes.data import tfrecord

        print(f"decoding the TFRecord shards in {files.shards}", flush=True)
        per_class = data.profile_subset(root, config.data_profile).max_per_class
        if config.max_train_per_class is not None:
            per_class = min(per_class or config.max_train_per_class, config.max_train_per_class)
        train_images, train_labels = tfrecord.shard_arrays(
            files.shards, "train", files.class_ids, per_class=per_class
        )
        val_images, val_labels = tfrecord.shard_arrays(files.shards, "val", files.class_ids)
        mean, std = (stat.tolist() for stat in data.pixel_stats(train_images))
        cache_state = "off"
    else:
        train_labels, val_labels = files.train_labels, files.val_labels
        counts = (len(files.train_paths), len(files.val_paths))
        decoded = decode_cache.load(files.cache_key, counts)
        cache_state = "hit"
        if decoded is not None:
            print(f"decoded images from the cache {decode_cache.cache_folder()}", flush=True)
        else:
            print(
                f"decoding {counts[0]} training and {counts[1]} validation images with "
                f"{workers} process(es)",
                flush=True,
            )
            progress = sys.stderr.isatty()
            train_images = data.load_images(files.train_paths, progress=progress, workers=workers)
            val_images = data.load_images(files.val_paths, progress=progress, workers=workers)
            mean_array, std_array = data.pixel_stats(train_images)
            decoded = decode_cache.DecodedImages(
                train_images, val_images, mean_array.tolist(), std_array.tolist()
            )
            stored = decode_cache.store(files.cache_key, decoded)
            cache_state = "off" if stored is None else "stored"
        train_images, val_images = decoded.train_images, decoded.val_images
        mean, std = decoded.mean, decoded.std
    return Dataset(
        train_images=train_images,
        train_labels=train_labels,
        val_images=val_images,
        val_labels=val_labels,
        class_ids=files.class_ids,
        mean=list(mean),
        std=list(std),
        decode_seconds=time.perf_counter() - started,
        fingerprint=files.fingerprint,
        decode_cache=cache_state,
    )


def check_run_folder(out_dir: Path, config: TrainConfig, files: DataFiles) -> None:
    """Refuse to resume a run folder with other settings or on other data; writes nothing.

    Args:
        out_dir: The run folder (it may be new).
        config: The settings of this command.
        files: The data of this command.

    Raises:
        ValueError: Naming what differs: the changed settings, or the classes or files.
    """
    saved = out_dir / "config.json"
    if saved.is_file():
        previous = _read_record(saved)
        current = json.loads(json.dumps(asdict(config)))
        if previous != current:
            changed = sorted(k for k in current if previous.get(k) != current[k])
            raise ValueError(
                f"{out_dir} holds a run with different settings ({', '.join(changed)}); "
                "use another --out-dir or the same settings to resume"
            )
    record = out_dir / "dataset.json"
    if not record.is_file():
        return
    previous = _read_record(record)
    hint = "use another --out-dir, or the run's data to resume"
    if previous.get("class_ids") != files.class_ids:
        before, now = previous.get("class_ids") or [], files.class_ids
        raise ValueError(
            f"{out_dir} holds a run trained on other classes than {files.root} "
            f"({len(before)} classes from {before[:1]} recorded, {len(now)} from {now[:1]} "
            f"now); {hint}"
        )
    fingerprint = previous.get("fingerprint")
    if fingerprint is not None and fingerprint != files.fingerprint:
        raise ValueError(
            f"{out_dir} holds a run trained on other data than {files.root}: the same classes, "
            f"but other image files ({previous.get('train_images')} training and "
            f"{previous.get('val_images')} validation images recorded, "
            f"{len(files.train_paths)} and {len(files.val_paths)} now, or files renamed, "
            f"relabelled or changed in size); {hint}"
        )


def _read_record(path: Path) -> dict[str, Any]:
    """Read one of the run folder's JSON records; a damaged one is an error naming it."""
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise manifest.RunFolderDamaged(
            f"{path} is damaged ({error}); use another --out-dir (or delete {path.parent} to "
            "train from the start)"
        ) from error
    if not isinstance(content, dict):
        raise manifest.RunFolderDamaged(
            f"{path} is damaged (not a JSON object); use another --out-dir (or delete "
            f"{path.parent} to train from the start)"
        )
    return content


def check_devices(out_dir: Path, replicas: int, global_batch: int) -> None:
    """Refuse to resume a run folder on another number of devices; writes nothing.

    The global batch (per-device batch × devices) fixes the steps per epoch and the peak
    learning rate, and the restored optimiser counts its steps: resumed with another global
    batch, the schedule would continue at the wrong place.

    Args:
        out_dir: The run folder (it may be new).
        replicas: Devices of this command.
        global_batch: Global batch of this command.

    Raises:
        ValueError: Naming the recorded and the current devices and global batch.
    """
    record = out_dir / "devices.json"
    if not record.is_file():
        return
    previous = _read_record(record)
    if previous.get("global_batch_size") != global_batch:
        raise ValueError(
            f"{out_dir} holds a run trained with a global batch of "
            f"{previous.get('global_batch_size')} on {previous.get('replicas')} device(s); "
            f"this command has {global_batch} on {replicas}. Resume on the same number of "
            "devices (CUDA_VISIBLE_DEVICES, --distribute), or use another --out-dir"
        )


def record_run(
    out_dir: Path,
    config: TrainConfig,
    dataset: Dataset,
    root: Path,
    *,
    replicas: int,
    global_batch: int,
) -> None:
    """Write a run folder's records: settings, devices and data, then the manifest listing them.

    The trainer calls this once its checks have passed, before training; a training loop of one's
    own calls it before ``fit`` so that the folder is the trainer's and the command can resume it.
    Once: a folder with a manifest holds them already (checked, never rewritten). Without one,
    any of them left by a run killed before its manifest was written was checked to agree with
    this command, and is written again with the same content.

    Args:
        out_dir: The run folder.
        config: The run's settings (``config.json``).
        dataset: The decoded data (class ids, pixel statistics and fingerprint: ``dataset.json``).
        root: The dataset root it came from.
        replicas: Devices (``devices.json``).
        global_batch: Images per step over all devices.
    """
    if (out_dir / manifest.MANIFEST).is_file():
        return
    storage.write_json(out_dir / "config.json", json.loads(json.dumps(asdict(config))))
    storage.write_json(
        out_dir / "devices.json", {"replicas": replicas, "global_batch_size": global_batch}
    )
    storage.write_json(
        out_dir / "dataset.json",
        {
            "mean": dataset.mean,
            "std": dataset.std,
            "class_ids": dataset.class_ids,
            "fingerprint": dataset.fingerprint,
            "train_images": len(dataset.train_images),
            "val_images": len(dataset.val_images),
            "data_dir": str(Path(root).resolve()),
        },
    )
    manifest.record_manifest(out_dir)


@contextlib.contextmanager
def distribution(kind: str) -> Iterator[tuple[int, Any]]:
    """Spread training over every local accelerator with the active backend's engine.

    * ``"none"``: one device;
    * ``"data-parallel"`` (alias ``"mirrored"``): on JAX, ``keras.distribution.DataParallel``
      (one program over all devices; batch-norm statistics are computed over the global batch);
      on TensorFlow, ``tf.distribute.MirroredStrategy`` (one replica per device; batch-norm
      statistics per replica). The global batch is the per-device batch × the replicas.
      On JAX the devices are those of every process once :func:`dlnotes.training.multihost.start`
      has connected them.

    Args:
        kind: One of :data:`DISTRIBUTE_CHOICES`.

    Yields:
        ``(replicas, scope)``: the number of replicas and a context manager to build and
        compile the model in.

    Raises:
        ValueError: For an unknown kind or a backend without a data-parallel engine here.
    """
    if kind not in DISTRIBUTE_CHOICES:
        raise ValueError(f"distribute must be one of {DISTRIBUTE_CHOICES}, got {kind!r}")
    if kind == "none":
        yield 1, contextlib.nullcontext()
        return
    backend = runtime.keras_backend()
    if backend == "tensorflow":
        tf = runtime.import_quietly("tensorflow")
        strategy = tf.distribute.MirroredStrategy()
        yield strategy.num_replicas_in_sync, strategy.scope()
        return
    if backend == "jax":
        keras = runtime.import_quietly("keras")
        devices = keras.distribution.list_devices()  # of every process (multihost.start)
        # Each process feeds its own share of every batch (IndexBatches' process_index).
        keras.distribution.set_distribution(
            keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False)
        )
        try:
            yield len(devices), contextlib.nullcontext()
        finally:
            keras.distribution.set_distribution(None)
        return
    raise ValueError(f"--distribute {kind} needs the JAX or TensorFlow backend, not {backend}")


def _versions() -> dict[str, str]:
    keras = runtime.import_quietly("keras")
    backend = runtime.keras_backend()
    module = runtime.import_quietly(backend)
    return {
        "keras_version": keras.__version__,
        "backend": backend,
        "backend_version": str(getattr(module, "__version__", "unknown")),
        "python_version": sys.version.split()[0],
    }


def _schedule(config: TrainConfig, steps_per_epoch: int, replicas: int) -> Any:

    return optimization.learning_rate_schedule(
        peak=config.learning_rate * replicas,
        steps_per_epoch=steps_per_epoch,
        epochs=config.epochs,
        warmup_epochs=min(config.warmup_epochs, config.epochs - 1),
    )


def build_models(
    config: TrainConfig,
    dataset: Dataset,
    *,
    replicas: int,
    steps_per_epoch: int,
    policy: str,
    jit_compile: bool | str,
    steps_per_execution: int,
) -> tuple[keras.Model, Any]:
    """Build the ResNet and the trainer's models around it, and compile them.

    Call inside the distribution scope. The learning rate is scaled linearly with the replicas
    (the global batch grows with them).

    Args:
        config: The run's configuration.
        dataset: The decoded images (training then validation images go to device memory).
        replicas: Devices the global batch is split over.
        steps_per_epoch: Optimiser steps per epoch (for the schedule).
        policy: Keras dtype policy of the backbone.
        jit_compile: Passed to ``compile``.
        steps_per_execution: Passed to ``compile``.

    Returns:
        ``(backbone, models)`` with ``models`` a :class:`dlnotes.models.TrainingModels`.
    """

    backbone = models.build_resnet(
        len(dataset.class_ids), config.levels, config.width, dtype=policy
    )
    built = models.build_training_models(
        backbone,
        np.concatenate([dataset.train_images, dataset.val_images]),
        dataset.mean,
        dataset.std,
        padding=config.augment_padding,
        seed=config.seed,
        mix=config.mix != "none",
    )
    optimizer = optimization.make_optimizer(
        config.optimizer,
        _schedule(config, steps_per_epoch, replicas),
        weight_decay=config.weight_decay or None,
    )
    for model in (built.train, built.flip_averaged):
        optimization.compile_classifier(
            model,
            optimizer,
            label_smoothing=config.label_smoothing,
            policy=policy,
            jit_compile=jit_compile,
            steps_per_execution=steps_per_execution,
            soft_targets=True,
        )
    return backbone, built


def training_batches(
    config: TrainConfig,
    dataset: Dataset,
    global_batch: int,
    *,
    first_epoch: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> Any:
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
    from dlnotes.data import device_data

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


def run(args: argparse.Namespace, *, started: float | None = None) -> dict[str, Any]:
    """Train according to ``args`` and return the metrics written to ``metrics.json``.

    Args:
        args: From :func:`parse_args`.
        started: ``time.perf_counter()`` value the wall time counts from (default: now).

    Returns:
        The metrics.

    Raises:
        ValueError: For invalid settings or backend, a run folder holding other settings or
            damaged (:class:`dlnotes.training.manifest.RunFolderDamaged`), or a loss that became
            NaN or infinite.
        FileNotFoundError: For a missing dataset.
        dlnotes.runtime.storage.FolderInUse: If another trainer is using ``--out-dir``.
        OSError: If the run folder cannot be written (e.g. a full disk), naming the path.
    """
    started = time.perf_counter() if started is None else started
    # Every setting is checked before the run folder is created or read.
    config = make_config(args)
    check_run_options(args)
    if args.dry_run:
        data_dir = args.data_dir if args.data_dir is not None else paths.data_dir()
        print(json.dumps({**asdict(config), "data_dir": str(data_dir)}, indent=2))
        return {}
    out_dir = args.out_dir
    # Several processes connect here (one: nothing happens); errors before training are shared.
    group = multihost.start(multihost.process_settings(args))
    with group.failures_shared():
        if not group.writes:  # only process 0 uses the run folder; the others, their own
            with multihost.private_run_folder(group.index) as private:
                return _run_in_folder(args, config, private, started, group)
        if out_dir.exists() and not out_dir.is_dir():
            raise ValueError(f"--out-dir {out_dir} is a file, not a folder")
        # One trainer per run folder; nothing is written into it before the checks below pass.
        with storage.locked_folder(out_dir, what="trainer"):
            return _run_in_folder(args, config, out_dir, started, group)


MAX_STEPS_PER_EXECUTION = 10_000
MAX_DECODE_WORKERS = 1024
MAX_LOGICAL_CPUS = 64


def check_run_options(args: argparse.Namespace) -> None:
    """Check the backend and the command's options that are not part of the run's settings.

    Called before anything is created or written, with :meth:`TrainConfig.validate`.

    Args:
        args: From :func:`dlnotes.training.cli.parse_args` (missing attributes are defaults).

    Raises:
        ValueError: Naming the option and the value, or ``KERAS_BACKEND``.
    """
    backend = runtime.check_keras_backend(runtime.TRAINING_BACKENDS, purpose="training")
    ranges = [
        ("--steps-per-execution", "steps_per_execution", None, 1, MAX_STEPS_PER_EXECUTION),
        ("--decode-workers", "decode_workers", None, 1, MAX_DECODE_WORKERS),
        ("--logical-cpus", "logical_cpus", 0, 0, MAX_LOGICAL_CPUS),
    ]
    for option, name, default, low, high in ranges:
        value = getattr(args, name, default)
        if value is not None and not low <= value <= high:
            raise ValueError(f"{option} must be an integer from {low} to {high:,}, got {value}")
    if getattr(args, "logical_cpus", 0) and backend != "tensorflow":
        raise ValueError(
            f"--logical-cpus splits the CPU with TensorFlow: it needs KERAS_BACKEND=tensorflow, "
            f"not {backend}"
        )
    distribute = getattr(args, "distribute", "none")
    if distribute not in DISTRIBUTE_CHOICES:
        raise ValueError(f"distribute must be one of {DISTRIBUTE_CHOICES}, got {distribute!r}")
    if distribute != "none" and backend not in ("tensorflow", "jax"):
        raise ValueError(
            f"--distribute {distribute} needs the JAX or TensorFlow backend, not {backend}"
        )
    if getattr(args, "tfrecords", None) is not None and backend != "tensorflow":
        raise ValueError(
            f"--tfrecords reads shards with tf.data and needs KERAS_BACKEND=tensorflow, not "
            f"{backend}"
        )
    multihost.process_settings(args)  # the processes' flags and variables


def _run_in_folder(
    args: argparse.Namespace,
    config: TrainConfig,
    out_dir: Path,
    started: float,
    group: multihost.ProcessGroup,
) -> dict[str, Any]:
    # The one way the course finds its data: the given root, else the cache (downloaded once).
    root = (
        args.data_dir
        if args.data_dir is not None
        else data.find_root(profiles.get_profile(config.data_profile))
    )
    files = dataset_files(root, config, tfrecords=getattr(args, "tfrecords", None))
    # Finishes a committed backup that a kill interrupted (the one change before the checks);
    # then the folder's files, settings and data are checked, and nothing is written into it
    # before the models are built (see record_run).
    first_epoch = callbacks.resumed_epoch(out_dir / "backup")
    manifest.check_run_folder_files(out_dir, finished=first_epoch)
    check_run_folder(out_dir, config, files)
    if args.logical_cpus:
        tf = runtime.import_quietly("tensorflow")
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus
        )
    print(runtime.describe(f"recipe {config.profile}"), flush=True)
    keras = runtime.import_quietly("keras")
    compilation_cache = runtime.enable_compilation_cache()
    if compilation_cache is not None:
        print(f"compiled programs are cached in {compilation_cache}", flush=True)
    from dlnotes.data import device_data

    workers = args.decode_workers or min(os.cpu_count() or 1, 32)  # None: the default
    dataset = load_dataset(root, config, workers=workers, files=files)
    print(f"images ready in {dataset.decode_seconds:.1f} s ({dataset.decode_cache})", flush=True)
    num_classes = len(dataset.class_ids)
    capability = runtime.gpu_compute_capability()
    policy = optimization.precision_policy(capability)
    keras.utils.set_random_seed(config.seed)

    with distribution(args.distribute) as (replicas, scope):
        global_batch = config.batch_size * replicas
        if global_batch > len(dataset.train_images):
            raise ValueError(
                f"batch of {global_batch} is larger than the "
                f"{len(dataset.train_images)} training images"
            )
        check_devices(out_dir, replicas, global_batch)
        steps_per_execution = args.steps_per_execution or (32 if capability is not None else 1)
        # Several processes: wait for all, check they agree, and start each where process 0's
        # run folder says (the others' folders are private and start empty).
        settings = json.dumps([asdict(config), args.distribute, steps_per_execution])
        identity = {"settings": settings, "data": files.fingerprint}
        first_epoch = group.settle(first_epoch, identity, out_dir / "backup")
        steps_per_epoch = len(dataset.train_images) // global_batch
        build_started = time.perf_counter()
        with scope:
            backbone, built = build_models(
                config,
                dataset,
                replicas=replicas,
                steps_per_epoch=steps_per_epoch,
                policy=policy,
                jit_compile=True if capability is not None else "auto",
                steps_per_execution=steps_per_execution,
            )
        build_seconds = time.perf_counter() - build_started
        train_batches = training_batches(
            config,
            dataset,
            global_batch,
            first_epoch=first_epoch,
            process_index=group.index,
            process_count=group.count,
        )
        # The first write into the run folder: everything above only read it.
        record_run(out_dir, config, dataset, root, replicas=replicas, global_batch=global_batch)

        def val_batches(mixing_inputs: bool = config.mix != "none") -> device_data.IndexBatches:
            return device_data.IndexBatches(
                dataset.val_labels,
                num_classes,
                global_batch,
                shuffle=False,
                offset=len(dataset.train_images),
                mixing_inputs=mixing_inputs,
                process_index=group.index,
                process_count=group.count,
            )

        callbacks.truncate_log(out_dir / "history.csv", first_epoch)
        if first_epoch:
            print(f"resuming after epoch {first_epoch} of {config.epochs}", flush=True)
        print(
            f"{num_classes} classes, {len(dataset.train_images)} training and "
            f"{len(dataset.val_images)} validation images, batch {global_batch} on "
            f"{replicas} replica(s), {steps_per_epoch} steps per epoch, precision {policy}, "
            f"{backbone.count_params():,} parameters, built in {build_seconds:.1f} s, "
            f"{time.perf_counter() - started:.1f} s after the start",
            flush=True,
        )
        throughput = callbacks.Throughput(
            global_batch, images_per_epoch=steps_per_epoch * global_batch, echo=True
        )
        fit_started = time.perf_counter()
        run_callbacks = callbacks.training_callbacks(out_dir)
        try:
            built.train.fit(
                train_batches,
                epochs=config.epochs,
                validation_data=val_batches(),
                callbacks=[*run_callbacks, throughput],
                verbose=1 if sys.stdout.isatty() else 2,
            )
        except callbacks.TrainingDiverged as error:  # nothing of the epoch was written
            kept = error.epoch - 1
            raise ValueError(
                f"{error}. {out_dir} keeps the {kept} epoch(s) before it, but the same settings "
                "would diverge again: train with other settings (e.g. a lower --learning-rate) "
                "in another --out-dir"
            ) from error
        except OSError as error:  # e.g. a full disk: every finished epoch stays resumable
            failure = OSError(
                f"writing the run folder {out_dir} failed: {error.strerror or error}. Every "
                "finished epoch is kept: make room and run the same command again to resume"
            )
            failure.errno = error.errno
            raise failure from error
        finally:  # fit leaves the log open when it is interrupted
            for callback in run_callbacks:
                log = getattr(callback, "csv_file", None)
                if isinstance(callback, keras.callbacks.CSVLogger) and log is not None:
                    log.close()
        fit_seconds = time.perf_counter() - fit_started
        evaluate_started = time.perf_counter()
        single = built.train.evaluate(val_batches(), verbose=0, return_dict=True)
        averaged = (
            built.flip_averaged.evaluate(val_batches(False), verbose=0, return_dict=True)
            if config.test_time_flip
            else None
        )
        evaluate_seconds = time.perf_counter() - evaluate_started

    history = callbacks.read_log(out_dir / "history.csv")
    previous_path = out_dir / "metrics.json"
    previous = json.loads(previous_path.read_text()) if previous_path.is_file() else {}
    rate: float | None = throughput.steady_rate
    if rate is None or math.isnan(
        rate
    ):  # nothing left to train: keep the rate measured by the earlier run
        rate = previous.get("train_images_per_second")
    epochs = throughput.epoch_seconds
    final = averaged if averaged is not None else single
    metrics = {
        "val_top1": float(final["accuracy"]),
        "val_top5": float(final["top5"]),
        "val_top1_single_view": float(single["accuracy"]),
        "val_top5_single_view": float(single["top5"]),
        "val_top1_flip_averaged": None if averaged is None else float(averaged["accuracy"]),
        "val_top5_flip_averaged": None if averaged is None else float(averaged["top5"]),
        "best_val_top1": max(history.get("val_accuracy", [single["accuracy"]])),
        "epochs_completed": len(history.get("epoch", [])),
        "train_images_per_second": rate,
        "wall_seconds": time.perf_counter() - started,
        "decode_seconds": dataset.decode_seconds,
        "first_epoch_seconds": epochs[0] if epochs else previous.get("first_epoch_seconds"),
        "median_epoch_seconds": (
            float(np.median(epochs[1:]))
            if len(epochs) > 1
            else previous.get("median_epoch_seconds")
        ),
        "build_seconds": build_seconds,
        "fit_seconds": fit_seconds,
        "evaluate_seconds": evaluate_seconds,
        "decode_cache": dataset.decode_cache,
        "compilation_cache": None if compilation_cache is None else str(compilation_cache),
        **_versions(),
        "device": runtime.device_description(),
        "distribute": args.distribute,
        "replicas": replicas,
        "processes": group.count,
        "global_batch_size": global_batch,
        "steps_per_execution": steps_per_execution,
        "profile": config.profile,
        "precision": policy,
        "parameters": int(backbone.count_params()),
        "num_classes": num_classes,
        "train_images": len(dataset.train_images),
        "val_images": len(dataset.val_images),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    storage.write_json(out_dir / "metrics.json", metrics)
    print(json.dumps(metrics), flush=True)
    return metrics


def learning_rates(config: TrainConfig, steps_per_epoch: int, *, replicas: int = 1) -> list[float]:
    """The learning rate at the end of each epoch of a run (the schedule the trainer builds).

    Args:
        config: The run's configuration.
        steps_per_epoch: Optimiser steps per epoch.
        replicas: Devices (the peak is scaled linearly with them).

    Returns:
        One value per epoch.
    """
    schedule = _schedule(config, steps_per_epoch, replicas)
    return [float(schedule(steps_per_epoch * (epoch + 1))) for epoch in range(config.epochs)]


def load_trained_model(out_dir: str | os.PathLike[str], *, weights: str = "best") -> keras.Model:
    """Rebuild the model of a finished run and load its weights, for inference.

    Args:
        out_dir: The run folder (holds ``config.json`` and ``dataset.json``).
        weights: ``"best"`` (highest validation accuracy) or ``"last"`` (the latest backup).

    Returns:
        The model: uint8 images in, logits out.

    Raises:
        FileNotFoundError: If the folder is not a finished run.
        ValueError: For an unknown ``weights`` choice, or a file that differs from the run
            folder's manifest (:class:`dlnotes.training.manifest.RunFolderDamaged`).
    """

    out_dir = Path(out_dir)
    files = {"best": out_dir / "best.weights.h5", "last": out_dir / "backup" / "latest.weights.h5"}
    if weights not in files:
        raise ValueError(f"weights must be 'best' or 'last', got {weights!r}")
    for needed in (out_dir / "config.json", out_dir / "dataset.json", files[weights]):
        if not needed.is_file():
            raise FileNotFoundError(f"not a finished training run: {needed} is missing")
    used = ["config.json", "dataset.json", files[weights].relative_to(out_dir).as_posix()]
    manifest.check_listed_files(out_dir, used)  # folders without a manifest are not checked
    config = json.loads((out_dir / "config.json").read_text())
    dataset = json.loads((out_dir / "dataset.json").read_text())
    backbone = models.build_resnet(
        len(dataset["class_ids"]), tuple(config["levels"]), config["width"]
    )
    built = models.build_training_models(
        backbone,
        np.zeros((1, *backbone.input_shape[1:]), dtype=np.uint8),  # no data needed to load
        dataset["mean"],
        dataset["std"],
        padding=config["augment_padding"],
        mix=config.get("mix", "none") != "none",
    )
    with warnings.catch_warnings():
        # The files also hold the optimizer's state, which an inference model does not need.
        warnings.filterwarnings("ignore", message=".*optimizer.*")
        built.train.load_weights(files[weights])
    return built.inference
