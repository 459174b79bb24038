"""The run folder: opened and locked, checked before a resume, and written — the one module that
writes a run's records (``config.json``, ``devices.json``, ``dataset.json`` and their manifest,
``metrics.json``); the checkpoints and the log are committed by
:class:`dlnotes.training.backup.RunBackup` during ``fit``.

Nothing is written into the folder before every check has passed: :func:`open_run_folder` locks
it (creating it empty if needed), :func:`check_resumable` finishes an interrupted commit and
checks the files, the settings and the data, :func:`check_devices` the devices, and only then
:func:`record_run` writes the records.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dlnotes.runtime import storage
from dlnotes.training import backup, manifest, multihost
from dlnotes.training.config import TrainConfig, changed_settings, config_record
from dlnotes.training.datasets import DataFiles, Dataset


@contextlib.contextmanager
def open_run_folder(out_dir: Path, group: multihost.ProcessGroup) -> Iterator[Path]:
    """The folder this process trains in, locked for it while the block runs.

    Process 0 (the only one of a single-process run) gets ``out_dir``, created if needed and
    locked (one trainer per run folder; nothing is written into it here); the other processes of
    a multi-process run get a private temporary folder (:func:`multihost.private_run_folder`).

    Args:
        out_dir: The run folder.
        group: The processes of the run.

    Yields:
        The folder to train in.

    Raises:
        ValueError: If ``out_dir`` is a file.
        dlnotes.runtime.storage.FolderInUse: If another trainer is using it.
    """
    if not group.writes:
        with multihost.private_run_folder(group.index) as private:
            yield private
        return
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out-dir {out_dir} is a file, not a folder")
    with storage.locked_folder(out_dir, what="trainer"):
        yield out_dir


def check_resumable(out_dir: Path, config: TrainConfig, files: DataFiles) -> int:
    """Bring the run folder to its last committed epoch and check it; return that epoch.

    Finishes a committed backup that a kill interrupted (the one change before the checks);
    then the folder's files (:func:`dlnotes.training.manifest.check_run_folder_files`), settings
    and data (:func:`check_run_folder`) are checked.

    Args:
        out_dir: The run folder (it may be new).
        config: The settings of this command.
        files: The data of this command.

    Returns:
        The epoch training resumes from (0 for a new run).

    Raises:
        ValueError: For a damaged folder, other settings or other data.
    """
    first_epoch = backup.resumed_epoch(out_dir / "backup")
    manifest.check_run_folder_files(out_dir, finished=first_epoch)
    check_run_folder(out_dir, config, files)
    return first_epoch


def check_run_folder(out_dir: Path, config: TrainConfig, files: DataFiles) -> None:
    """Refuse to resume a run folder with other settings or on other data; writes nothing.

    A ``config.json`` written before a field was added to :class:`TrainConfig` reads as having
    that field's default (:func:`dlnotes.training.config.upgrade_record`): the run resumes unless
    this command sets it otherwise.

    Args:
        out_dir: The run folder (it may be new).
        config: The settings of this command.
        files: The data of this command.

    Raises:
        ValueError: Naming what differs: the changed settings, or the classes or files.
    """
    saved = out_dir / "config.json"
    if saved.is_file():
        changed = changed_settings(_read_record(saved), config)
        if changed:
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
    storage.write_json(out_dir / "config.json", config_record(config))
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
            "image_shape": list(dataset.train_images.shape[1:]),
            "data_dir": str(Path(root).resolve()),
        },
    )
    manifest.record_manifest(out_dir)


def previous_metrics(out_dir: Path) -> dict[str, Any]:
    """The ``metrics.json`` of an earlier run of the folder (``{}`` if none; checked valid by
    :func:`dlnotes.training.manifest.check_run_folder_files`)."""
    path = out_dir / "metrics.json"
    content: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
    return content


def record_metrics(out_dir: Path, metrics: dict[str, Any]) -> None:
    """Write the run's ``metrics.json`` (atomically; rewritten by every run of the folder)."""
    storage.write_json(out_dir / "metrics.json", metrics)
