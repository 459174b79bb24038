"""One training run, step by step: :func:`train` strings the parts together.

1. check the options (:func:`check_options`; the settings check themselves,
   :meth:`TrainConfig.validate`), before anything is created or written;
2. connect the processes of a multi-process run (:mod:`dlnotes.training.multihost`);
3. open, lock and check the run folder (:mod:`dlnotes.training.run_folder`) against the listed
   data (:mod:`dlnotes.training.datasets`), then decode the data;
4. build and compile the models inside the distribution's scope, record the run, fit and
   evaluate (:mod:`dlnotes.training.fit`);
5. write ``metrics.json``.

The command line is :mod:`dlnotes.training.cli`. Another dataset or network plugs in through
``train``'s ``source`` and ``backbone`` arguments.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlnotes import runtime
from dlnotes.training import callbacks, fit, multihost, optimization, run_folder
from dlnotes.training.config import DISTRIBUTE_CHOICES, RunOptions, TrainConfig, config_record
from dlnotes.training.datasets import (
    DataFiles,
    Dataset,
    DataSource,
    TinyImageNet,
    training_batches,
    validation_batches,
)

MAX_STEPS_PER_EXECUTION = 10_000
MAX_DECODE_WORKERS = 1024
MAX_LOGICAL_CPUS = 64


def train(
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike[str],
    data_dir: str | os.PathLike[str] | None = None,
    options: RunOptions | None = None,
    source: DataSource | None = None,
    backbone: fit.BuildBackbone = fit.resnet_backbone,
    started: float | None = None,
) -> dict[str, Any]:
    """Train resumably in ``out_dir`` and return the metrics written to ``metrics.json``.

    Running it again on the same folder (after an interruption, even ``kill -9``) resumes after
    the last finished epoch; with other settings or data it is refused.

    Args:
        config: The run's settings.
        out_dir: The run folder.
        data_dir: The dataset's root (default: where ``source`` finds it; for Tiny ImageNet,
            ``DLNOTES_DATA_DIR`` or the cache, downloaded once).
        options: Devices, processes and input options (default: one device, JPEG files).
        source: Where the images come from (default: :class:`TinyImageNet`).
        backbone: Builds the network (default: :func:`dlnotes.training.fit.resnet_backbone`).
        started: ``time.perf_counter()`` value the wall time counts from (default: now).

    Returns:
        The metrics.

    Raises:
        ValueError: For invalid settings or backend, a run folder holding other settings or
            damaged (:class:`dlnotes.training.manifest.RunFolderDamaged`), or a loss that became
            NaN or infinite.
        FileNotFoundError: For a missing dataset.
        dlnotes.runtime.storage.FolderInUse: If another trainer is using ``out_dir``.
        OSError: If the run folder cannot be written (e.g. a full disk), naming the path.
    """
    started = time.perf_counter() if started is None else started
    options = RunOptions() if options is None else options
    config.validate()  # every setting is checked before the run folder is created or read
    check_options(options)
    run = _Run(
        config,
        options,
        data_dir=None if data_dir is None else Path(data_dir),
        source=TinyImageNet(options.tfrecords) if source is None else source,
        backbone=backbone,
        started=started,
    )
    # Several processes connect here (one: nothing happens); errors before training are shared.
    group = multihost.start(multihost.process_settings(options))
    with group.failures_shared(), run_folder.open_run_folder(Path(out_dir), group) as folder:
        return run.train_in(folder, group)


def check_options(options: RunOptions) -> None:
    """Check the backend and the run's options that are not part of its settings.

    Called before anything is created or written, with :meth:`TrainConfig.validate`.

    Args:
        options: The options.

    Raises:
        ValueError: Naming the option and the value, or ``KERAS_BACKEND``.
    """
    backend = runtime.check_keras_backend(runtime.TRAINING_BACKENDS, purpose="training")
    ranges = [
        ("--steps-per-execution", options.steps_per_execution, 1, MAX_STEPS_PER_EXECUTION),
        ("--decode-workers", options.decode_workers, 1, MAX_DECODE_WORKERS),
        ("--logical-cpus", options.logical_cpus, 0, MAX_LOGICAL_CPUS),
    ]
    for option, value, low, high in ranges:
        if value is not None and not low <= value <= high:
            raise ValueError(f"{option} must be an integer from {low} to {high:,}, got {value}")
    if options.logical_cpus and backend != "tensorflow":
        raise ValueError(
            f"--logical-cpus splits the CPU with TensorFlow: it needs KERAS_BACKEND=tensorflow, "
            f"not {backend}"
        )
    if options.distribute not in DISTRIBUTE_CHOICES:
        raise ValueError(
            f"distribute must be one of {DISTRIBUTE_CHOICES}, got {options.distribute!r}"
        )
    if options.distribute != "none" and backend not in ("tensorflow", "jax"):
        raise ValueError(
            f"--distribute {options.distribute} needs the JAX or TensorFlow backend, not {backend}"
        )
    if options.tfrecords is not None and backend != "tensorflow":
        raise ValueError(
            f"--tfrecords reads shards with tf.data and needs KERAS_BACKEND=tensorflow, not "
            f"{backend}"
        )
    multihost.process_settings(options)  # the processes' flags and variables


@dataclass(frozen=True)
class _Plan:
    """How the run is spread and stepped, once the devices are known."""

    replicas: int
    processes: int
    global_batch: int
    steps_per_epoch: int
    steps_per_execution: int
    first_epoch: int
    policy: str
    compiled: bool  # XLA everywhere (on a GPU), else Keras' choice


@dataclass(frozen=True)
class _Fitted:
    """What the fit and the evaluation measured, for ``metrics.json``."""

    plan: _Plan
    parameters: int
    build_seconds: float
    fit_seconds: float
    evaluate_seconds: float
    throughput: callbacks.Throughput
    single: dict[str, float]
    averaged: dict[str, float] | None


@dataclass(frozen=True)
class _Run:
    """One call of :func:`train`: its inputs, and the steps that use them."""

    config: TrainConfig
    options: RunOptions
    data_dir: Path | None
    source: DataSource
    backbone: fit.BuildBackbone
    started: float

    def train_in(self, out_dir: Path, group: multihost.ProcessGroup) -> dict[str, Any]:
        """Check the folder, decode the data, fit and evaluate, and write ``metrics.json``."""
        config = self.config
        root = self.source.root(self.data_dir, config)
        files = self.source.files(root, config)
        first_epoch = run_folder.check_resumable(out_dir, config, files)
        _split_cpu(self.options.logical_cpus)
        print(runtime.describe(f"recipe {config.profile}"), flush=True)
        keras = runtime.import_quietly("keras")
        compilation_cache = runtime.enable_compilation_cache()
        if compilation_cache is not None:
            print(f"compiled programs are cached in {compilation_cache}", flush=True)
        workers = self.options.decode_workers or min(os.cpu_count() or 1, 32)
        dataset = self.source.load(root, config, files, workers)
        print(
            f"images ready in {dataset.decode_seconds:.1f} s ({dataset.decode_cache})", flush=True
        )
        keras.utils.set_random_seed(config.seed)
        with fit.distribution(self.options.distribute) as (replicas, scope):
            plan = self._plan(out_dir, dataset, files, group, first_epoch, replicas)
            fitted = self._fit(out_dir, dataset, root, group, plan, scope)
        metrics = _metrics(
            config,
            dataset,
            fitted,
            out_dir,
            started=self.started,
            compilation_cache=compilation_cache,
            distribute=self.options.distribute,
        )
        run_folder.record_metrics(out_dir, metrics)
        print(json.dumps(metrics), flush=True)
        return metrics

    def _plan(
        self,
        out_dir: Path,
        dataset: Dataset,
        files: DataFiles,
        group: multihost.ProcessGroup,
        first_epoch: int,
        replicas: int,
    ) -> _Plan:
        """Check the batch and the devices; with several processes, agree on the start."""
        config = self.config
        global_batch = config.batch_size * replicas
        if global_batch > len(dataset.train_images):
            raise ValueError(
                f"batch of {global_batch} is larger than the "
                f"{len(dataset.train_images)} training images"
            )
        run_folder.check_devices(out_dir, replicas, global_batch)
        capability = runtime.gpu_compute_capability()
        steps_per_execution = self.options.steps_per_execution or (
            32 if capability is not None else 1
        )
        # Several processes: wait for all, check they agree, and start each where process 0's
        # run folder says (the others' folders are private and start empty).
        settings = json.dumps([config_record(config), self.options.distribute, steps_per_execution])
        identity = {"settings": settings, "data": files.fingerprint}
        return _Plan(
            replicas=replicas,
            processes=group.count,
            global_batch=global_batch,
            steps_per_epoch=len(dataset.train_images) // global_batch,
            steps_per_execution=steps_per_execution,
            first_epoch=group.settle(first_epoch, identity, out_dir / "backup"),
            policy=optimization.precision_policy(capability),
            compiled=capability is not None,
        )

    def _fit(
        self,
        out_dir: Path,
        dataset: Dataset,
        root: Path,
        group: multihost.ProcessGroup,
        plan: _Plan,
        scope: Any,
    ) -> _Fitted:
        """Build the models, record the run, fit and evaluate (inside the distribution)."""
        config = self.config
        build_started = time.perf_counter()
        with scope:
            network, built = fit.build_models(
                config,
                dataset,
                replicas=plan.replicas,
                steps_per_epoch=plan.steps_per_epoch,
                policy=plan.policy,
                jit_compile=True if plan.compiled else "auto",
                steps_per_execution=plan.steps_per_execution,
                backbone=self.backbone,
            )
        build_seconds = time.perf_counter() - build_started
        # The first write into the run folder: everything above only read it.
        run_folder.record_run(
            out_dir, config, dataset, root, replicas=plan.replicas, global_batch=plan.global_batch
        )
        callbacks.truncate_log(out_dir / "history.csv", plan.first_epoch)
        self._announce(dataset, plan, network.count_params(), build_seconds)
        throughput = callbacks.Throughput(
            plan.global_batch, images_per_epoch=plan.steps_per_epoch * plan.global_batch, echo=True
        )
        share = {"process_index": group.index, "process_count": group.count}

        def val_batches(mixing: bool = config.mix != "none") -> Any:
            return validation_batches(dataset, plan.global_batch, mixing_inputs=mixing, **share)

        fit_started = time.perf_counter()
        fit.fit(
            built.train,
            training_batches(
                config, dataset, plan.global_batch, first_epoch=plan.first_epoch, **share
            ),
            val_batches(),
            out_dir=out_dir,
            epochs=config.epochs,
            extra_callbacks=[throughput],
        )
        fit_seconds = time.perf_counter() - fit_started
        evaluate_started = time.perf_counter()
        single, averaged = _evaluate(built, config, val_batches)
        return _Fitted(
            plan=plan,
            parameters=int(network.count_params()),
            build_seconds=build_seconds,
            fit_seconds=fit_seconds,
            evaluate_seconds=time.perf_counter() - evaluate_started,
            throughput=throughput,
            single=single,
            averaged=averaged,
        )

    def _announce(self, dataset: Dataset, plan: _Plan, parameters: int, seconds: float) -> None:
        """Print where training starts and what it trains."""
        if plan.first_epoch:
            print(f"resuming after epoch {plan.first_epoch} of {self.config.epochs}", flush=True)
        print(
            f"{len(dataset.class_ids)} classes, {len(dataset.train_images)} training and "
            f"{len(dataset.val_images)} validation images, batch {plan.global_batch} on "
            f"{plan.replicas} replica(s), {plan.steps_per_epoch} steps per epoch, precision "
            f"{plan.policy}, {parameters:,} parameters, built in {seconds:.1f} s, "
            f"{time.perf_counter() - self.started:.1f} s after the start",
            flush=True,
        )


def _split_cpu(logical_cpus: int) -> None:
    """Split the CPU into logical devices (TensorFlow; 0: leave it whole)."""
    if not logical_cpus:
        return
    tf = runtime.import_quietly("tensorflow")
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * logical_cpus
    )


def _evaluate(
    built: Any, config: TrainConfig, val_batches: Any
) -> tuple[dict[str, float], dict[str, float] | None]:
    """The final evaluation: single view, and averaged with the mirror image if configured."""
    single = built.train.evaluate(val_batches(), verbose=0, return_dict=True)
    averaged = (
        built.flip_averaged.evaluate(val_batches(False), verbose=0, return_dict=True)
        if config.test_time_flip
        else None
    )
    return single, averaged


def _metrics(
    config: TrainConfig,
    dataset: Dataset,
    fitted: _Fitted,
    out_dir: Path,
    *,
    started: float,
    compilation_cache: Path | None,
    distribute: str,
) -> dict[str, Any]:
    """What ``metrics.json`` records: the accuracy, where the time went, the machine, the data.

    A resumed run with nothing left to train keeps the rate and epoch times measured before.
    """
    history = callbacks.read_log(out_dir / "history.csv")
    previous = run_folder.previous_metrics(out_dir)
    rate: float | None = fitted.throughput.steady_rate
    if rate is None or math.isnan(rate):
        rate = previous.get("train_images_per_second")
    epochs = fitted.throughput.epoch_seconds
    single, averaged, plan = fitted.single, fitted.averaged, fitted.plan
    final = averaged if averaged is not None else single
    return {
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
        "build_seconds": fitted.build_seconds,
        "fit_seconds": fitted.fit_seconds,
        "evaluate_seconds": fitted.evaluate_seconds,
        "decode_cache": dataset.decode_cache,
        "compilation_cache": None if compilation_cache is None else str(compilation_cache),
        **_versions(),
        "device": runtime.device_description(),
        "distribute": distribute,
        "replicas": plan.replicas,
        "processes": plan.processes,
        "global_batch_size": plan.global_batch,
        "steps_per_execution": plan.steps_per_execution,
        "profile": config.profile,
        "precision": plan.policy,
        "parameters": fitted.parameters,
        "num_classes": len(dataset.class_ids),
        "train_images": len(dataset.train_images),
        "val_images": len(dataset.val_images),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


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
