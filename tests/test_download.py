"""The download path end to end, against a loopback HTTP server serving real archives."""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_script

from dlnotes import data, download

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "data_scripts" / "download_tiny_imagenet.py"


class ArchiveServer:
    """Serves byte strings on 127.0.0.1; ``truncate`` paths send half the body, then hang up."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.requests: list[str] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.path in server.truncate:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"


@pytest.fixture
def server() -> Iterator[ArchiveServer]:
    archive_server = ArchiveServer()
    archive_server.thread.start()
    yield archive_server
    archive_server.httpd.shutdown()
    archive_server.httpd.server_close()


def _zip_folder(root: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(root.rglob("*")):
            archive.write(path, Path("tiny-imagenet-200") / path.relative_to(root))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def archive_bytes(tiny_imagenet: Path) -> bytes:
    from conftest import mini_archive

    archive = mini_archive()
    return archive.read_bytes() if archive.is_file() else _zip_folder(tiny_imagenet)


def md5(blob: bytes) -> str:
    return hashlib.md5(blob).hexdigest()


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
