"""The download path end to end, against a loopback HTTP server serving real archives."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from conftest import ArchiveServer, dataset_archive, md5, mount_namespace, run_script
from dlnotes import data
from dlnotes.data import download

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data_scripts" / "download_tiny_imagenet.py"


@pytest.fixture(scope="module")
def archive_bytes(tiny_imagenet: Path) -> bytes:
    return dataset_archive(tiny_imagenet)


@pytest.mark.slow
def test_script_downloads_verifies_extracts_and_then_does_nothing(
    server: ArchiveServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    server.files["/tiny.zip"] = archive_bytes
    root = tmp_path / "data" / "tiny-imagenet-200"
    args = ("--url", server.url("/tiny.zip"), "--md5", md5(archive_bytes), "--dest", str(root))
    first = run_script(SCRIPT, *args)
    assert first.returncode == 0, first.stderr
    assert "ready at" in first.stdout
    paths, labels, class_ids = data.read_split(root, "train")
    assert len(paths) == len(labels) > 0 and class_ids
    assert not list(root.parent.glob(".tiny-imagenet-200.partial-*"))
    second = run_script(SCRIPT, *args)
    assert second.returncode == 0 and "nothing to do" in second.stdout
    assert server.requests == ["/tiny.zip"]  # the second run made no request


def test_corrupt_download_is_reported_deleted_and_recovered(
    server: ArchiveServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    damaged = bytearray(archive_bytes)
    damaged[len(damaged) // 2] ^= 0xFF
    server.files["/tiny.zip"] = bytes(damaged)
    root = tmp_path / "tiny-imagenet-200"
    with pytest.raises(download.DownloadError, match="incomplete or corrupted"):
        download.prepare_tiny_imagenet(root, url=server.url("/tiny.zip"), md5=md5(archive_bytes))
    assert not root.exists()
    assert not (tmp_path / "tiny.zip").exists()
    server.files["/tiny.zip"] = archive_bytes
    assert (
        download.prepare_tiny_imagenet(root, url=server.url("/tiny.zip"), md5=md5(archive_bytes))
        == root
    )
    assert data.read_class_ids(root)


@pytest.mark.slow
def test_interrupted_download_gives_a_clear_message_and_recovers(
    server: ArchiveServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    server.files["/tiny.zip"] = archive_bytes
    server.truncate.add("/tiny.zip")
    root = tmp_path / "tiny-imagenet-200"
    args = ("--url", server.url("/tiny.zip"), "--md5", md5(archive_bytes), "--dest", str(root))
    failed = run_script(SCRIPT, *args)
    assert failed.returncode == 1
    assert "error:" in failed.stderr and "run the command again" in failed.stderr.lower()
    assert not root.exists()
    server.truncate.clear()
    recovered = run_script(SCRIPT, *args)
    assert recovered.returncode == 0, recovered.stderr
    assert download.is_prepared(root)


def test_missing_url_is_a_clear_error(server: ArchiveServer, tmp_path: Path) -> None:
    with pytest.raises(download.DownloadError, match="could not download"):
        download.prepare_tiny_imagenet(tmp_path / "t", url=server.url("/nope.zip"), md5="0" * 32)


def test_a_partial_file_left_by_a_killed_run_is_replaced(
    server: ArchiveServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    (tmp_path / "tiny.zip").write_bytes(archive_bytes[:1000])  # what SIGKILL mid-transfer leaves
    server.files["/tiny.zip"] = archive_bytes
    root = download.prepare_tiny_imagenet(
        tmp_path / "tiny-imagenet-200", url=server.url("/tiny.zip"), md5=md5(archive_bytes)
    )
    assert download.is_prepared(root)
    assert (tmp_path / "tiny.zip").read_bytes() == archive_bytes


def test_entries_escaping_the_destination_are_refused(
    server: ArchiveServer, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("tiny-imagenet-200/wnids.txt", "n01443537\n")
        archive.writestr("../../escaped.txt", "gotcha")
    blob = buffer.getvalue()
    server.files["/evil.zip"] = blob
    target = tmp_path / "a" / "b" / "tiny-imagenet-200"
    with pytest.raises(download.DownloadError, match="outside the destination"):
        download.prepare_tiny_imagenet(target, url=server.url("/evil.zip"), md5=md5(blob))
    assert not any(tmp_path.rglob("escaped.txt"))
    assert not target.exists()
    assert not list(target.parent.glob(".tiny-imagenet-200.partial-*"))


def test_archive_without_the_dataset_is_refused(server: ArchiveServer, tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("something/else.txt", "x")
    blob = buffer.getvalue()
    server.files["/other.zip"] = blob
    with pytest.raises(download.DownloadError, match="does not look like Tiny ImageNet"):
        download.prepare_tiny_imagenet(tmp_path / "t", url=server.url("/other.zip"), md5=md5(blob))
    assert not (tmp_path / "t").exists()


def test_not_a_zip_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.zip"
    bogus.write_bytes(b"<html>captive portal</html>")
    with pytest.raises(download.DownloadError, match="not a valid zip archive"):
        download.extract_archive(bogus, tmp_path / "root")


def test_bad_checksum_format_and_occupied_destination(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 hexadecimal digits, got 'xyz'"):
        download.fetch_archive("http://127.0.0.1:9/x.zip", "xyz", tmp_path)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(download.DownloadError, match="not a Tiny ImageNet root"):
        download.prepare_tiny_imagenet(occupied, url="http://127.0.0.1:9/x.zip")
    assert (occupied / "notes.txt").read_text() == "mine"
    with pytest.raises(FileExistsError, match="exists already"):
        download.extract_archive(tmp_path / "x.zip", occupied)


@pytest.mark.slow
def test_console_command_uses_the_mirror_of_the_environment(
    server: ArchiveServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    command = Path(sys.executable).with_name("dlnotes-download")
    assert command.is_file(), "pip install -e . installs the dlnotes-download command"
    server.files["/mirror/tiny.zip"] = archive_bytes
    root = tmp_path / "tiny-imagenet-200"
    environment = {
        **os.environ,
        "DLNOTES_DATA_DIR": str(root),
        "DLNOTES_DATA_URL": server.url("/mirror/tiny.zip"),
        "DLNOTES_DATA_MD5": md5(archive_bytes),
    }
    result = subprocess.run(
        [str(command)], capture_output=True, text=True, env=environment, timeout=600
    )
    assert result.returncode == 0, result.stderr
    assert f"ready at {root}" in result.stdout
    assert server.requests == ["/mirror/tiny.zip"]
    assert data.read_class_ids(root)


def test_archive_source_defaults_and_mirror(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DLNOTES_DATA_URL", raising=False)
    monkeypatch.delenv("DLNOTES_DATA_MD5", raising=False)
    assert download.archive_source() == (download.TINY_IMAGENET_URL, download.TINY_IMAGENET_MD5)
    monkeypatch.setenv("DLNOTES_DATA_URL", "http://mirror.example/t.zip")
    with pytest.raises(ValueError, match="set both DLNOTES_DATA_URL and DLNOTES_DATA_MD5"):
        download.archive_source()
    monkeypatch.setenv("DLNOTES_DATA_MD5", "a" * 32)
    assert download.archive_source() == ("http://mirror.example/t.zip", "a" * 32)


def test_error_messages_name_the_download_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="run dlnotes-download"):
        data.read_class_ids(tmp_path)


# Extracts 20 entries of the archive, then SIGKILLs its own process (a kill mid-extraction).
KILLED_DURING_EXTRACTION = """
import os, signal, sys, zipfile
from dlnotes.data import download

def extract_some_then_die(self, path, members=None, pwd=None):
    for member in members[:20]:
        self.extract(member, path)
    os.kill(os.getpid(), signal.SIGKILL)

zipfile.ZipFile.extractall = extract_some_then_die
sys.exit(download.main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_a_run_killed_during_extraction_is_cleaned_up_by_the_next(
    server: ArchiveServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    server.files["/tiny.zip"] = archive_bytes
    root = tmp_path / "tiny-imagenet-200"
    args = ("--url", server.url("/tiny.zip"), "--md5", md5(archive_bytes), "--dest", str(root))
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_DURING_EXTRACTION, *args], capture_output=True, timeout=600
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (left,) = tmp_path.glob(".tiny-imagenet-200.partial-*")
    assert any(path.is_file() for path in left.rglob("*"))  # half extracted
    assert not root.exists()
    again = run_script(SCRIPT, *args)
    assert again.returncode == 0, again.stderr
    assert download.is_prepared(root)
    assert not list(tmp_path.glob(".tiny-imagenet-200.partial-*"))
    assert server.requests == ["/tiny.zip"]  # the verified archive was kept


def test_a_destination_that_is_a_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    for dest, message in [(a_file, "is a file, not a folder"), (a_file / "tiny", "error: ")]:
        code = download.main(
            ["--url", "http://127.0.0.1:9/x.zip", "--md5", "0" * 32, "--dest", str(dest)]
        )
        error = capsys.readouterr().err
        assert code == 1 and message in error and "Traceback" not in error, error
    assert a_file.read_text() == "mine"


def test_an_address_ending_in_the_destinations_name_is_not_saved_onto_it(
    server: ArchiveServer, archive_bytes: bytes, tmp_path: Path, capsys
) -> None:
    server.files["/mirror/tiny-imagenet-200"] = archive_bytes
    root = tmp_path / "tiny-imagenet-200"
    url = server.url("/mirror/tiny-imagenet-200")
    for _ in range(2):  # the second run finds the data
        code = download.main(["--url", url, "--md5", md5(archive_bytes), "--dest", str(root)])
        out, error = capsys.readouterr()
        assert code == 0, error
    assert "nothing to do" in out
    assert data.read_class_ids(root)
    assert (tmp_path / "tiny-imagenet-200.zip").read_bytes() == archive_bytes  # kept beside
    assert server.requests == ["/mirror/tiny-imagenet-200"]


# Runs inside a private mount namespace, where the destination's folder is a read-only tmpfs.
READ_ONLY_DRIVER = """
import json, subprocess, sys
from pathlib import Path

mount, command = Path(sys.argv[1]), json.loads(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,ro", "tmpfs", str(mount)], check=True)
result = subprocess.run(command, capture_output=True, text=True)
print(json.dumps([result.returncode, result.stderr]))
"""


def test_a_read_only_destination_is_an_error_before_any_download(
    server: ArchiveServer, archive_bytes: bytes, tmp_path: Path
) -> None:
    mount = tmp_path / "read-only"
    mount.mkdir()
    prefix = mount_namespace(mount)
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (needs root or unprivileged user namespaces)")
    server.files["/tiny.zip"] = archive_bytes
    root = mount / "tiny-imagenet-200"
    command = [sys.executable, str(SCRIPT), "--url", server.url("/tiny.zip")]
    command += ["--md5", md5(archive_bytes), "--dest", str(root)]
    driver = subprocess.run(
        [*prefix, sys.executable, "-c", READ_ONLY_DRIVER, str(mount), json.dumps(command)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    returncode, error = json.loads(driver.stdout)
    assert returncode == 1, error
    assert f"error: cannot write into {mount} (Read-only file system)" in error
    assert "Traceback" not in error
    assert server.requests == []  # nothing was downloaded, into /tmp/.keras or anywhere
