"""What runs around ``fit``: the throughput meter, the divergence and free-space checks, the log,
and the run folder's callbacks in their order (:func:`training_callbacks`).

The checkpoints are never half-written (:class:`dlnotes.training.backup.RunBackup`), the best
weights stay the best across resumes, and a full disk stops the run before a checkpoint is torn
(:class:`FreeSpaceCheck`).
"""

from __future__ import annotations

import csv
import errno
import math
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes.runtime import import_quietly, storage
from dlnotes.training import manifest
from dlnotes.training.backup import BACKUP_WEIGHTS, STAGED_BEST, RunBackup

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
    with storage.atomic_path(log_path) as partial, partial.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(kept[epoch] for epoch in sorted(kept))
    return len(kept)


def close_logs(callbacks: list[keras.callbacks.Callback]) -> None:
    """Close the files of the ``CSVLogger`` callbacks (``fit`` leaves them open when it is
    interrupted by an exception)."""
    for callback in callbacks:
        log = getattr(callback, "csv_file", None)
        if isinstance(callback, keras.callbacks.CSVLogger) and log is not None:
            log.close()


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
