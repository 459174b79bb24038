"""The run folder's manifest: which files a consistent run folder has, checked before a resume.

``OUT/manifest.json`` lists, for the run folder's state after its last committed epoch, every file
that state consists of, with its size and SHA-256 (hashing a checkpoint of the full profile's
6.8 M-parameter network takes about 0.05 s):

* ``config.json``, ``devices.json``, ``dataset.json`` — the run's settings, devices and data,
  written once before training (the manifest is written after them, so a run killed in between
  has no manifest and nothing trained yet, and simply starts again);
* ``backup/latest.weights.h5`` and ``best.weights.h5`` — from the first finished epoch on.

``epochs`` says how many epochs that state has finished: ``history.csv`` must hold a complete
row for each. Each epoch's manifest is staged in ``backup/`` and moved into place by the same
commit as the checkpoints (:class:`dlnotes.training.backup.RunBackup`), so it never describes
a state that was not committed. ``metrics.json`` is not listed (it is written at the end and
written again by every later run), but it must be a JSON object.

:func:`check_run_folder_files` reads everything and writes nothing: a damaged folder is
reported, naming the file and what to do, before the trainer changes anything in it.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from dlnotes.runtime import storage

MANIFEST = "manifest.json"

RECORD_FILES = ("config.json", "devices.json", "dataset.json")
"""The files written before training, listed by every manifest."""

CHECKPOINT_FILES = ("backup/latest.weights.h5", "best.weights.h5")
"""The files every manifest after the first finished epoch lists."""

TRAINING_OUTPUTS = ("backup", "best.weights.h5", "history.csv", "metrics.json")
"""What a run folder holds only once training has started: never without a manifest."""

FORMAT = 1


class RunFolderDamaged(ValueError):
    """A run folder's files do not match its manifest: a file is missing, cut or changed."""


def file_entry(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The manifest's record of a file: its size and SHA-256.

    Args:
        path: The file.

    Returns:
        ``{"size": bytes, "sha256": hex digest}``.

    Raises:
        OSError: If the file cannot be read.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
        size = os.fstat(handle.fileno()).st_size
    return {"size": size, "sha256": digest.hexdigest()}


def manifest(epochs: int, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A manifest's content.

    Args:
        epochs: Finished epochs of the state it describes.
        files: ``{path relative to the run folder: file_entry(...)}``.

    Returns:
        The JSON object to write.
    """
    return {"format": FORMAT, "epochs": int(epochs), "files": dict(sorted(files.items()))}


def record_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Write the manifest of a run folder whose record files are written and nothing is trained.

    Written atomically (:func:`dlnotes.runtime.storage.write_json`), after the record files.

    Args:
        out_dir: The run folder holding :data:`RECORD_FILES`.

    Returns:
        The manifest written.

    Raises:
        OSError: If a record file cannot be read or the manifest cannot be written.
    """
    out_dir = Path(out_dir)
    content = manifest(0, {name: file_entry(out_dir / name) for name in RECORD_FILES})
    storage.write_json(out_dir / MANIFEST, content)
    return content


def read_manifest(out_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """Read a run folder's manifest.

    Args:
        out_dir: The run folder.

    Returns:
        The manifest, or None if the folder has none.

    Raises:
        RunFolderDamaged: If the manifest is not a manifest (naming it).
    """
    path = Path(out_dir) / MANIFEST
    if not path.exists():
        return None
    try:
        content = json.loads(path.read_text())
        files = content["files"]
        ok = (
            isinstance(content, dict)
            and content.get("format") == FORMAT
            and isinstance(content.get("epochs"), int)
            and content["epochs"] >= 0
            and isinstance(files, dict)
            and all(isinstance(v, dict) and {"size", "sha256"} <= set(v) for v in files.values())
        )
    except (OSError, ValueError, TypeError, KeyError):
        ok = False
    if not ok:
        raise RunFolderDamaged(
            f"{path} is damaged (not a run folder manifest): the folder's files can no longer be "
            f"checked. Use another --out-dir (or delete {path.parent} to train from the start)"
        )
    checked: dict[str, Any] = content
    return checked


def _hint(out_dir: Path) -> str:
    return (
        f"restore it from a copy of the run folder, or use another --out-dir (or delete {out_dir} "
        "to train from the start)"
    )


def logged_epochs(log_path: str | os.PathLike[str]) -> set[int]:
    """The epochs with a complete row in a ``CSVLogger`` file (empty if there is none).

    Args:
        log_path: The CSV log.

    Returns:
        The epoch numbers (0-based) of the rows that have every column of the header.
    """
    log_path = Path(log_path)
    if not log_path.is_file():
        return set()
    with log_path.open(newline="") as handle:
        rows = list(csv.reader(handle))
    if not rows or not rows[0] or rows[0][0] != "epoch":
        return set()
    complete = set()
    for row in rows[1:]:
        if len(row) == len(rows[0]) and all(row):
            try:
                complete.add(int(row[0]))
            except ValueError:
                continue
    return complete


def check_run_folder_files(out_dir: str | os.PathLike[str], *, finished: int) -> dict[str, Any]:
    """Check that a run folder holds the files its manifest lists, unchanged; writes nothing.

    Args:
        out_dir: The run folder (it may be new or empty).
        finished: Finished epochs of its committed backup (0 when there is none; see
            :func:`dlnotes.training.backup.recover_backup`).

    Returns:
        The manifest, or ``{}`` for a folder where training has not started (no manifest and
        none of :data:`TRAINING_OUTPUTS`).

    Raises:
        RunFolderDamaged: Naming the first damaged or missing file and what to do.
    """
    out_dir = Path(out_dir)
    backup = out_dir / "backup"
    if backup.exists() and not backup.is_dir():
        raise RunFolderDamaged(
            f"{backup} is a file, not the folder of the run's checkpoints: the run folder is "
            f"damaged; {_hint(out_dir)}"
        )
    _check_metrics(out_dir / "metrics.json")
    content = read_manifest(out_dir)
    if content is None:
        started = [name for name in TRAINING_OUTPUTS if (out_dir / name).exists()]
        if started:
            raise RunFolderDamaged(
                f"{out_dir} holds {', '.join(started)} but no {MANIFEST}: the manifest was "
                "deleted, or an older version of dlnotes made the folder, so its files cannot be "
                f"checked. Use another --out-dir (or delete {out_dir} to train from the start)"
            )
        return {}
    epochs = content["epochs"]
    if epochs != finished:
        where = backup / "training_metadata.json"
        raise RunFolderDamaged(
            f"{out_dir / MANIFEST} records {epochs} finished epoch(s), but the backup "
            f"({where}) {'is missing' if finished == 0 else f'has {finished}'}: the backup is "
            f"damaged; {_hint(out_dir)}"
        )
    needed = [*RECORD_FILES, *(CHECKPOINT_FILES if epochs else ())]
    check_listed_files(out_dir, [*needed, *sorted(set(content["files"]) - set(needed))], content)
    missing = sorted(set(range(epochs)) - logged_epochs(out_dir / "history.csv"))
    if missing:
        shown = ", ".join(str(epoch + 1) for epoch in missing[:10])
        raise RunFolderDamaged(
            f"{out_dir / 'history.csv'} lacks the row(s) of epoch(s) {shown} of the {epochs} "
            f"finished (it was cut or edited): {_hint(out_dir)}"
        )
    return content


def _check_metrics(metrics: Path) -> None:
    """Refuse a ``metrics.json`` that is not a JSON object (it is not in the manifest)."""
    if not metrics.exists():
        return
    try:
        valid = isinstance(json.loads(metrics.read_text()), dict)
    except (OSError, ValueError):
        valid = False
    if not valid:
        raise RunFolderDamaged(
            f"{metrics} is damaged (not a JSON object): delete it and run the same command "
            "again; the run writes it again at its end"
        )


def check_listed_files(
    out_dir: str | os.PathLike[str], names: list[str], content: dict[str, Any] | None = None
) -> None:
    """Check files of a run folder against its manifest: listed, present, same size and checksum.

    Args:
        out_dir: The run folder.
        names: Paths relative to the run folder.
        content: The manifest (default: read it; a folder without one is not checked).

    Raises:
        RunFolderDamaged: Naming the first file that is not listed, missing or changed.
    """
    out_dir = Path(out_dir)
    content = read_manifest(out_dir) if content is None else content
    if content is None:
        return
    listed = content["files"]
    for name in names:
        path = out_dir / name
        if name not in listed:
            raise RunFolderDamaged(
                f"{out_dir / MANIFEST} does not list {name}: the manifest is damaged; "
                f"{_hint(out_dir)}"
            )
        if not path.is_file():
            raise RunFolderDamaged(
                f"{path} is missing ({MANIFEST} lists it): the run folder is damaged; "
                f"{_hint(out_dir)}"
            )
        expected = listed[name]
        size = path.stat().st_size
        if size != expected["size"] or file_entry(path)["sha256"] != expected["sha256"]:
            change = (
                f"{size:,} bytes instead of the {expected['size']:,} in {MANIFEST}"
                if size != expected["size"]
                else f"its content differs from its checksum in {MANIFEST}"
            )
            raise RunFolderDamaged(
                f"{path} is damaged ({change}): the run folder is damaged; {_hint(out_dir)}"
            )
