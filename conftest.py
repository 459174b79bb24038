"""Shared test set-up: real data, real weights, and every chapter executed exactly once.

``pytest_configure`` extracts ``../shared/data/tiny-imagenet-mini.zip`` (a real 10-class subset
of Tiny ImageNet in the original layout) into a temporary folder once per run and points
``DLNOTES_DATA_DIR`` at it for the unit tests. It also points ``DLNOTES_PRETRAINED_DIR`` at
``../shared/models`` (real MobileNetV2 ImageNet weights) unless it is set already. Without the
archive (a user's clone) a synthetic dataset in the identical layout is written instead, and
without the weights the chapters fall back to their stand-ins; on CI (``CI`` set) both are required.

Each notebook in ``notebooks/`` is a test item (marked ``slow``), and every chapter a run selects
is executed once, by nbmake's own command: ``pytest --nbmake --overwrite`` on copies of the
notebooks in the run's temporary folder (:class:`ChapterRun`). It starts when collection ends, in
a process of its own, while the unit tests run; the chapter items, and after them the tests that
read the executed copies (those that use the ``executed_notebooks`` fixture: the book build and the
chapters' results), run last. The book-build test renders the book from those copies instead of
executing the chapters a second time. The notebooks run as a new user's would: without data,
which the first chapter downloads from a loopback mirror of the mini archive
(``DLNOTES_DATA_URL``/``DLNOTES_DATA_MD5``) and the others reuse.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import numpy as np
import pytest

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
    run = _state.get("chapters")
    if isinstance(run, ChapterRun):
        run.close()
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


# Every chapter executed once, by nbmake ------------------------------------------------------

NOTEBOOKS = REPO_ROOT / "notebooks"
MIRROR_PATH = "/mirror/tiny-imagenet-200.zip"
ANSI_COLOUR = re.compile(r"#x1B\[[0-9;]*m")  # terminal colours, as JUnit XML writes them


class ChapterRun:
    """nbmake, run by its own command on copies of chapter notebooks, next to the unit tests.

    The command is ``pytest --nbmake --overwrite`` on copies in a temporary folder: nbmake writes
    each executed notebook over its copy and ``--junitxml`` records each chapter's result. Its
    kernels start as a new user's would: without data (``DLNOTES_DATA_DIR`` names an empty
    folder) and with a loopback mirror of the mini archive as the download address, so the first
    chapter that needs data downloads it and the others find it. The environment is fixed when
    the command starts, whatever the unit tests change later.
    """

    def __init__(self, folder: Path, notebooks: list[Path], timeout: int) -> None:
        folder.mkdir(parents=True)
        self.notebooks = [Path(shutil.copy(notebook, folder)) for notebook in notebooks]
        self.report = folder / "nbmake.xml"
        self.log = folder / "nbmake.log"
        archive = dataset_archive(Path(_state["root"]))
        self.mirror = ArchiveServer().__enter__()
        self.mirror.files[MIRROR_PATH] = archive
        environment = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
        environment.update(  # a non-inline matplotlib backend would drop every plot (MPLBACKEND)
            DLNOTES_DATA_DIR=str(folder / "downloaded" / "tiny-imagenet-200"),
            DLNOTES_DATA_URL=self.mirror.url(MIRROR_PATH),
            DLNOTES_DATA_MD5=md5(archive),
        )
        command = [sys.executable, "-m", "pytest", "--nbmake", "--overwrite"]
        command += [f"--nbmake-timeout={timeout}", f"--junitxml={self.report}"]
        command += ["-c", os.devnull, "--rootdir", str(folder), "-p", "no:cacheprovider"]
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [*command, *map(str, self.notebooks)],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=folder,
            )

    def results(self) -> dict[str, tuple[float, str | None]]:
        """Each chapter's seconds and nbmake's failure text (None: passed); waits for the run."""
        self.process.wait()
        if not self.report.is_file():
            tail = self.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"nbmake stopped without a report ({self.log}):\n{tail}")
        results = {}
        for case in ElementTree.parse(self.report).iter("testcase"):
            failure = case.find("failure")
            text = None
            if failure is not None:  # the error's last line, then the failing cell and traceback
                text = ANSI_COLOUR.sub("", f"{failure.get('message')}\n\n{failure.text}")
            results[case.get("name", "")] = (float(case.get("time", 0)), text)
        return results

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.mirror.__exit__(None, None, None)


class ChapterFailed(Exception):
    """nbmake's report of a chapter that did not execute."""


class Chapter(pytest.Item):
    """A chapter's notebook: passes when nbmake executed it without an error."""

    def runtest(self) -> None:
        run = _state["chapters"]
        _, failure = run.results().get(self.name, (0.0, f"nbmake did not run (log: {run.log})"))
        if failure is not None:
            raise ChapterFailed(failure)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ChapterFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


class ChapterFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        chapter = Chapter.from_parent(self, name=self.path.name)
        chapter.add_marker(pytest.mark.slow)
        yield chapter


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    # With --nbmake, nbmake's own items execute the notebooks given, in this process.
    nbmake_collects = parent.config.getoption("nbmake")
    if file_path.suffix == ".ipynb" and file_path.parent == NOTEBOOKS and not nbmake_collects:
        return ChapterFile.from_parent(parent, path=file_path)
    return None


def uses_chapters(item: pytest.Item) -> bool:
    return "executed_notebooks" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(session: pytest.Session, items: list[pytest.Item]) -> None:
    # The chapters execute while the other tests run: their items, and the tests that read what
    # they produced, come last.
    def last(item: pytest.Item) -> int:
        if isinstance(item, Chapter):
            return 1
        return 2 if uses_chapters(item) else 0

    items.sort(key=last)


def pytest_collection_finish(session: pytest.Session) -> None:
    # Starts nbmake on the selected chapters, or on all of them when a selected test reads them.
    chapters = {item.path for item in session.items if isinstance(item, Chapter)}
    if any(uses_chapters(item) for item in session.items):
        chapters = set(NOTEBOOKS.glob("*.ipynb"))
    if chapters and not session.config.option.collectonly:
        timeout = int(session.config.getoption("nbmake_timeout"))
        folder = Path(_state["workdir"]) / "chapters"
        _state["chapters"] = ChapterRun(folder, sorted(chapters), timeout)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    run = _state.get("chapters")
    if isinstance(run, ChapterRun) and run.process.poll() is not None and run.report.is_file():
        for name, (seconds, failure) in run.results().items():
            outcome = "passed" if failure is None else "FAILED"
            terminalreporter.write_line(f"nbmake: {name} {outcome} in {seconds:.0f} s")


@pytest.fixture(scope="session")
def executed_notebooks() -> dict[str, Path]:
    """Every chapter's executed notebook (nbmake's copy)."""
    run = _state["chapters"]
    failed = [name for name, (_, failure) in run.results().items() if failure is not None]
    if failed:
        pytest.fail(f"chapters failed to execute: {failed}")
    return {notebook.name: notebook for notebook in run.notebooks}


@pytest.fixture(scope="session")
def chapter_mirror_requests(executed_notebooks: dict[str, Path]) -> list[str]:
    """The requests the chapters' loopback mirror received."""
    return list(_state["chapters"].mirror.requests)


@pytest.fixture(scope="session")
def real_mini_archive() -> bool:
    """Whether the tests run on the real mini archive (not the synthetic fallback)."""
    return str(_state.get("kind", "")).startswith("real subset")
