"""The run folder's resumable backup: checkpoints that are never half-written.

:class:`RunBackup` commits each epoch's weights, the best weights and the run folder's manifest
together; :func:`recover_backup` brings a folder that a kill interrupted to its last committed
state. The callbacks around it are in :mod:`dlnotes.training.callbacks`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlnotes.runtime import import_quietly, storage
from dlnotes.training import manifest

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")  # quietly: the first import of TensorFlow logs to stderr


# The run folder's checkpoint files (see :class:`RunBackup`).
BACKUP_WEIGHTS = "latest.weights.h5"

BACKUP_METADATA = "training_metadata.json"

STAGED_WEIGHTS = "next.weights.h5"

STAGED_BEST = "next-best.weights.h5"

PENDING_METADATA = "next_metadata.json"

STAGED_MANIFEST = "next-manifest.json"

COMMIT_POINTS = ("begin", "staged", "committed", "rolling")
"""The points of an epoch's backup at which :meth:`RunBackup.reached` is called."""


def _roll_forward(backup_dir: Path, moved: Callable[[], None] | None = None) -> None:
    """Finish a committed backup (move its files into place) or discard an uncommitted one;
    ``moved`` is called after each file is moved."""
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
            if moved is not None:
                moved()
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


class RunBackup(keras.callbacks.BackupAndRestore):  # type: ignore[misc]  # Keras is Any
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

    def reached(self, point: str, epoch: int) -> None:
        """Called at each point of the backup of ``epoch`` (0-based); does nothing here.

        The extension point for what must happen at a precise instant of the commit protocol,
        e.g. a test that simulates a crash there by overriding it. The points
        (:data:`COMMIT_POINTS`): ``"begin"``, when the epoch begins; ``"staged"``, once the
        weights are saved under their staged name; ``"committed"``, once the commit record is
        written; ``"rolling"``, after each file is moved into place.

        Args:
            point: One of :data:`COMMIT_POINTS`.
            epoch: The epoch (0-based).
        """

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.reached("begin", epoch)
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
        self.reached("staged", epoch)
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
        self.reached("committed", epoch)
        _roll_forward(self.backup_path, lambda: self.reached("rolling", epoch))
