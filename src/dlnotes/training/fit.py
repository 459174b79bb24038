"""The fit: the distribution, the learning-rate schedule, the models built and compiled, and
Keras' ``fit`` with the run folder's callbacks (:func:`fit`, the part of the trainer that
chapter 11 shows).

The model is a seam: :func:`build_models` takes a ``backbone`` builder (default
:func:`resnet_backbone`), any function ``(config, num_classes, dtype policy) -> keras.Model`` from
uint8-range images to logits.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes import models, runtime
from dlnotes.training import callbacks, manifest, optimization
from dlnotes.training.config import DISTRIBUTE_CHOICES, TrainConfig, upgrade_record
from dlnotes.training.datasets import Dataset

if TYPE_CHECKING:
    import keras

    from dlnotes.data import device_data

BuildBackbone = Callable[[TrainConfig, int, "str | None"], "keras.Model"]
"""Builds the network trained: ``(config, number of classes, dtype policy) -> keras.Model`` (a
policy of None: Keras' global one)."""


def resnet_backbone(config: TrainConfig, num_classes: int, policy: str | None) -> keras.Model:
    """The course's ResNet (:func:`dlnotes.models.build_resnet`) with the run's levels and width.

    Args:
        config: The run's configuration (``levels``, ``width``).
        num_classes: Outputs of the classifier.
        policy: Keras dtype policy (None: the global one).

    Returns:
        The model: images in, logits out.
    """
    return models.build_resnet(num_classes, config.levels, config.width, dtype=policy)


def schedule(config: TrainConfig, steps_per_epoch: int, replicas: int) -> Any:
    """The run's learning-rate schedule: warm-up, then cosine decay; the peak scaled linearly
    with the replicas (the global batch grows with them)."""
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
    backbone: BuildBackbone = resnet_backbone,
) -> tuple[keras.Model, Any]:
    """Build the network and the trainer's models around it, and compile them.

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
        backbone: Builds the network (default: :func:`resnet_backbone`).

    Returns:
        ``(backbone, models)`` with ``models`` a :class:`dlnotes.models.TrainingModels`.
    """
    network = backbone(config, len(dataset.class_ids), policy)
    built = models.build_training_models(
        network,
        np.concatenate([dataset.train_images, dataset.val_images]),
        dataset.mean,
        dataset.std,
        padding=config.augment_padding,
        seed=config.seed,
        mix=config.mix != "none",
    )
    optimizer = optimization.make_optimizer(
        config.optimizer,
        schedule(config, steps_per_epoch, replicas),
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
    return network, built


def fit(
    model: keras.Model,
    train_batches: device_data.IndexBatches,
    val_batches: device_data.IndexBatches,
    *,
    out_dir: Path,
    epochs: int,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
) -> None:
    """Train ``model`` resumably in ``out_dir``: Keras' ``fit`` with the run folder's callbacks.

    The callbacks (:func:`dlnotes.training.callbacks.training_callbacks`) restore the last
    committed epoch, stop on a NaN loss or a full disk, keep the best weights, log each epoch and
    commit a backup after it.

    Args:
        model: The compiled training model.
        train_batches: The training batches, starting at the epoch resumed from.
        val_batches: The validation batches.
        out_dir: The run folder.
        epochs: The run's epochs (Keras starts after the restored ones).
        extra_callbacks: Run after the run folder's (e.g. a throughput meter).

    Raises:
        ValueError: If the loss became NaN or infinite (the epochs before it are kept).
        OSError: If the run folder cannot be written, e.g. a full disk (every finished epoch is
            kept and the same command resumes).
    """
    run_callbacks = callbacks.training_callbacks(out_dir)
    try:
        model.fit(
            train_batches,
            epochs=epochs,
            validation_data=val_batches,
            callbacks=[*run_callbacks, *(extra_callbacks or [])],
            verbose=1 if sys.stdout.isatty() else 2,
        )
    except callbacks.TrainingDiverged as error:  # nothing of the epoch was written
        raise ValueError(
            f"{error}. {out_dir} keeps the {error.epoch - 1} epoch(s) before it, but the same "
            "settings would diverge again: train with other settings (e.g. a lower "
            "--learning-rate) in another --out-dir"
        ) from error
    except OSError as error:  # e.g. a full disk: every finished epoch stays resumable
        failure = OSError(
            f"writing the run folder {out_dir} failed: {error.strerror or error}. Every "
            "finished epoch is kept: make room and run the same command again to resume"
        )
        failure.errno = error.errno
        raise failure from error
    finally:  # fit leaves the log open when it is interrupted
        callbacks.close_logs(run_callbacks)


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


def learning_rates(config: TrainConfig, steps_per_epoch: int, *, replicas: int = 1) -> list[float]:
    """The learning rate at the end of each epoch of a run (the schedule the trainer builds).

    Args:
        config: The run's configuration.
        steps_per_epoch: Optimiser steps per epoch.
        replicas: Devices (the peak is scaled linearly with them).

    Returns:
        One value per epoch.
    """
    rates = schedule(config, steps_per_epoch, replicas)
    return [float(rates(steps_per_epoch * (epoch + 1))) for epoch in range(config.epochs)]


def load_trained_model(
    out_dir: str | os.PathLike[str],
    *,
    weights: str = "best",
    backbone: BuildBackbone = resnet_backbone,
) -> keras.Model:
    """Rebuild the model of a finished run and load its weights, for inference.

    Args:
        out_dir: The run folder (holds ``config.json`` and ``dataset.json``).
        weights: ``"best"`` (highest validation accuracy) or ``"last"`` (the latest backup).
        backbone: Builds the network the run trained (default: :func:`resnet_backbone`).

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
    record = upgrade_record(json.loads((out_dir / "config.json").read_text()))
    config = TrainConfig(**{**record, "levels": tuple(record["levels"])})
    dataset = json.loads((out_dir / "dataset.json").read_text())
    network = backbone(config, len(dataset["class_ids"]), None)
    built = models.build_training_models(
        network,
        np.zeros((1, *dataset.get("image_shape", network.input_shape[1:])), dtype=np.uint8),
        dataset["mean"],
        dataset["std"],
        padding=config.augment_padding,
        mix=config.mix != "none",
    )
    with warnings.catch_warnings():
        # The files also hold the optimizer's state, which an inference model does not need.
        warnings.filterwarnings("ignore", message=".*optimizer.*")
        built.train.load_weights(files[weights])
    return built.inference
