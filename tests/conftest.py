"""Shared test set-up: one real Tiny ImageNet subset for every test and every notebook.

``pytest_configure`` extracts ``../shared/data/tiny-imagenet-mini.zip`` (a real 10-class subset
of Tiny ImageNet in the original layout) into a temporary folder once per run and points
``DLNOTES_DATA_DIR`` at it, so unit tests, nbmake's notebook kernels and the book build all read
the same data. Without the archive (a user's clone) a synthetic dataset in the identical layout
is written instead; on CI (``CI`` set) the real archive is required.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from dlnotes import synthetic

REPO_ROOT = Path(__file__).resolve().parents[1]
MINI_ARCHIVE_ENV = "DLNOTES_MINI_ARCHIVE"
DEFAULT_MINI_ARCHIVE = REPO_ROOT.parent / "shared" / "data" / "tiny-imagenet-mini.zip"

_state: dict[str, Path | str] = {}


def mini_archive() -> Path:
    """Path of the real mini archive (``$DLNOTES_MINI_ARCHIVE`` or ``../shared/data/…``)."""
    return Path(os.environ.get(MINI_ARCHIVE_ENV, DEFAULT_MINI_ARCHIVE))


def pytest_configure(config: pytest.Config) -> None:
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
    os.environ.setdefault("DLNOTES_PROFILE", "smoke")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_report_header(config: pytest.Config) -> str:
    return f"dlnotes test data: {_state.get('kind')} at {_state.get('root')}"


def pytest_unconfigure(config: pytest.Config) -> None:
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
