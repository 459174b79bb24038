"""Download and unpack Tiny ImageNet safely.

* The archive is fetched with :func:`keras.utils.get_file`, which shows a progress bar, checks
  the MD5 checksum, deletes a partial file when the transfer fails and re-downloads a file whose
  checksum does not match (so an interrupted run recovers on the next try).
* Nothing is extracted before the checksum matches. Extraction goes to a temporary folder next to
  the destination and is renamed into place only once complete, so the destination either holds
  the whole dataset or does not exist.
* Archive entries that would land outside the destination (absolute paths, ``..``) are refused.
* A second run finds the dataset and does nothing, not even a network request.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
TINY_IMAGENET_MD5 = "90528d7ca1a48142e341f4ef8d21d0de"
ARCHIVE_TOP_FOLDER = "tiny-imagenet-200"


class DownloadError(RuntimeError):
    """The archive could not be fetched, or what arrived is not the expected archive."""


def is_prepared(root: str | os.PathLike[str]) -> bool:
    """Tell whether ``root`` already holds an extracted dataset (``wnids.txt`` present)."""
    return (Path(root) / "wnids.txt").is_file()


def fetch_archive(url: str, md5: str, download_dir: str | os.PathLike[str]) -> Path:
    """Download ``url`` into ``download_dir`` unless a file with the right checksum is there.

    Args:
        url: Address of the zip archive.
        md5: Expected MD5 checksum (32 hex digits).
        download_dir: Folder that keeps the archive.

    Returns:
        Path of the verified archive.

    Raises:
        ValueError: If ``md5`` is not 32 hexadecimal digits.
        DownloadError: If the transfer fails or the checksum does not match; the message says
            what to do, and the partial file is gone, so the next run starts afresh.
    """
    import keras

    md5 = md5.strip().lower()
    if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5):
        raise ValueError(f"md5 must be 32 hexadecimal digits, got {md5!r}")
    download_dir = Path(download_dir).expanduser().resolve()
    download_dir.mkdir(parents=True, exist_ok=True)
    name = PurePosixPath(url.split("?", 1)[0]).name or "archive.zip"
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
        raise DownloadError(
            f"could not download {url}: {error}. Run the command again to retry"
        ) from error
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


def extract_archive(archive_path: str | os.PathLike[str], root: str | os.PathLike[str]) -> Path:
    """Extract a Tiny ImageNet zip so that ``root`` becomes the dataset root, atomically.

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
    archive_path, root = Path(archive_path), Path(root).expanduser().resolve()
    if root.exists():
        raise FileExistsError(f"destination exists already: {root}")
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        try:
            with zipfile.ZipFile(archive_path) as archive:
                members = _check_members(archive, archive_path)
                archive.extractall(staging, members=members)
        except zipfile.BadZipFile as error:
            raise DownloadError(
                f"{archive_path} is not a valid zip archive ({error}); delete it and run again"
            ) from error
        extracted = staging / ARCHIVE_TOP_FOLDER
        if not is_prepared(extracted):
            raise DownloadError(
                f"{archive_path} does not look like Tiny ImageNet: no "
                f"{ARCHIVE_TOP_FOLDER}/wnids.txt inside"
            )
        os.replace(extracted, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
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
        root: Dataset root to create, e.g. :func:`dlnotes.paths.data_dir`.
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
    if root.exists() and any(root.iterdir()):
        raise DownloadError(
            f"{root} exists but holds no wnids.txt: it is not a Tiny ImageNet root. Move it away "
            "or choose another destination"
        )
    if root.exists():
        root.rmdir()
    archive = fetch_archive(url, md5, download_dir if download_dir is not None else root.parent)
    return extract_archive(archive, root)
