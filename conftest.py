"""Shared test set-up: real data, real weights, and every chapter executed exactly once.

``pytest_configure`` extracts ``../shared/data/tiny-imagenet-mini.zip`` (a real 10-class subset
of Tiny ImageNet in the original layout) into a temporary folder once per run and points
``DLNOTES_DATA_DIR`` at it for the unit tests. It also points ``DLNOTES_PRETRAINED_DIR`` at
``../shared/models`` (real MobileNetV2 ImageNet weights) unless it is set already. Without the
archive (a user's clone) a synthetic dataset in the identical layout is written instead, and
without the weights the chapters fall back to their stand-ins; on CI (``CI`` set) both are required.

The notebooks in ``notebooks/`` are executed by nbmake's runner, once per run, before the tests
(``testpaths`` lists them first), and each executed copy is kept: the book-build test renders the
book from those copies instead of executing the chapters a second time. The notebooks run as a
new user's would: without data, which the first chapter downloads from a loopback mirror of the
mini archive (``DLNOTES_DATA_URL``/``DLNOTES_DATA_MD5``) and the others reuse.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from nbmake.pytest_items import NotebookFailedException, NotebookItem

from dlnotes.data import synthetic

REPO_ROOT = Path(__file__).resolve().parent
MINI_ARCHIVE_ENV = "DLNOTES_MINI_ARCHIVE"
DEFAULT_MINI_ARCHIVE = REPO_ROOT.parent / "shared" / "data" / "tiny-imagenet-mini.zip"
PRETRAINED_ENV = "DLNOTES_PRETRAINED_DIR"
DEFAULT_PRETRAINED_DIR = REPO_ROOT.parent / "shared" / "models"

_state: dict[str, Any] = {}


def mini_archive() -> Path:
    """Path of the real mini archive (``$DLNOTES_MINI_ARCHIVE`` or ``../shared/data/…``)."""
    return Path(os.environ.get(MINI_ARCHIVE_ENV, DEFAULT_MINI_ARCHIVE))


def pretrained_dir() -> Path | None:
    """The folder of real pretrained weights for the tests (``$DLNOTES_PRETRAINED_DIR`` or
    ``../shared/models``), or None when neither holds them."""
    folder = Path(os.environ.get(PRETRAINED_ENV) or DEFAULT_PRETRAINED_DIR)
    return folder if (folder / "mobilenet_v2_1.0_224.weights.h5").is_file() else None


def pytest_configure(config: pytest.Config) -> None:
    weights = pretrained_dir()
    if weights is not None:
        os.environ[PRETRAINED_ENV] = str(weights)
    elif os.environ.get("CI"):
        raise pytest.UsageError(
            f"CI must test with real pretrained weights, but {DEFAULT_PRETRAINED_DIR} holds none "
            f"(set {PRETRAINED_ENV} to a folder with the two MobileNetV2 weight files)"
        )
    workdir = Path(tempfile.mkdtemp(prefix="dlnotes-tests-"))
    archive = mini_archive()
    if archive.is_file():
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(workdir)
        root = workdir / "tiny-imagenet-200"
        kind = f"real subset from {archive}"
    elif os.environ.get("CI"):
        raise pytest.UsageError(
            f"CI must test on the real mini archive, but {archive} is missing "
            f"(set {MINI_ARCHIVE_ENV} to its path)"
        )
    else:
        root = synthetic.write_tiny_imagenet(workdir, num_classes=4, train_per_class=20)
        kind = "synthetic stand-in (the real mini archive was not found)"
    _state.update(workdir=workdir, root=root, kind=kind)
    os.environ["DLNOTES_DATA_DIR"] = str(root)
    # The trainer's caches stay in the run's temporary folder, not in the user's cache.
    os.environ.setdefault("DLNOTES_DECODE_CACHE", str(workdir / "decoded"))
    os.environ.setdefault("DLNOTES_COMPILATION_CACHE", str(workdir / "compiled"))
    os.environ.setdefault("DLNOTES_PROFILE", "smoke")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_report_header(config: pytest.Config) -> str:
    weights = os.environ.get(PRETRAINED_ENV) or "none (the chapters use their stand-ins)"
    return (
        f"dlnotes test data: {_state.get('kind')} at {_state.get('root')}; "
        f"pretrained weights: {weights}"
    )


def pytest_unconfigure(config: pytest.Config) -> None:
    runner = _state.get("runner")
    if isinstance(runner, ChapterRunner):
        runner.close()
    workdir = _state.get("workdir")
    if isinstance(workdir, Path):
        shutil.rmtree(workdir, ignore_errors=True)


def run_script(script: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess[str]:
    """Run one of the repository's Python scripts with this interpreter and capture its output."""
    return subprocess.run(
        [sys.executable, str(script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def mount_namespace(probe_dir: Path) -> list[str] | None:
    """The ``unshare`` prefix that lets a command mount a tmpfs on ``probe_dir``, or None.

    Tests that need a full or a read-only file system run their command in a private mount
    namespace with a small tmpfs; they are skipped where none can be made (it needs root or
    unprivileged user namespaces).
    """
    candidates = [["unshare", "-m"]] if os.geteuid() == 0 else []
    candidates.append(["unshare", "-Urm"])  # unprivileged user namespaces
    for prefix in candidates:
        probe = [*prefix, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(probe_dir)]
        try:
            if subprocess.run(probe, capture_output=True, timeout=60).returncode == 0:
                return prefix
        except (FileNotFoundError, subprocess.TimeoutExpired):
            return None
    return None


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

    def __enter__(self) -> ArchiveServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server() -> Iterator[ArchiveServer]:
    """A loopback HTTP server for download tests (stopped after the test)."""
    with ArchiveServer() as archive_server:
        yield archive_server


def dataset_archive(root: Path) -> bytes:
    """The real mini archive's bytes, or (without it) a zip of ``root`` in the archive's layout."""
    archive = mini_archive()
    if archive.is_file():
        return archive.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zipped:
        for path in sorted(root.rglob("*")):
            zipped.write(path, Path("tiny-imagenet-200") / path.relative_to(root))
    return buffer.getvalue()


def md5(blob: bytes) -> str:
    """MD5 checksum of bytes, as the download expects it."""
    return hashlib.md5(blob).hexdigest()


def decompression_bomb(width: int = 50_000, height: int = 50_000) -> bytes:
    """An 8×8 JPEG whose header declares ``width`` × ``height`` pixels: a decompression bomb."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), "gray").save(buffer, "JPEG")
    blob = bytearray(buffer.getvalue())
    frame = blob.find(b"\xff\xc0")  # start of frame: marker, length, precision, height, width
    struct.pack_into(">HH", blob, frame + 5, height, width)
    return bytes(blob)


def tiff_image() -> bytes:
    """A 64×64 TIFF image (Pillow reads it, TensorFlow does not)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "red").save(buffer, "TIFF")
    return buffer.getvalue()


def shift_flip_candidates(image: np.ndarray, padding: int) -> list[np.ndarray]:
    """Every image a reflect-padded crop (shift ≤ padding) followed by an optional flip can give."""
    padded = np.pad(image, [(padding, padding), (padding, padding), (0, 0)], mode="reflect")
    size = image.shape[0]
    crops = [
        padded[y : y + size, x : x + size]
        for y in range(2 * padding + 1)
        for x in range(2 * padding + 1)
    ]
    return crops + [c[:, ::-1] for c in crops]


@pytest.fixture(scope="session")
def tiny_imagenet() -> Path:
    """The Tiny ImageNet root shared by the whole run (read-only by convention)."""
    return Path(_state["root"])


@pytest.fixture
def tiny_imagenet_copy(tmp_path: Path, tiny_imagenet: Path) -> Path:
    """A private, writable copy of the dataset for tests that damage it."""
    target = tmp_path / "tiny-imagenet-200"
    shutil.copytree(tiny_imagenet, target)
    return target


# Every chapter executed once, by nbmake's runner ----------------------------------------------

NOTEBOOKS = REPO_ROOT / "notebooks"
MIRROR_PATH = "/mirror/tiny-imagenet-200.zip"


class ChapterRunner:
    """Executes the chapters' notebooks in a process of their own, while the unit tests run.

    ``tests/run_chapters.py`` runs them one after the other with nbmake's runner and keeps each
    executed notebook. Its kernels start as a new user's would: without data
    (``DLNOTES_DATA_DIR`` names an empty folder) and with a loopback mirror of the mini archive as
    the download address, so the first chapter that needs data downloads it and the others find
    it. Their environment is fixed when the process starts, whatever the unit tests change later.
    """

    def __init__(self, workdir: Path, timeout: int) -> None:
        self.executed = workdir / "executed"
        self.executed.mkdir(parents=True)
        self.data_dir = workdir / "downloaded" / "tiny-imagenet-200"
        self.log = workdir / "chapters.log"
        self.timeout = timeout
        self.mirror: ArchiveServer | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.failed: set[str] = set()

    def start(self, notebooks: list[Path]) -> None:
        """Start executing ``notebooks`` in order (after any notebooks started earlier)."""
        self.wait_until_idle()
        if self.mirror is None:
            archive = dataset_archive(Path(_state["root"]))
            self.mirror = ArchiveServer().__enter__()
            self.mirror.files[MIRROR_PATH] = archive
            self.md5 = md5(archive)
        environment = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
        environment.update(  # a non-inline matplotlib backend would drop every plot (MPLBACKEND)
            DLNOTES_DATA_DIR=str(self.data_dir),
            DLNOTES_DATA_URL=self.mirror.url(MIRROR_PATH),
            DLNOTES_DATA_MD5=self.md5,
        )
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    str(REPO_ROOT / "tests" / "run_chapters.py"),
                    str(self.executed),
                    str(self.timeout),
                    *map(str, notebooks),
                ],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
            )

    def wait_until_idle(self) -> None:
        if self.process is not None:
            self.process.wait()

    def result(self, notebook: Path) -> Any:
        """nbmake's result for ``notebook`` (waits until it has been executed)."""
        import json

        import nbformat
        from nbmake.nb_result import NotebookError, NotebookResult

        record = self.executed / f"{notebook.name}.result.json"
        while not record.is_file():
            if self.process is None or self.process.poll() is not None:
                if record.is_file():
                    break
                raise RuntimeError(
                    f"the chapter runner stopped before {notebook.name} (log: {self.log}):\n"
                    + self.log.read_text(errors="replace")[-3000:]
                )
            time.sleep(0.5)
        error = json.loads(record.read_text())["error"]
        if error is not None:
            self.failed.add(notebook.name)
        return NotebookResult(
            nb=nbformat.read(str(self.executed / notebook.name), as_version=4),
            error=None if error is None else NotebookError(**error),
        )

    def executed_notebooks(self) -> dict[str, Path]:
        """Every notebook of ``notebooks/``, executed (those not run yet are run now)."""
        missing = [
            notebook
            for notebook in sorted(NOTEBOOKS.glob("*.ipynb"))
            if not (self.executed / f"{notebook.name}.result.json").is_file()
        ]
        if missing:
            self.start(missing)
        for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
            self.result(notebook)
        return {path.name: path for path in sorted(self.executed.glob("*.ipynb"))}

    def close(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.mirror is not None:
            self.mirror.__exit__(None, None, None)


def chapter_runner(config: pytest.Config) -> ChapterRunner:
    runner = _state.get("runner")
    if not isinstance(runner, ChapterRunner):
        timeout = int(config.getoption("nbmake_timeout") or 600)
        runner = ChapterRunner(Path(_state["workdir"]) / "chapters", timeout)
        _state["runner"] = runner
    return runner


class ChapterExecution(NotebookItem):  # type: ignore[misc]
    """A notebook test item: nbmake's item, reporting the run of :class:`ChapterRunner`."""

    def runtest(self) -> None:
        result = chapter_runner(self.config).result(Path(self.filename))
        if result.error is not None:
            raise NotebookFailedException(result)


class ChapterNotebook(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        item = ChapterExecution.from_parent(self, filename=str(self.path))
        item.add_marker(pytest.mark.slow)
        yield item


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix == ".ipynb" and file_path.parent == NOTEBOOKS:
        return ChapterNotebook.from_parent(parent, path=file_path)
    return None


USES_EXECUTED_CHAPTERS = ("test_book_build.py", "test_chapter_results.py")


def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    # The chapters execute in their own process while the other tests run: their items, and the
    # tests that read what they produced, come last.
    def last(item: pytest.Item) -> int:
        if isinstance(item, ChapterExecution):
            return 1
        return 2 if item.path.name in USES_EXECUTED_CHAPTERS else 0

    items.sort(key=last)


def pytest_collection_finish(session: pytest.Session) -> None:
    notebooks = [
        Path(item.filename) for item in session.items if isinstance(item, ChapterExecution)
    ]
    if notebooks:
        chapter_runner(session.config).start(notebooks)


@pytest.fixture(scope="session")
def executed_notebooks(request: pytest.FixtureRequest) -> dict[str, Path]:
    """Every chapter's executed notebook (executed by the notebook items, or now)."""
    runner = chapter_runner(request.config)
    notebooks = runner.executed_notebooks()
    if runner.failed:
        pytest.fail(f"chapters failed to execute: {sorted(runner.failed)}")
    return notebooks


@pytest.fixture(scope="session")
def chapter_mirror_requests(
    executed_notebooks: dict[str, Path], request: pytest.FixtureRequest
) -> list[str]:
    """The requests the chapters' loopback mirror received."""
    mirror = chapter_runner(request.config).mirror
    return list(mirror.requests) if mirror is not None else []


@pytest.fixture(scope="session")
def real_mini_archive() -> bool:
    """Whether the tests run on the real mini archive (not the synthetic fallback)."""
    return str(_state.get("kind", "")).startswith("real subset")
