"""Training helpers: precision, optimiser and schedule, callbacks, sanity checks, logs.

Everything is backend-agnostic Keras 3; the TensorFlow-only piece (``tf.distribute``) is imported
only when asked for.
"""

from __future__ import annotations

import csv
import errno
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from dlnotes import calculus, runtime, storage


def precision_policy(compute_capability: tuple[int, int] | None) -> str:
    """Pick the Keras dtype policy for an accelerator.

    * bfloat16 on NVIDIA GPUs of compute capability 8.0 or newer (A100, L4, H100) — same range as
      float32, no loss scaling needed;
    * float16 (with loss scaling) on 7.x cards such as the T4 of free Colab, which have float16
      but no bfloat16 tensor cores;
    * float32 on CPUs and older GPUs.

    Args:
        compute_capability: ``(major, minor)`` of the GPU, or None for a CPU.

    Returns:
        ``"mixed_bfloat16"``, ``"mixed_float16"`` or ``"float32"``.
    """
    if compute_capability is None:
        return "float32"
    major = compute_capability[0]
    if major >= 8:
        return "mixed_bfloat16"
    if major == 7:
        return "mixed_float16"
    return "float32"


def gpu_compute_capability() -> tuple[int, int] | None:
    """Compute capability of the first GPU of the active Keras backend, or None without a GPU."""
    backend = runtime.keras_backend()
    try:
        if backend == "tensorflow":
            tf = runtime.import_quietly("tensorflow")
            gpus = tf.config.list_physical_devices("GPU")
            if gpus:
                return tuple(
                    tf.config.experimental.get_device_details(gpus[0])["compute_capability"]
                )
        elif backend == "jax":
            jax = runtime.import_quietly("jax")
            gpus = [d for d in jax.devices() if d.platform == "gpu"]
            if gpus:
                major, minor = str(gpus[0].compute_capability).split(".")[:2]
                return int(major), int(minor)
        elif backend == "torch":
            torch = runtime.import_quietly("torch")
            if torch.cuda.is_available():
                return tuple(torch.cuda.get_device_capability(0))
    except (ImportError, KeyError, AttributeError, ValueError):
        return None
    return None


# Dense tensor-core peaks from the vendors' datasheets, in FLOP/s: (16-bit, 32-bit/TF32).
PEAK_FLOPS = {
    "H100": (989e12, 494.5e12),
    "H200": (989e12, 494.5e12),
    "A100": (312e12, 156e12),
    "L4": (121e12, 60e12),
    "T4": (65e12, 8.1e12),
}


def peak_flops(device: str, precision: str) -> float | None:
    """Datasheet peak of an NVIDIA GPU for a precision, to compute model-FLOP utilisation.

    Args:
        device: Device description containing the model name, e.g. ``"NVIDIA H100 80GB HBM3"``.
        precision: A dtype policy name; ``"mixed_*"`` counts as 16-bit, anything else as 32-bit
            (TF32 tensor cores on Ampere and newer).

    Returns:
        FLOP/s, or None for an unknown device (e.g. a CPU).
    """
    for name, (half, single) in PEAK_FLOPS.items():
        if name in device:
            return half if precision.startswith("mixed") else single
    return None


def learning_rate_schedule(
    *,
    peak: float,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 5,
    initial_scale: float = 0.01,
    final_scale: float = 0.01,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from ``initial_scale·peak`` to ``peak``, cosine decay to ``final_scale·peak``.

    Keras' ``CosineDecay`` with its ``warmup_target`` does exactly this. The defaults are the source
    notes': peak 1e-3, start and end at 1 % of the peak, 5 warm-up epochs.

    Args:
        peak: Largest learning rate (> 0).
        steps_per_epoch: Optimiser steps per epoch (≥ 1).
        epochs: Total epochs, warm-up included (≥ 1).
        warmup_epochs: Epochs of linear warm-up (0 ≤ warmup_epochs < epochs).
        initial_scale: Learning rate at step 0, as a fraction of the peak.
        final_scale: Learning rate at the last step, as a fraction of the peak.

    Returns:
        The schedule (a function of the step).

    Raises:
        ValueError: For out-of-range arguments.
    """
    if not peak > 0:
        raise ValueError(f"peak must be positive, got {peak!r}")
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(
            f"steps_per_epoch and epochs must be at least 1, got {steps_per_epoch}, {epochs}"
        )
    if not 0 <= warmup_epochs < epochs:
        raise ValueError(f"warmup_epochs must be in [0, {epochs}), got {warmup_epochs!r}")
    for name, scale in (("initial_scale", initial_scale), ("final_scale", final_scale)):
        if not 0 <= scale <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {scale!r}")
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    total_steps = epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak * initial_scale if warmup_steps else peak,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=final_scale,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(
    name: str,
    learning_rate: Any,
    *,
    weight_decay: float | None = None,
    momentum: float = 0.9,
) -> keras.optimizers.Optimizer:
    """Build ``"sgd"`` (Nesterov momentum), ``"adam"`` or ``"adamw"``, with decoupled weight decay.

    Weight decay is not applied to batch-normalisation parameters and biases.

    Args:
        name: Optimiser name.
        learning_rate: A float or a schedule.
        weight_decay: Decoupled weight decay, or None.
        momentum: Momentum of SGD.

    Returns:
        The optimiser.

    Raises:
        ValueError: For an unknown name or a negative weight decay.
    """
    if weight_decay is not None and weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay!r}")
    if name == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate, momentum=momentum, nesterov=True, weight_decay=weight_decay
        )
    elif name == "adam":
        optimizer = keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 0.0)
    else:
        raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {name!r}")
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def compile_classifier(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    *,
    label_smoothing: float = 0.0,
    policy: str = "float32",
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
    soft_targets: bool = False,
) -> keras.Model:
    """Compile a logits model with top-1 and top-5 accuracy.

    Label smoothing needs one-hot targets in Keras' loss, so with smoothing — or with
    ``soft_targets``, e.g. the blended targets of MixUp/CutMix — the targets are expected as
    probability rows (see :func:`one_hot`); otherwise, sparse integer labels are used. The loss is
    averaged with the sample weights (``"mean_with_sample_weight"``), so zero-weight padding
    leaves both the loss and the metrics of an evaluation unchanged.

    Args:
        model: Model producing logits.
        optimizer: The optimiser; wrapped in a ``LossScaleOptimizer`` for ``mixed_float16``.
        label_smoothing: In [0, 1).
        policy: The dtype policy the model was built with.
        jit_compile: Passed to ``compile`` (XLA).
        steps_per_execution: Training steps per compiled call (fewer host round trips).
        soft_targets: Expect probability rows as targets even without label smoothing.

    Returns:
        The compiled model.

    Raises:
        ValueError: For label smoothing outside [0, 1).
    """
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    if label_smoothing or soft_targets:
        loss: keras.losses.Loss = keras.losses.CategoricalCrossentropy(
            from_logits=True,
            label_smoothing=label_smoothing,
            reduction="mean_with_sample_weight",
        )
        metrics = [
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
        ]
    else:
        loss = keras.losses.SparseCategoricalCrossentropy(
            from_logits=True, reduction="mean_with_sample_weight"
        )
        metrics = [
            keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"),
        ]
    model.compile(
        optimizer=optimizer,
        loss=loss,
        weighted_metrics=metrics,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def one_hot(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels → float32 one-hot rows."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
        )
    return np.eye(num_classes, dtype=np.float32)[labels]


class Throughput(keras.callbacks.Callback):
    """Measure training images per second per epoch (validation excluded) and epoch times.

    It deliberately has no per-batch hook: any callback with one makes Keras fetch the metrics
    after every compiled execution, which synchronises host and accelerator once per call.

    Args:
        batch_size: Images per step.
        images_per_epoch: Training images per epoch (the last batch may be partial).

    Attributes:
        rates: Training images per second of each epoch (validation excluded).
        epoch_seconds: Wall time of each whole epoch, validation included; the first one also
            holds the compilation of the training and evaluation steps.
    """

    def __init__(self, batch_size: int, images_per_epoch: int | None = None) -> None:
        super().__init__()
        self.batch_size = batch_size
        self.images_per_epoch = images_per_epoch
        self.rates: list[float] = []
        self.epoch_seconds: list[float] = []
        self._start = 0.0
        self._open = False

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start, self._open = time.perf_counter(), True

    def _close(self) -> None:
        if not self._open:
            return
        self._open = False
        images = self.images_per_epoch
        if images is None:
            images = int(self.params.get("steps") or 0) * self.batch_size
        if images:
            self.rates.append(images / (time.perf_counter() - self._start))

    def on_test_begin(self, logs: dict | None = None) -> None:
        self._close()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._close()
        self.epoch_seconds.append(time.perf_counter() - self._start)

    @property
    def steady_rate(self) -> float:
        """Mean rate over the epochs after the first (which includes compilation)."""
        if not self.rates:
            return float("nan")
        return float(np.mean(self.rates[1:] if len(self.rates) > 1 else self.rates))


# The run folder's checkpoint files (see :class:`RunBackup`).
BACKUP_WEIGHTS = "latest.weights.h5"
BACKUP_METADATA = "training_metadata.json"
STAGED_WEIGHTS = "next.weights.h5"
STAGED_BEST = "next-best.weights.h5"
PENDING_METADATA = "next_metadata.json"
KILL_POINT_ENV = "DLNOTES_TEST_KILL_AT"
"""Test hook: ``"POINT:EPOCH"`` makes the process SIGKILL itself at that point of the backup of
that (0-based) epoch; POINT is ``staged``, ``committed`` or ``rolling`` (see :class:`RunBackup`)."""


def _kill_point(point: str, epoch: int | None) -> None:
    if epoch is not None and os.environ.get(KILL_POINT_ENV) == f"{point}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


def _roll_forward(backup_dir: Path, epoch: int | None = None) -> None:
    """Finish a committed backup (move its files into place) or discard an uncommitted one."""
    pending = backup_dir / PENDING_METADATA
    if pending.is_file():
        metadata = json.loads(pending.read_text())
        for source, target in metadata.get("moves", {}).items():
            if (backup_dir / source).is_file():  # else moved already, before an interruption
                os.replace(backup_dir / source, backup_dir / target)
            _kill_point("rolling", epoch)
        os.replace(pending, backup_dir / BACKUP_METADATA)
    for leftover in (STAGED_WEIGHTS, STAGED_BEST):
        (backup_dir / leftover).unlink(missing_ok=True)
    for partial in backup_dir.glob("*.partial"):
        partial.unlink()


def recover_backup(backup_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Bring a backup folder written by :class:`RunBackup` to its last committed state.

    A backup that was committed but not yet moved into place (the process died in between) is
    finished; files of an uncommitted one are deleted. Running it twice changes nothing more.

    Args:
        backup_dir: The backup folder (missing is fine).

    Returns:
        The committed metadata (``epoch``: finished epochs; ``best``: the best checkpoint's
        monitored value, or None), or ``{}`` when there is no backup to resume from.

    Raises:
        ValueError: If the metadata cannot be read (naming the file).
        OSError: If the folder cannot be written.
    """
    backup_dir = Path(backup_dir)
    if not backup_dir.is_dir():
        return {}
    _roll_forward(backup_dir)
    metadata_path = backup_dir / BACKUP_METADATA
    if not metadata_path.is_file():
        return {}
    try:
        metadata = json.loads(metadata_path.read_text())
        int(metadata["epoch"])
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(
            f"the backup's metadata {metadata_path} is damaged ({error}); delete {backup_dir} "
            "to train from the start"
        ) from error
    return metadata


def resumed_epoch(backup_dir: str | os.PathLike[str]) -> int:
    """The epoch training resumes from (0 when there is no backup).

    Finishes or discards an interrupted backup first (:func:`recover_backup`).
    """
    return int(recover_backup(backup_dir).get("epoch", 0))


class RunBackup(keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` whose files are never half-written, committed with the best checkpoint.

    Keras' ``BackupAndRestore`` overwrites ``latest.weights.h5`` in place and then its metadata; a
    process killed during either write leaves a backup that cannot be loaded (its
    ``double_checkpoint`` mode copies the previous files first, but does not cover the first
    backup nor a torn metadata file). Here, at the end of each epoch:

    1. the weights (and optimiser state) are saved to ``next.weights.h5``; the
       ``ModelCheckpoint`` given as ``best_checkpoint``, which runs just before this callback, has
       saved ``next-best.weights.h5`` if the epoch improved on the best;
    2. the metadata — finished epochs, the best monitored value, the files to move — is written
       to ``next_metadata.json`` under a temporary name and renamed: **this rename is the
       commit**;
    3. the files are moved into place (``latest.weights.h5``, ``best.weights.h5``,
       ``training_metadata.json``).

    On resuming, :func:`recover_backup` finishes step 3 of a committed backup or deletes the
    files of an uncommitted one; the weights and the optimiser state are restored, and so is the
    best checkpoint's threshold, so ``best.weights.h5`` stays the best epoch's weights across
    resumes. A killed run loses at most the epoch in progress.

    Args:
        backup_dir: Folder of the backup.
        best_checkpoint: A ``ModelCheckpoint(save_best_only=True)`` writing to
            ``backup_dir/next-best.weights.h5``, placed just before this callback, or None.
        best_path: Where the best weights go (with ``best_checkpoint``).

    Raises:
        ValueError: If only one of ``best_checkpoint`` and ``best_path`` is given, or the
            checkpoint writes elsewhere than the staged name.
    """

    def __init__(
        self,
        backup_dir: str | os.PathLike[str],
        *,
        best_checkpoint: keras.callbacks.ModelCheckpoint | None = None,
        best_path: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=False)
        if (best_checkpoint is None) != (best_path is None):
            raise ValueError("give both best_checkpoint and best_path, or neither")
        self.backup_path = Path(backup_dir)
        staged_best = self.backup_path / STAGED_BEST
        if best_checkpoint is not None and Path(best_checkpoint.filepath) != staged_best:
            raise ValueError(
                f"best_checkpoint must write to {staged_best}, got {best_checkpoint.filepath}"
            )
        self.best_checkpoint = best_checkpoint
        self.best_path = None if best_path is None else Path(best_path)
        self._best_at_epoch_begin: Any = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        metadata = recover_backup(self.backup_path)
        if not metadata:
            return
        if not self.model.built:
            raise ValueError("RunBackup needs a built model before fit()")
        weights = self.backup_path / BACKUP_WEIGHTS
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        try:
            self.model.load_weights(str(weights))
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ValueError(
                f"the backup {weights} cannot be loaded ({error}); delete {self.backup_path} "
                "to train from the start"
            ) from error
        self.model._initial_epoch = int(metadata["epoch"])
        if self.best_checkpoint is not None and metadata.get("best") is not None:
            self.best_checkpoint.best = float(metadata["best"])

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        if self.best_checkpoint is not None:
            self._best_at_epoch_begin = self.best_checkpoint.best

    def _save_model(self) -> None:
        epoch = self._current_epoch - 1  # the epoch just finished
        self.backup_path.mkdir(parents=True, exist_ok=True)
        staged = self.backup_path / STAGED_WEIGHTS
        try:
            self.model.save_weights(str(staged), overwrite=True)
        except (OSError, RuntimeError) as error:
            staged.unlink(missing_ok=True)
            raise OSError(
                getattr(error, "errno", None), f"could not write {staged}: {error}"
            ) from error
        _kill_point("staged", epoch)
        moves = {STAGED_WEIGHTS: BACKUP_WEIGHTS}
        best = None
        if self.best_checkpoint is not None and self.best_path is not None:
            best = self.best_checkpoint.best
            if best != self._best_at_epoch_begin:  # the checkpoint saved this epoch
                moves[STAGED_BEST] = os.path.relpath(self.best_path, self.backup_path)
        storage.write_json(
            self.backup_path / PENDING_METADATA,
            {
                "epoch": self._current_epoch,
                "batch": 0,
                "best": None if best is None else float(best),
                "moves": moves,
            },
        )
        _kill_point("committed", epoch)
        _roll_forward(self.backup_path, epoch)


class FreeSpaceCheck(keras.callbacks.Callback):
    """Stop with a clear error before an epoch's checkpoints could fill the disk.

    HDF5 does not recover from a full disk in the middle of writing a weights file: h5py reports
    errors while its objects are freed, and the interpreter then crashes when it exits (a
    segmentation fault, reproduced with Keras 3.15.1 and h5py on a full tmpfs). So at the end of
    each epoch, before any checkpoint is written, this callback checks that the run folder has
    room for two more weights files (the best and the backup) plus a margin, and otherwise raises
    ``OSError`` naming the folder. The backup of the previous epoch is untouched, so the same
    command resumes once there is room.

    Args:
        out_dir: The run folder.
        margin: Bytes to keep free beyond the checkpoints.
    """

    def __init__(self, out_dir: str | os.PathLike[str], *, margin: int = 1 << 20) -> None:
        super().__init__()
        self.out_dir = Path(out_dir)
        self.margin = margin

    def checkpoint_bytes(self) -> int:
        """Size of one weights file: the last backup's, or an upper estimate before the first."""
        latest = self.out_dir / "backup" / BACKUP_WEIGHTS
        if latest.is_file():
            return latest.stat().st_size
        # The trained state: weights, floating-point statistics (batch norm) and the optimiser's
        # slots — not other state such as images kept on the device, which are not saved.
        variables = list(self.model.trainable_weights) + [
            v for v in self.model.non_trainable_weights if "float" in str(v.dtype)
        ]
        if self.model.optimizer is not None:
            variables += list(self.model.optimizer.variables)
        data_bytes = sum(
            math.prod(v.shape) * np.dtype(keras.backend.standardize_dtype(v.dtype)).itemsize
            for v in variables
        )
        return int(data_bytes) + 8192 * len(variables) + (1 << 16)  # HDF5's per-array overhead

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        needed = 2 * self.checkpoint_bytes() + self.margin
        free = shutil.disk_usage(self.out_dir).free
        if free < needed:
            raise OSError(
                errno.ENOSPC,
                f"no room for the checkpoints of epoch {epoch + 1} in {self.out_dir}: "
                f"{free / 2**20:.1f} MiB free, about {needed / 2**20:.1f} MiB needed",
            )


def truncate_log(log_path: str | os.PathLike[str], first_epoch: int) -> int:
    """Keep exactly one row for each epoch before ``first_epoch`` in a ``CSVLogger`` file.

    Rewritten atomically. Drops the rows of epochs that will be trained again (a run killed after
    logging an epoch but before its backup was committed would otherwise log that epoch twice),
    a row cut short by a kill, repeated headers and repeated epochs.

    Args:
        log_path: The CSV log (missing is fine).
        first_epoch: The epoch training resumes from.

    Returns:
        Number of rows kept.

    Raises:
        ValueError: If the file is not a ``CSVLogger`` log (its header does not start with
            ``epoch``).
    """
    log_path = Path(log_path)
    if not log_path.is_file():
        return 0
    with log_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows:
        return 0
    header = rows[0]
    if not header or header[0] != "epoch":
        raise ValueError(f"{log_path} is not a training log: its header is {header!r}")
    kept: dict[int, list[str]] = {}
    for row in rows[1:]:
        try:
            epoch = int(row[0])
        except (ValueError, IndexError):  # a repeated header or a damaged row
            continue
        if len(row) == len(header) and all(row) and epoch < first_epoch:
            kept.setdefault(epoch, row)
    partial = log_path.with_suffix(".csv.partial")
    with partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(kept[epoch] for epoch in sorted(kept))
    os.replace(partial, log_path)
    return len(kept)


def read_log(log_path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """Read a ``CSVLogger`` file into ``{metric: [value per epoch]}`` (for plotting)."""
    with Path(log_path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return {}
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def _tensorboard_available() -> bool:
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "tensorboard"))


def training_callbacks(
    out_dir: str | os.PathLike[str], *, tensorboard: bool = True
) -> list[keras.callbacks.Callback]:
    """Free-space check, best checkpoint, resumable backup, CSV log and TensorBoard.

    The ``ModelCheckpoint`` saves the best weights under a staged name in ``out_dir/backup``;
    :class:`RunBackup` commits them to ``out_dir/best.weights.h5`` together with the backup, so
    that no file of the run folder is ever half-written and the best checkpoint's threshold
    survives a resume. The CSV logger comes before the backup: if a run dies between the two, the
    epoch is logged but not backed up, and :func:`truncate_log` removes the row before it is
    trained again.

    Args:
        out_dir: Run folder.
        tensorboard: Add a TensorBoard callback (logs in ``out_dir/tensorboard``) when TensorFlow
            and TensorBoard are installed (Keras writes its summaries through ``tf.summary``;
            on a JAX-only machine the callback is left out).

    Returns:
        The callbacks, in the order they must run.
    """
    out_dir = Path(out_dir)
    backup = out_dir / "backup"
    best = keras.callbacks.ModelCheckpoint(
        str(backup / STAGED_BEST),
        monitor="val_accuracy",
        mode="max",
        save_best_only=True,
        save_weights_only=True,
    )
    callbacks: list[keras.callbacks.Callback] = [
        FreeSpaceCheck(out_dir),
        best,
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        RunBackup(backup, best_checkpoint=best, best_path=out_dir / "best.weights.h5"),
    ]
    if tensorboard and _tensorboard_available():
        callbacks.append(
            keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), write_graph=False)
        )
    return callbacks


@dataclass(frozen=True)
class SanityReport:
    """Initial loss and accuracy against what an untrained classifier should give."""

    initial_loss: float
    expected_loss: float
    initial_accuracy: float
    expected_accuracy: float

    @property
    def ok(self) -> bool:
        """Loss within 20 % of ln(C); accuracy at most 3× chance."""
        return (
            abs(self.initial_loss - self.expected_loss) < 0.2 * self.expected_loss
            and self.initial_accuracy <= 3 * self.expected_accuracy + 1e-9
        )


def initial_sanity(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    batch_size: int = 256,
) -> SanityReport:
    """Loss and accuracy of an untrained model: the loss should be ≈ ln(C), the accuracy ≈ 1/C.

    The logits come from forward passes in **training mode**, as in the first steps of training:
    batch normalisation then normalises with each batch's statistics. In inference mode an
    untrained network would use its initial moving statistics (mean 0, variance 1), which do not
    normalise anything, so the activations and the logits would grow layer after layer and the
    loss would say nothing about the model training starts from. The passes go through
    ``stateless_call``, so nothing in the model changes (no moving statistics are updated).

    Args:
        model: An untrained model producing logits.
        images: Inputs.
        labels: Integer labels.
        num_classes: Number of classes C.
        batch_size: Images per forward pass (batch statistics need a few dozen).

    Returns:
        The report.

    Raises:
        ValueError: If images and labels differ in length or a label is outside [0, C).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"need as many labels as images (at least one), got {len(labels)} and {len(images)}"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must be in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    losses, correct = [], 0
    for start in range(0, len(images), batch_size):
        logits, _ = model.stateless_call(
            trainable, non_trainable, images[start : start + batch_size], training=True
        )
        logits = keras.ops.convert_to_numpy(logits).astype(np.float64)
        log_probabilities = calculus.log_softmax(logits)
        batch_labels = labels[start : start + batch_size]
        losses.append(-log_probabilities[np.arange(len(batch_labels)), batch_labels])
        correct += int(np.sum(logits.argmax(axis=1) == batch_labels))
    return SanityReport(
        initial_loss=float(np.concatenate(losses).mean()),
        expected_loss=math.log(num_classes),
        initial_accuracy=correct / len(labels),
        expected_accuracy=1.0 / num_classes,
    )


def overfit_one_batch(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, *, steps: int = 60
) -> float:
    """Train on a single batch for ``steps`` steps and return its final training accuracy.

    A model that cannot memorise one batch has a bug (wrong labels, a broken loss, a frozen layer).
    """
    history = model.fit(
        images, labels, batch_size=len(images), epochs=steps, verbose=0, shuffle=False
    )
    return float(history.history["accuracy"][-1])
