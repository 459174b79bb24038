"""Crash-safe files: atomic replacement, one writer per folder, and what a killed process left.

A process can die at any instant (``kill -9``, the out-of-memory killer, a preempted machine), and a
disk can fill up in the middle of a write. The course's tools therefore follow three rules:

* **Write, then rename.** A file is written under a temporary name in its final folder and moved
  into place with :func:`os.replace`, which is atomic on POSIX file systems: a reader sees the old
  file or the new one, never half of one (:func:`atomic_path` for any writer, and its short forms
  :func:`write_text`, :func:`write_json`; :func:`atomic_files` for a set of files that is only
  moved into place once all are complete). A folder is built the same way: in a staging folder
  beside its final place, then moved there with one rename (:func:`staged_folder`, built on
  :func:`staging_folder`).
* **One writer per folder.** :func:`locked_folder` holds an exclusive ``fcntl.flock`` on the folder
  itself while a tool writes into it. The kernel releases the lock when the process dies, however
  it dies, so a killed run never leaves the folder locked, and no lock file is left behind.
* **Clean up after the dead, never after the living.** A temporary folder is locked while it is
  in use (:func:`staging_folder`); :func:`remove_abandoned` deletes only those whose lock it can
  take, i.e. whose process is gone.

This protects against processes that die, not against a machine that loses power: nothing is
``fsync``-ed (that would cost a flush of every checkpoint to the disk each epoch).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

try:
    import fcntl as _fcntl
except ImportError:  # pragma: no cover - Windows has no flock; folders are then not locked
    _fcntl = None  # type: ignore[assignment]  # the module or nothing
fcntl: ModuleType | None = _fcntl

# File systems without flock on folders (some network and FUSE mounts) answer with one of these.
_LOCKS_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL, errno.EBADF}


class FolderInUse(OSError):
    """Another process holds the folder's lock."""


@contextlib.contextmanager
def atomic_files(paths: Sequence[str | os.PathLike[str]]) -> Iterator[list[Path]]:
    """Temporary names for a set of files, moved onto them only once the whole block has succeeded.

    The block writes each file to its yielded ``<name>.partial``; when it ends without error,
    the files are moved into place with :func:`os.replace`, in order. Each move is atomic, the set
    is not: a process killed between two moves leaves part of the new set beside part of the old
    one, so a reader of the set checks that it is consistent (as
    :func:`dlnotes.data.tfrecord.shard_files` does). If the block raises, every temporary file is
    removed and the files keep their previous content; a killed process leaves its ``.partial``
    files, which the next writer of the set removes.

    Args:
        paths: The files to write, in the folders they end up in.

    Yields:
        Where to write them: ``<name>.partial`` beside each, in the order of ``paths``.

    Raises:
        ValueError: If ``paths`` is empty or names a file twice.
        OSError: Naming the file, when one cannot be moved into place; an exception of the block
            propagates unchanged.
    """
    finals = [Path(path) for path in paths]
    if not finals or len(set(finals)) != len(finals):
        raise ValueError(f"atomic_files needs distinct files, got {[str(p) for p in finals]}")
    partials = [final.with_name(final.name + ".partial") for final in finals]
    try:
        yield partials
        for partial, final in zip(partials, finals, strict=True):
            try:
                os.replace(partial, final)
            except OSError as error:
                raise _naming(error, final) from error
    finally:
        for partial in partials:
            partial.unlink(missing_ok=True)


def _naming(error: OSError, path: Path) -> OSError:
    """``error`` as an OSError of the same number whose message names ``path``."""
    return OSError(error.errno, f"could not write {path}: {error.strerror or error}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary name for ``path`` that replaces ``path`` when the block ends without error.

    This is the one way the package writes a file: the block writes to the yielded path (with any
    writer that takes a file name or an open file: ``h5py``, ``csv``; ``numpy.save`` only on an
    open file, as given a name it appends ``.npy``), and the file is then moved onto ``path``
    with :func:`os.replace` (:func:`atomic_files` with one file). If the block
    raises, or the process is killed, ``path`` keeps its previous content (or stays absent); the
    temporary file is removed on an exception and is left as ``<name>.partial`` only by a killed
    process.

    Args:
        path: The file to write.

    Yields:
        Where to write it: ``<name>.partial`` in the same folder.

    Raises:
        OSError: Naming ``path`` when the file cannot be written or moved (e.g. the disk is
            full); other exceptions of the block propagate unchanged.
    """
    path = Path(path)
    with atomic_files([path]) as (partial,):
        try:
            yield partial
        except OSError as error:
            raise _naming(error, path) from error


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """Replace ``path`` by ``text`` atomically (see :func:`atomic_path`).

    Args:
        path: The file to write.
        text: Its new content.

    Raises:
        OSError: Naming ``path`` when the file cannot be written (e.g. the disk is full); the
            previous content, if any, is unchanged and no temporary file is left.
    """
    with atomic_path(path) as partial:
        partial.write_text(text)


def write_json(path: str | os.PathLike[str], value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` atomically (see :func:`write_text`)."""
    write_text(path, json.dumps(value, indent=2) + "\n")


def _lock(fd: int, path: Path, what: str) -> bool:
    """Take an exclusive lock without waiting; False where the file system has no locks."""
    if fcntl is None:  # pragma: no cover
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise FolderInUse(
            f"{path} is in use by another {what}; wait until it ends or use another folder"
        ) from None
    except OSError as error:
        if error.errno in _LOCKS_UNSUPPORTED:
            return False
        raise
    return True


@contextlib.contextmanager
def locked_folder(folder: str | os.PathLike[str], *, what: str = "process") -> Iterator[Path]:
    """Create ``folder`` if needed and hold an exclusive lock on it while the block runs.

    The lock is a ``flock`` on the folder's own descriptor: nothing is written into the folder,
    and the kernel releases the lock when the process exits or is killed. If the block raises and
    the folders created here are still empty, they are removed again, so a command that fails its
    checks leaves nothing behind. On file systems without locks the block runs unlocked.

    Args:
        folder: The folder.
        what: What holds the lock, for the message (e.g. ``"training run"``).

    Yields:
        The folder.

    Raises:
        FolderInUse: If another process holds the lock (raised at once, without waiting).
        OSError: If the folder cannot be created (naming it), e.g. because it is a file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, f"{folder} is a file, not a folder")
    created = [p for p in (folder, *folder.parents) if not p.exists()]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(
            error.errno, f"could not create the folder {folder}: {error.strerror or error}"
        ) from error
    fd = _open_folder(folder)
    try:
        if fd is not None:
            _lock(fd, folder, what)
        yield folder
    except BaseException:
        for path in created:  # innermost first
            with contextlib.suppress(OSError):
                path.rmdir()  # only if empty
        raise
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


def _open_folder(path: Path) -> int | None:
    """A descriptor to lock ``path`` with, or None where there are no locks (Windows)."""
    return os.open(path, os.O_RDONLY) if fcntl is not None else None


def _lock_for_a_moment(fd: int | None) -> None:
    """Lock a parent folder that other processes only lock for a moment (wait at most 10 s)."""
    if fd is None or fcntl is None:  # pragma: no cover
        return
    deadline = time.monotonic() + 10
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                return  # go on unlocked rather than hang
            time.sleep(0.01)
        except OSError:  # no locks on this file system
            return


@contextlib.contextmanager
def staging_folder(parent: str | os.PathLike[str], prefix: str) -> Iterator[Path]:
    """A new temporary folder in ``parent``, locked while in use and removed afterwards.

    A process killed while it uses the folder leaves it behind unlocked, and
    :func:`remove_abandoned` then deletes it. The folder is created under a short lock of
    ``parent``, so a concurrent :func:`remove_abandoned` cannot take it between its creation
    and its lock.

    Args:
        parent: Where to create it (it is created if needed).
        prefix: Start of its name (a random part follows).

    Yields:
        The folder.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    parent_fd = _open_folder(parent)
    try:
        _lock_for_a_moment(parent_fd)
        staging = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
        fd = _open_folder(staging)
        if fd is not None:
            _lock(fd, staging, "process")
    finally:
        if parent_fd is not None:
            os.close(parent_fd)
    try:
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if fd is not None:
            os.close(fd)


@contextlib.contextmanager
def staged_folder(final: str | os.PathLike[str], *, replace: bool = False) -> Iterator[Path]:
    """Build a folder where no reader sees it, then move it onto ``final`` with one rename.

    This is the one way the package makes a folder appear complete or not at all (an extracted
    dataset, a cache entry, an exported model). In order:

    1. ``final``'s parent is created if needed, and the staging folders of ``final`` that killed
       processes left there (``.<name>.partial-*``) are removed (:func:`remove_abandoned`);
    2. a new staging folder ``.<name>.partial-<random>`` is made beside ``final`` and locked
       (:func:`staging_folder`); the block gets the empty folder ``<staging>/<name>`` in it
       (created with the usual permissions) and builds the content there;
    3. if the block ends without error, that folder is renamed onto ``final``. Where ``final``
       exists already, ``replace=False`` raises :class:`FileExistsError`; ``replace=True`` first
       moves the old folder into the staging folder, so it is never half deleted in place;
    4. in every case the staging folder and what is left in it are deleted.

    An exception of the block leaves ``final`` as it was. A process killed at any moment leaves
    ``final`` as it was (with ``replace=True``, killed between the two renames: absent) and its
    staging folder, which the next :func:`staged_folder` of ``final`` removes.

    Args:
        final: The folder to create (or replace).
        replace: Replace an existing ``final``; False refuses it, before the block runs and
            again before the rename.

    Yields:
        The folder to build in: ``<parent>/.<name>.partial-<random>/<name>``, empty.

    Raises:
        FileExistsError: Naming ``final``, if it exists and ``replace`` is False.
        OSError: Naming ``final`` if it cannot be moved into place; exceptions of the block
            propagate unchanged.
    """
    final = Path(final)
    prefix = f".{final.name}.partial-"
    _refuse_existing(final, replace)
    final.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned(final.parent, glob.escape(prefix) + "*")
    with staging_folder(final.parent, prefix) as staging:
        built = staging / final.name
        built.mkdir()
        yield built
        _refuse_existing(final, replace)
        try:
            if final.exists() or final.is_symlink():
                os.replace(final, staging / f"{final.name}.previous")
            os.replace(built, final)
        except OSError as error:
            raise OSError(
                error.errno, f"could not move {built} onto {final}: {error.strerror or error}"
            ) from error


def _refuse_existing(final: Path, replace: bool) -> None:
    if not replace and (final.exists() or final.is_symlink()):
        raise FileExistsError(errno.EEXIST, f"{final} exists already")


def remove_abandoned(parent: str | os.PathLike[str], pattern: str) -> list[Path]:
    """Delete the temporary folders matching ``pattern`` in ``parent`` that no process uses.

    Only folders made by :func:`staging_folder` whose lock can be taken are removed — their
    process has died; those in use by a running process are left alone (and nothing is removed
    where the file system has no locks).

    Args:
        parent: The folder to look in (missing is fine).
        pattern: A glob, e.g. ``".tiny-imagenet-200.partial-*"``.

    Returns:
        The folders removed.
    """
    parent = Path(parent)
    if not parent.is_dir() or fcntl is None:
        return []
    removed = []
    parent_fd = os.open(parent, os.O_RDONLY)
    try:
        _lock_for_a_moment(parent_fd)
        for path in sorted(parent.glob(pattern)):
            if not path.is_dir() or path.is_symlink():
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                try:
                    locked = _lock(fd, path, "process")
                except FolderInUse:
                    continue
                if locked:
                    shutil.rmtree(path, ignore_errors=True)
                    removed.append(path)
            finally:
                os.close(fd)
    finally:
        os.close(parent_fd)
    return removed
