"""Crash-safe files: atomic writes, folder locks, clean-up after killed processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlnotes.runtime import storage

# A process that takes a folder's lock (or a staging folder), says so, then waits to be killed.
HOLDER = """
import sys, time
from pathlib import Path
from dlnotes.runtime import storage
kind, folder = sys.argv[1], Path(sys.argv[2])
contexts = {
    "lock": lambda: storage.locked_folder(folder),
    "staging": lambda: storage.staging_folder(folder, ".data.partial-"),
    "staged": lambda: storage.staged_folder(folder / "data", replace=True),
}
with contexts[kind]() as held:
    if kind != "lock":
        (held / "half-extracted.txt").write_text("x")
    print(held, flush=True)
    time.sleep(600)
"""


def _hold_then_kill(kind: str, folder: Path) -> Path:
    """Start a process holding ``folder``'s lock (or a staging or staged folder), SIGKILL it."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, kind, str(folder)], stdout=subprocess.PIPE, text=True
    )
    held = Path(process.stdout.readline().strip())
    assert held.is_dir()
    process.send_signal(signal.SIGKILL)
    process.wait()
    process.stdout.close()
    assert process.returncode == -signal.SIGKILL
    return held


def test_write_json_replaces_atomically_and_names_the_path_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "metrics.json"
    storage.write_json(target, {"a": 1})
    storage.write_json(target, {"a": 2})
    assert json.loads(target.read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]
    missing = tmp_path / "no" / "such" / "folder" / "x.json"
    with pytest.raises(OSError, match=f"could not write {missing}"):
        storage.write_json(missing, {})


def test_a_second_holder_is_refused_and_a_killed_one_releases_the_lock(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with storage.locked_folder(folder, what="trainer") as held:
        assert held == folder and folder.is_dir()
        with (
            pytest.raises(storage.FolderInUse, match=f"{folder} is in use by another trainer"),
            storage.locked_folder(folder, what="trainer"),
        ):
            pass
        assert folder.is_dir()  # the refused one removes nothing
    assert not list(folder.iterdir())  # no lock file
    _hold_then_kill("lock", folder)
    with storage.locked_folder(folder):  # the kernel released the dead process's lock
        pass


def test_a_failed_block_removes_the_folders_it_created(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b" / "run"
    with pytest.raises(ValueError, match="bad"), storage.locked_folder(folder):
        raise ValueError("bad")
    assert not (tmp_path / "a").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(ValueError), storage.locked_folder(kept):
        raise ValueError("bad")
    assert kept.is_dir()  # it existed before
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        with storage.locked_folder(a_file):
            pass
    with pytest.raises(OSError, match="could not create the folder"):
        with storage.locked_folder(a_file / "run"):
            pass
    assert a_file.read_text() == "mine"


def test_only_abandoned_staging_folders_are_removed(tmp_path: Path) -> None:
    abandoned = _hold_then_kill("staging", tmp_path)
    assert abandoned.name.startswith(".data.partial-") and abandoned.is_dir()
    with storage.staging_folder(tmp_path, ".data.partial-") as live:
        assert storage.remove_abandoned(tmp_path, ".data.partial-*") == [abandoned]
        assert live.is_dir() and not abandoned.exists()
    assert not live.exists()
    assert storage.remove_abandoned(tmp_path / "missing", "*") == []


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    target = tmp_path / "weights.npy"
    with storage.atomic_path(target) as partial:
        assert partial.name == "weights.npy.partial"
        with partial.open("wb") as handle:
            np.save(handle, np.arange(3))
        assert not target.exists()  # nothing visible before the block ends
    np.testing.assert_array_equal(np.load(target), np.arange(3))
    with pytest.raises(RuntimeError, match="writer broke"), storage.atomic_path(target) as partial:
        partial.write_bytes(b"half a file")
        raise RuntimeError("writer broke")
    np.testing.assert_array_equal(np.load(target), np.arange(3))  # unchanged
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.npy"]  # no partial left


def test_atomic_files_move_the_set_into_place_only_when_all_are_written(tmp_path: Path) -> None:
    finals = [tmp_path / "a-0-of-2", tmp_path / "a-1-of-2"]
    finals[0].write_text("old 0")
    with storage.atomic_files(finals) as partials:
        assert [p.name for p in partials] == ["a-0-of-2.partial", "a-1-of-2.partial"]
        for number, partial in enumerate(partials):
            partial.write_text(f"new {number}")
        assert finals[0].read_text() == "old 0" and not finals[1].exists()
    assert [p.read_text() for p in finals] == ["new 0", "new 1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-0-of-2", "a-1-of-2"]

    with pytest.raises(RuntimeError, match="second file"), storage.atomic_files(finals) as partials:
        partials[0].write_text("half a set")
        raise RuntimeError("second file")
    assert [p.read_text() for p in finals] == ["new 0", "new 1"]  # the old set, whole
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-0-of-2", "a-1-of-2"]

    blocker = tmp_path / "in-the-way"
    (blocker / "inside").mkdir(parents=True)  # a folder: a file cannot replace it
    with pytest.raises(OSError, match=f"could not write {blocker}"):
        with storage.atomic_files([blocker]) as (partial,):
            partial.write_text("x")
    assert not (tmp_path / "in-the-way.partial").exists()
    with pytest.raises(ValueError, match="distinct files"):
        with storage.atomic_files([finals[0], finals[0]]):
            pass


def test_staged_folder_appears_whole_or_not_at_all(tmp_path: Path) -> None:
    final = tmp_path / "cache" / "entry"
    with storage.staged_folder(final) as built:
        assert built.is_dir() and not list(built.iterdir()) and built.name == "entry"
        assert built.parent.name.startswith(".entry.partial-")
        (built / "data.txt").write_text("1")
        assert not final.exists()  # nothing visible before the block ends
    assert (final / "data.txt").read_text() == "1"
    assert sorted(p.name for p in final.parent.iterdir()) == ["entry"]  # no staging left

    ran = []
    with pytest.raises(FileExistsError, match=f"{final} exists already"):
        with storage.staged_folder(final):
            ran.append(True)
    assert not ran  # refused before the block is run

    with pytest.raises(ValueError, match="broke"), storage.staged_folder(final, replace=True) as b:
        (b / "data.txt").write_text("half")
        raise ValueError("broke")
    assert [p.name for p in final.iterdir()] == ["data.txt"]
    assert (final / "data.txt").read_text() == "1"  # unchanged
    assert sorted(p.name for p in final.parent.iterdir()) == ["entry"]

    with storage.staged_folder(final, replace=True) as built:
        (built / "other.txt").write_text("2")
    assert [p.name for p in final.iterdir()] == ["other.txt"]  # replaced, not merged
    assert sorted(p.name for p in final.parent.iterdir()) == ["entry"]


def test_staged_folder_refuses_a_folder_that_appeared_meanwhile(tmp_path: Path) -> None:
    final = tmp_path / "root"
    with pytest.raises(FileExistsError, match=f"{final} exists already"):
        with storage.staged_folder(final) as built:
            (built / "mine.txt").write_text("mine")
            final.mkdir()  # another process finished first
            (final / "theirs.txt").write_text("theirs")
    assert [p.name for p in final.iterdir()] == ["theirs.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["root"]


def test_staged_folder_of_a_killed_process_is_removed_by_the_next(tmp_path: Path) -> None:
    final = tmp_path / "data"
    with storage.staged_folder(final) as built:
        (built / "v1.txt").write_text("1")
    left = _hold_then_kill("staged", tmp_path)
    assert left.parent.name.startswith(".data.partial-") and (left / "half-extracted.txt").exists()
    assert [p.name for p in final.iterdir()] == ["v1.txt"]  # unchanged by the killed one
    with storage.staged_folder(final, replace=True) as built:
        assert not left.parent.exists()  # removed before the block runs
        (built / "v2.txt").write_text("2")
    assert [p.name for p in final.iterdir()] == ["v2.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
