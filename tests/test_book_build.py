"""Build the whole book from the executed chapters, warnings as errors, then read it in Chromium.

The chapters are executed once per test run, by nbmake (see conftest.py): starting without data,
the first downloads the real mini archive from a loopback mirror
(``DLNOTES_DATA_URL``/``DLNOTES_DATA_MD5``), as a new user's chapters download Tiny ImageNet, and
all use the real pretrained weights of ``DLNOTES_PRETRAINED_DIR``. The book is rendered from those
executed notebooks (``execute_notebooks: off``) — the same sources, not executed a second time.
No page may show a stand-in warning.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import MIRROR_PATH
from dlnotes import runtime

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
LOG_NOISE = (
    "Traceback (most recent call last)",
    "absl::InitializeLog",
    "oneDNN custom operations",
    "cuda drivers",
    "cudart_stub",
    "I0000 00:00",
    "W0000 00:00",
    "E0000 00:00",
    "UserWarning",
)
NOT_BOOK_SOURCES = shutil.ignore_patterns(  # the stripped notebooks stay: pages link them on Colab
    ".git",
    ".venv",
    "venv",
    "_build",
    "tests",
    "benchmarks",
    "data_scripts",
    "*.egg-info",
    "__pycache__",
    ".*_cache",
    ".whl",
    ".device",
    ".data",
)


@pytest.fixture(scope="session")
def built_book(
    tmp_path_factory: pytest.TempPathFactory, executed_notebooks: dict[str, Path]
) -> Path:
    """The book built as a reader gets it, ``-nW --keep-going``, from the executed chapters."""
    out = tmp_path_factory.mktemp("book")
    source = out / "source"
    shutil.copytree(REPO, source, ignore=NOT_BOOK_SOURCES)
    for chapter in (source / "chapters").glob("*.md"):
        chapter.unlink()
    for name, notebook in executed_notebooks.items():
        shutil.copy(notebook, source / "chapters" / name)
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    (source / "_config.yml").write_text(yaml.safe_dump(config))
    jupyter_book = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jupyter_book), "build", str(source), "--path-output", str(out), "-nW", "--keep-going"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (
        f"book build failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    )
    return out / "_build" / "html"


def _toc_pages(html: Path) -> list[Path]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]
    return [html / f"{file}.html" for file in files]


def _chapter_pages(html: Path) -> list[Path]:
    return [page for page in _toc_pages(html) if page.parent.name == "chapters"]


@pytest.mark.slow
def test_book_builds_with_every_chapter_executed(built_book: Path) -> None:
    assert (built_book / "intro.html").is_file()
    for page in _chapter_pages(built_book):
        text = page.read_text()
        assert 'class="cell_output' in text, f"{page.name} has no executed output"
        assert "profile smoke" in text, f"{page.name} does not print its run profile"


@pytest.mark.slow
def test_bibliography_lists_the_cited_works(built_book: Path) -> None:
    text = (built_book / "bibliography.html").read_text()
    entries = (REPO / "references.bib").read_text().count("\n@")
    assert text.count('<div class="citation"') == entries  # the page lists every entry (:all:)
    assert "deep residual learning for image recognition" in text.lower()
    chapter = (built_book / "chapters" / "07_batch_normalisation.html").read_text()
    assert 'href="../bibliography.html#' in chapter, "citations do not link the bibliography"


@pytest.mark.slow
def test_book_downloads_its_data_once_and_uses_no_stand_in(
    built_book: Path, chapter_mirror_requests: list[str]
) -> None:
    assert chapter_mirror_requests == [MIRROR_PATH]
    pages = sorted(built_book.rglob("*.html"))
    downloading = [
        p.name for p in pages if "downloading it once from http://127.0.0.1" in p.read_text()
    ]
    assert len(downloading) == 1, f"pages that report the download: {downloading}"
    for page in pages:
        assert runtime.STAND_IN_CLASS not in page.read_text(), f"{page.name} shows a stand-in"


@pytest.mark.slow
def test_every_chapter_links_its_notebook_on_colab(built_book: Path) -> None:
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    owner_repo = config["repository"]["url"].removeprefix("https://github.com/")
    for page in _chapter_pages(built_book):
        expected = (
            f'href="https://colab.research.google.com/github/{owner_repo}/blob/'
            f'{config["repository"]["branch"]}/notebooks/{page.stem}.ipynb"'
        )
        text = page.read_text()
        assert expected in text, f"{page.name} lacks its Colab link"
        assert '.md"' not in text.split("colab.research.google.com")[-1][:200]


@pytest.mark.slow
def test_pages_have_no_stderr_outputs(built_book: Path) -> None:
    for page in [built_book / "intro.html", *_toc_pages(built_book)]:
        text = page.read_text()
        assert "output stderr" not in text, f"{page.name} shows stderr output"
        for noise in LOG_NOISE:
            assert noise not in text, f"{page.name} shows {noise!r}"


@pytest.fixture(scope="session")
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "needs Debian's chromium and chromium-driver (apt-get install both)"
        if os.environ.get("CI"):
            pytest.fail(message + "; .ci/run installs them")
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--disable-quic",
        "--allow-file-access-from-files",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    yield driver
    driver.quit()


WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
if (!window.MathJax || !MathJax.startup) { done("no-mathjax"); return; }
MathJax.startup.promise.then(() => done("typeset")).catch((e) => done("error: " + e));
"""

PAGE_REPORT = """
const images = Array.from(document.images).filter((img) => img.closest("article"));
return {
  text: document.querySelector("article").innerText,
  mathNodes: document.querySelectorAll("article .math").length,
  untypeset: Array.from(document.querySelectorAll("article .math"))
      .filter((el) => !el.querySelector("mjx-container")).length,
  images: images.length,
  broken: images.filter((img) => !(img.complete && img.naturalWidth > 0)).map((img) => img.src),
};
"""


@pytest.mark.slow
@pytest.mark.browser
def test_pages_render_in_a_real_browser(built_book: Path, browser) -> None:
    pages = [built_book / "intro.html", *_chapter_pages(built_book)]
    math_pages = 0
    for page in pages:
        browser.get(page.as_uri())
        if "\\(" in page.read_text() or "\\[" in page.read_text():
            assert browser.execute_async_script(WAIT_FOR_MATHJAX) == "typeset", page.name
        report = browser.execute_script(PAGE_REPORT)
        assert report["untypeset"] == 0, f"{page.name}: {report['untypeset']} formulas not typeset"
        math_pages += report["mathNodes"] > 0
        assert not report["broken"], f"{page.name}: images failed to load: {report['broken']}"
        for noise in LOG_NOISE:
            assert noise not in report["text"], f"{page.name} shows {noise!r}"
        if page.name != "intro.html":
            assert report["images"] > 0, f"{page.name} shows no plot"
    assert math_pages > 0, "no page with math was checked"
