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

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from dlnotes.training.metrics import Fitted, Plan, run_metrics

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
        metrics = run_metrics(
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
    ) -> Plan:
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
        return Plan(
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
        plan: Plan,
        scope: Any,
    ) -> Fitted:
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
        fitted = self._fit_and_evaluate(out_dir, dataset, group, plan, built)
        return Fitted(plan, int(network.count_params()), build_seconds, *fitted)

    def _fit_and_evaluate(
        self,
        out_dir: Path,
        dataset: Dataset,
        group: multihost.ProcessGroup,
        plan: Plan,
        built: Any,
    ) -> tuple[float, float, callbacks.Throughput, dict[str, float], dict[str, float] | None]:
        """Fit and evaluate: the seconds of each, the throughput meter and the evaluations."""
        config = self.config
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
        evaluate_seconds = time.perf_counter() - evaluate_started
        return fit_seconds, evaluate_seconds, throughput, single, averaged

    def _announce(self, dataset: Dataset, plan: Plan, parameters: int, seconds: float) -> None:
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
