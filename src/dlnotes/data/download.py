"""Download and unpack Tiny ImageNet safely.

* The archive is fetched with :func:`keras.utils.get_file`, which shows a progress bar, checks
  the MD5 checksum, deletes a partial file when the transfer fails and re-downloads a file whose
  checksum does not match (so an interrupted run recovers on the next try).
* Nothing is extracted before the checksum matches. Extraction goes to a temporary folder next to
  the destination and is renamed into place only once complete, so the destination either holds
  the whole dataset or does not exist. The temporary folder of an extraction that was killed is
  removed by the next run (:func:`dlnotes.runtime.storage.remove_abandoned`).
* Archive entries that would land outside the destination (absolute paths, ``..``) are refused.
* A second run finds the dataset and does nothing, not even a network request.
* The archive is kept beside the destination under its own name, never the destination's (an
  address ending in ``/tiny-imagenet-200``), and a folder that cannot be written is refused before
  anything is downloaded (``keras.utils.get_file`` would fall back to ``/tmp/.keras``).

The command ``dlnotes-download`` (installed with the package; :func:`main`) does all of this, and
:func:`dlnotes.data.find_root` does it by itself when a chapter finds no data.
``$DLNOTES_DATA_URL`` and ``$DLNOTES_DATA_MD5`` replace the official address and checksum, e.g.
with a mirror.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import urllib.error
import zipfile
from pathlib import Path, PurePosixPath

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ARCHIVE_TOP_FOLDER = "tiny-imagenet-200"


DOWNLOAD_COMMAND = "dlnotes-download"
"""The console command that downloads the data (installed with the package)."""


class DownloadError(RuntimeError):
    """The archive could not be fetched, or what arrived is not the expected archive."""


def close_http_errors(error: BaseException | None) -> None:
    """Close the HTTP responses held by an exception and the exceptions it was raised from.

    ``urllib``'s ``HTTPError`` is also the open response; an error kept for its message (or
    chained with ``raise … from``) would otherwise keep the connection open until garbage
    collection.

    Args:
        error: The exception (None does nothing).
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, urllib.error.HTTPError):
            error.close()
        error = error.__cause__ or error.__context__


def archive_source() -> tuple[str, str]:
    """Return the archive's address and MD5 checksum: the official ones unless overridden.

    ``$DLNOTES_DATA_URL`` and ``$DLNOTES_DATA_MD5`` (see :mod:`dlnotes.runtime.paths`) name a
    mirror. A mirror's archive differs from the official one, so its address needs its checksum.

    Returns:
        ``(url, md5)``.

    Raises:
        ValueError: If only one of the two variables is set.
    """
    from dlnotes.runtime import paths

    url = os.environ.get(paths.DATA_URL_ENV, "").strip()
    md5 = os.environ.get(paths.DATA_MD5_ENV, "").strip()
    if bool(url) != bool(md5):
        raise ValueError(
            f"set both {paths.DATA_URL_ENV} and {paths.DATA_MD5_ENV} or neither, got "
            f"{paths.DATA_URL_ENV}={url!r} and {paths.DATA_MD5_ENV}={md5!r}"
        )
    return (url, md5) if url else (TINY_IMAGENET_URL, TINY_IMAGENET_MD5)


def is_prepared(root: str | os.PathLike[str]) -> bool:
    """Tell whether ``root`` already holds an extracted dataset (``wnids.txt`` present)."""
    return (Path(root) / "wnids.txt").is_file()


def archive_filename(url: str, root: str | os.PathLike[str], download_dir: Path) -> str:
    """The file name the archive of ``url`` is kept under: the URL's last part, as a ``.zip``.

    Never the dataset root itself: an address ending in ``/tiny-imagenet-200`` would otherwise
    save the archive where the dataset is to be extracted.

    Args:
        url: Address of the archive.
        root: The dataset root that will be extracted.
        download_dir: The folder that keeps the archive.

    Returns:
        A file name in ``download_dir``.
    """
    name = PurePosixPath(url.split("?", 1)[0]).name or "archive.zip"
    if not name.lower().endswith(".zip"):
        name += ".zip"
    if download_dir / name == Path(root).expanduser().resolve():
        name = f"{name}.archive.zip"
    return name


def _check_writable(folder: Path) -> None:
    """Refuse a folder that cannot be written before anything is downloaded into it.

    ``keras.utils.get_file`` silently downloads into ``/tmp/.keras`` instead when its folder is
    not writable; a test file shows it here, whoever runs the command (``os.access`` says yes to
    root on a folder without write permission). The test file is anonymous and gone when closed
    (or the process killed), so it needs none of :mod:`dlnotes.runtime.storage`'s care.
    """
    import tempfile

    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        raise DownloadError(
            f"cannot write into {folder} ({error.strerror or error}), where the archive is kept "
            "and extracted: choose a destination in a writable folder"
        ) from None


def fetch_archive(
    url: str, md5: str, download_dir: str | os.PathLike[str], *, filename: str | None = None
) -> Path:
    """Download ``url`` into ``download_dir`` unless a file with the right checksum is there.

    Args:
        url: Address of the zip archive.
        md5: Expected MD5 checksum (32 hex digits).
        download_dir: Folder that keeps the archive (created if needed; it must be writable).
        filename: Name of the archive there (default: the URL's last part).

    Returns:
        Path of the verified archive.

    Raises:
        ValueError: If ``md5`` is not 32 hexadecimal digits.
        DownloadError: If ``download_dir`` cannot be written (checked before the transfer), the
            transfer fails or the checksum does not match; the message says what to do, and the
            partial file is gone, so the next run starts afresh.
        OSError: If ``download_dir`` cannot be created.
    """
    from dlnotes import runtime

    md5 = md5.strip().lower()
    if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
        raise ValueError(f"md5 must be 32 hexadecimal digits, got {md5!r}")
    download_dir = Path(download_dir).expanduser().resolve()
    download_dir.mkdir(parents=True, exist_ok=True)
    _check_writable(download_dir)
    keras = runtime.import_quietly("keras")  # after the checks: it takes seconds
    name = filename or PurePosixPath(url.split("?", 1)[0]).name or "archive.zip"
    try:
        path = keras.utils.get_file(
            fname=name,
            origin=url,
            file_hash=md5,
            hash_algorithm="md5",
            cache_dir=str(download_dir),
            cache_subdir="",
        )
    except ValueError as error:  # raised by get_file for a checksum mismatch after download
        (download_dir / name).unlink(missing_ok=True)
        raise DownloadError(
            f"the file downloaded from {url} is incomplete or corrupted (md5 is not {md5}); "
            "it was deleted, run the command again"
        ) from error
    except Exception as error:  # get_file wraps URL errors in a bare Exception
        close_http_errors(error)
        raise DownloadError(
            f"could not download {url}: {error}. Run the command again to retry"
        ) from error
    if Path(path).resolve() != download_dir / name:  # get_file chose another folder after all
        Path(path).unlink(missing_ok=True)
        raise DownloadError(
            f"the archive was saved to {path} instead of {download_dir} (deleted again): choose "
            "a destination in a writable folder"
        )
    return Path(path)


def _check_members(archive: zipfile.ZipFile, source: Path) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    for member in members:
        name = PurePosixPath(member.filename)
        if name.is_absolute() or ".." in name.parts or member.filename.startswith(("/", "\\")):
            raise DownloadError(
                f"refusing to extract {source}: entry {member.filename!r} would land outside "
                "the destination"
            )
    return members


def _inside_top_folder(members: list[zipfile.ZipInfo]) -> list[zipfile.ZipInfo]:
    """The entries under ``tiny-imagenet-200/``, renamed to their path inside that folder.

    Extracting these into a folder makes it the dataset root. Only the copies are renamed;
    :mod:`zipfile` still checks each entry's data against its original name.
    """
    top = f"{ARCHIVE_TOP_FOLDER}/"
    inside = []
    for member in members:
        if member.filename.startswith(top) and member.filename != top:
            renamed = copy.copy(member)
            renamed.filename = member.filename[len(top) :]
            inside.append(renamed)
    return inside


def extract_archive(archive_path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """Extract a Tiny ImageNet zip so that ``root`` becomes the dataset root, atomically.

    The content of the archive's top folder is extracted into a staging folder beside ``root``
    and renamed into place (:func:`dlnotes.runtime.storage.staged_folder`); entries outside that
    folder are not extracted.

    Args:
        archive_path: The verified zip archive; its top folder must be ``tiny-imagenet-200/``.
        root: Final dataset root (the folder that will hold ``wnids.txt``); must not exist yet.

    Returns:
        ``root``.

    Raises:
        FileExistsError: If ``root`` exists already.
        DownloadError: If the file is not a zip archive, lacks ``wnids.txt`` in its top folder,
            or has entries that escape the destination. Nothing is left behind in that case.
    """
    from dlnotes.runtime import storage

    archive_path, root = Path(archive_path), Path(root).expanduser().resolve()
    if root.exists():
        raise FileExistsError(f"destination exists already: {root}")
    # Removes the staging folders of extractions that were killed; those of running ones stay.
    with storage.staged_folder(root) as staging:
        try:
            with zipfile.ZipFile(archive_path) as archive:
                members = _inside_top_folder(_check_members(archive, archive_path))
                archive.extractall(staging, members=members)
        except zipfile.BadZipFile as error:
            raise DownloadError(
                f"{archive_path} is not a valid zip archive ({error}); delete it and run again"
            ) from error
        if not is_prepared(staging):
            raise DownloadError(
                f"{archive_path} does not look like Tiny ImageNet: no "
                f"{ARCHIVE_TOP_FOLDER}/wnids.txt inside"
            )
    return root


def prepare_tiny_imagenet(
    root: str | os.PathLike[str],
    *,
    url: str = TINY_IMAGENET_URL,
    md5: str = TINY_IMAGENET_MD5,
    download_dir: str | os.PathLike[str] | None = None,
) -> Path:
    """Make sure ``root`` holds Tiny ImageNet: download, verify and extract only what is missing.

    Args:
        root: Dataset root to create, e.g. :func:`dlnotes.runtime.paths.data_dir`.
        url: Archive address (the official one by default).
        md5: Expected checksum of the archive.
        download_dir: Where to keep the archive; defaults to ``root``'s parent folder.

    Returns:
        The dataset root.

    Raises:
        DownloadError: See :func:`fetch_archive` and :func:`extract_archive`.
        ValueError: For a malformed checksum.
    """
    root = Path(root).expanduser().resolve()
    if is_prepared(root):
        return root
    if root.exists() and not root.is_dir():
        hint = (
            " (a zip archive: an earlier version of this command saved the download there when "
            "its address ended in the folder's name; delete it and run the command again)"
            if zipfile.is_zipfile(root)
            else ""
        )
        raise DownloadError(f"{root} is a file, not a folder: choose another destination{hint}")
    if root.exists() and any(root.iterdir()):
        raise DownloadError(
            f"{root} exists but holds no wnids.txt: it is not a Tiny ImageNet root. Move it away "
            "or choose another destination"
        )
    if root.exists():
        root.rmdir()
    folder = Path(download_dir if download_dir is not None else root.parent).expanduser().resolve()
    archive = fetch_archive(url, md5, folder, filename=archive_filename(url, root, folder))
    return extract_archive(archive, root)


def main(argv: list[str] | None = None) -> int:
    """The ``dlnotes-download`` command: download, verify and extract Tiny ImageNet.

    Usage: ``dlnotes-download [--url URL] [--md5 HEX] [--dest DIR]``. DIR is the dataset root, the
    folder that will hold ``wnids.txt``; by default ``$DLNOTES_DATA_DIR`` or
    ``~/.cache/dlnotes/tiny-imagenet-200``. URL and HEX default to ``$DLNOTES_DATA_URL`` and
    ``$DLNOTES_DATA_MD5``, else the official archive. A second run finds the data and does
    nothing.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 1 with a message on standard error otherwise.
    """
    from dlnotes.runtime import paths

    parser = argparse.ArgumentParser(
        prog=DOWNLOAD_COMMAND,
        description="Download Tiny ImageNet, verify its checksum and extract it where the course "
        "looks for it.",
    )
    parser.add_argument(
        "--url", default=None, help=f"archive address (default: {TINY_IMAGENET_URL})"
    )
    parser.add_argument(
        "--md5", default=None, help=f"MD5 checksum of the archive (default: {TINY_IMAGENET_MD5})"
    )
    parser.add_argument("--dest", type=Path, default=None, help="dataset root to create")
    args = parser.parse_args(argv)
    root = args.dest if args.dest is not None else paths.data_dir()
    if is_prepared(root):
        print(f"Tiny ImageNet is already present at {root}; nothing to do.")
        return 0
    try:
        url, md5 = archive_source()
        url, md5 = args.url or url, args.md5 or md5
        root = prepare_tiny_imagenet(root, url=url, md5=md5)
    except (DownloadError, ValueError, OSError) as error:  # OSError: e.g. a full disk
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"Tiny ImageNet is ready at {root}")
    return 0
