"""What runs around ``fit``: the throughput meter, the run folder's checkpoints and logs.

The checkpoints are never half-written (:class:`RunBackup`), the best weights stay the best
across resumes, and a full disk stops the run before a checkpoint is torn (:class:`FreeSpaceCheck`).
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes.runtime import import_quietly, storage
from dlnotes.training import manifest

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")  # quietly: the first import of TensorFlow logs to stderr


class Throughput(keras.callbacks.Callback):
    """Measure training images per second per epoch (validation excluded) and epoch times.

    It deliberately has no per-batch hook: any callback with one makes Keras fetch the metrics
    after every compiled execution, which synchronises host and accelerator once per call.

    Args:
        batch_size: Images per step.
        images_per_epoch: Training images per epoch (the last batch may be partial).
        echo: Print each epoch's time and rate when it ends.

    Attributes:
        rates: Training images per second of each epoch (validation excluded).
        epoch_seconds: Wall time of each whole epoch, validation included; the first one also
            holds the compilation of the training and evaluation steps.
    """

    def __init__(
        self, batch_size: int, images_per_epoch: int | None = None, *, echo: bool = False
    ) -> None:
        super().__init__()
        self.echo = echo
        self.batch_size = batch_size
        self.images_per_epoch = images_per_epoch
        self.rates: list[float] = []
        self.epoch_seconds: list[float] = []
        self._start = 0.0
        self._open = False

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
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

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._close()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self._close()
        self.epoch_seconds.append(time.perf_counter() - self._start)
        if self.echo:
            rate = f", {self.rates[-1]:,.0f} training images/s" if self.rates else ""
            print(f"epoch {epoch + 1} took {self.epoch_seconds[-1]:.2f} s{rate}", flush=True)

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

STAGED_MANIFEST = "next-manifest.json"

KILL_POINT_ENV = "DLNOTES_TEST_KILL_AT"
"""Test hook: ``"POINT:EPOCH"`` makes the process SIGKILL itself at that point of the backup of
that (0-based) epoch; POINT is ``staged``, ``committed`` or ``rolling`` (see :class:`RunBackup`),
or ``begin``: when the epoch begins."""


def _kill_point(point: str, epoch: int | None) -> None:
    if epoch is not None and os.environ.get(KILL_POINT_ENV) == f"{point}:{epoch}":
        os.kill(os.getpid(), signal.SIGKILL)


def _roll_forward(backup_dir: Path, epoch: int | None = None) -> None:
    """Finish a committed backup (move its files into place) or discard an uncommitted one."""
    pending = backup_dir / PENDING_METADATA
    if pending.is_file():
        try:
            moves = json.loads(pending.read_text())["moves"]
            moves = {str(source): str(target) for source, target in moves.items()}
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise manifest.RunFolderDamaged(
                f"the backup's commit record {pending} is damaged ({error}); delete "
                f"{backup_dir.parent} to train from the start, or use another --out-dir"
            ) from error
        for source, target in moves.items():
            if (backup_dir / source).is_file():  # else moved already, before an interruption
                os.replace(backup_dir / source, backup_dir / target)
            _kill_point("rolling", epoch)
        os.replace(pending, backup_dir / BACKUP_METADATA)
    for leftover in (STAGED_WEIGHTS, STAGED_BEST, STAGED_MANIFEST):
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
        raise manifest.RunFolderDamaged(
            f"the backup's metadata {metadata_path} is damaged ({error}); use another --out-dir "
            f"(or delete {backup_dir.parent} to train from the start)"
        ) from error
    checked: dict[str, Any] = metadata
    return checked


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
    3. the files are moved into place (``latest.weights.h5``, ``best.weights.h5``, the run
       folder's ``manifest.json``, ``training_metadata.json``).

    With ``manifest_path``, step 2 also stages the run folder's manifest
    (:mod:`dlnotes.training.manifest`): the files of the state being committed, with their sizes
    and checksums, so that a damaged folder is noticed before a resume.

    On resuming, :func:`recover_backup` finishes step 3 of a committed backup or deletes the
    files of an uncommitted one; the weights and the optimiser state are restored, and so is the
    best checkpoint's threshold, so ``best.weights.h5`` stays the best epoch's weights across
    resumes. A killed run loses at most the epoch in progress.

    Args:
        backup_dir: Folder of the backup.
        best_checkpoint: A ``ModelCheckpoint(save_best_only=True)`` writing to
            ``backup_dir/next-best.weights.h5``, placed just before this callback, or None.
        best_path: Where the best weights go (with ``best_checkpoint``).
        manifest_path: The run folder's ``manifest.json`` to commit with each backup, or None.
            Files it lists already (the run's record) stay listed.

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
        manifest_path: str | os.PathLike[str] | None = None,
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
        self.manifest_path = None if manifest_path is None else Path(manifest_path)
        self._best_at_epoch_begin: Any = None
        self._listed: dict[str, dict[str, Any]] = {}

    def _relative(self, path: Path) -> str:
        assert self.manifest_path is not None
        return Path(os.path.relpath(path, self.manifest_path.parent)).as_posix()

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        metadata = recover_backup(self.backup_path)
        if self.manifest_path is not None:
            listed = manifest.read_manifest(self.manifest_path.parent)
            self._listed = dict(listed["files"]) if listed else {}
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
            raise manifest.RunFolderDamaged(
                f"the backup {weights} cannot be loaded ({error}); use another --out-dir (or "
                f"delete {self.backup_path.parent} to train from the start)"
            ) from error
        self.model._initial_epoch = int(metadata["epoch"])
        if self.best_checkpoint is not None and metadata.get("best") is not None:
            self.best_checkpoint.best = float(metadata["best"])

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        _kill_point("begin", epoch)
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
        if self.manifest_path is not None:  # the folder's files once this backup is committed
            listed = dict(self._listed)
            listed[self._relative(self.backup_path / BACKUP_WEIGHTS)] = manifest.file_entry(staged)
            if STAGED_BEST in moves and self.best_path is not None:
                entry = manifest.file_entry(self.backup_path / STAGED_BEST)
                listed[self._relative(self.best_path)] = entry
            storage.write_json(
                self.backup_path / STAGED_MANIFEST, manifest.manifest(self._current_epoch, listed)
            )
            moves[STAGED_MANIFEST] = os.path.relpath(self.manifest_path, self.backup_path)
            self._listed = listed
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


class TrainingDiverged(ValueError):
    """The loss of an epoch is NaN or infinite; nothing of that epoch was saved.

    Attributes:
        epoch: The epoch (1-based, as Keras prints it).
    """

    def __init__(self, epoch: int, name: str, value: float) -> None:
        super().__init__(
            f"the {name.replace('_', ' ')} of epoch {epoch} is {value}: training diverged (a "
            f"learning rate or weight decay too high?). Nothing of epoch {epoch} was saved"
        )
        self.epoch = epoch


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Stop training with :class:`TrainingDiverged` when an epoch's loss is NaN or infinite.

    Placed first among the callbacks, it raises at the end of the epoch before any other
    callback sees it: the epoch is neither logged nor checkpointed, and the run folder keeps the
    last finished epoch. ``keras.callbacks.TerminateOnNaN`` does not fit here: by default it only
    sets ``stop_training``, so the epoch-end callbacks still commit the diverged epoch as the
    latest backup and the command exits with status 0; and, like any callback with a per-batch
    hook, it makes Keras wait for every compiled execution (see :class:`Throughput`). Checking the
    epoch's mean loss costs nothing and misses nothing: one NaN or infinite batch makes the mean
    NaN or infinite.
    """

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        for name in ("loss", "val_loss"):
            value = (logs or {}).get(name)
            if value is not None and not math.isfinite(float(value)):
                raise TrainingDiverged(epoch + 1, name, float(value))


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

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
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
    """Divergence check, free-space check, best checkpoint, resumable backup, CSV log, TensorBoard.

    The ``ModelCheckpoint`` saves the best weights under a staged name in ``out_dir/backup``;
    :class:`RunBackup` commits them to ``out_dir/best.weights.h5`` together with the backup, so
    that no file of the run folder is ever half-written and the best checkpoint's threshold
    survives a resume; each commit also moves the run folder's ``manifest.json`` into place. An
    epoch whose loss is NaN or infinite stops training before anything of it is written
    (:class:`StopOnNonFiniteLoss`). The CSV logger comes before the backup: if a run dies between
    the two, the epoch is logged but not backed up, and :func:`truncate_log` removes the row
    before it is trained again.

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
        StopOnNonFiniteLoss(),
        FreeSpaceCheck(out_dir),
        best,
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        RunBackup(
            backup,
            best_checkpoint=best,
            best_path=out_dir / "best.weights.h5",
            manifest_path=out_dir / manifest.MANIFEST,
        ),
    ]
    if tensorboard and _tensorboard_available():
        callbacks.append(
            keras.callbacks.TensorBoard(str(out_dir / "tensorboard"), write_graph=False)
        )
    return callbacks
