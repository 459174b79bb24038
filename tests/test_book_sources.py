"""The book's sources: chapters, their paired notebooks, the table of contents, Colab set-up."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
from pathlib import Path

import nbformat
import pytest
import yaml

from dlnotes import book

REPO = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((REPO / "_config.yml").read_text())
CHAPTERS = sorted((REPO / "chapters").glob("*.md"))
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


BACK_MATTER = ["bibliography"]


def _toc_entries() -> list[str]:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    return [chapter["file"] for part in toc["parts"] for chapter in part["chapters"]]


def _toc_files() -> list[str]:
    return [entry for entry in _toc_entries() if entry.startswith("chapters/")]


def test_there_are_chapters() -> None:
    assert CHAPTERS, "no chapters found"


def test_every_chapter_has_a_notebook_and_vice_versa() -> None:
    assert [c.stem for c in CHAPTERS] == [n.stem for n in NOTEBOOKS]


def test_toc_lists_exactly_the_chapters() -> None:
    assert sorted(_toc_files()) == [f"chapters/{c.stem}" for c in CHAPTERS]
    assert [e for e in _toc_entries() if not e.startswith("chapters/")] == BACK_MATTER
    assert all((REPO / f"{page}.md").is_file() for page in BACK_MATTER)


def test_bibliography_is_configured_and_every_citation_resolves() -> None:
    bibfiles = CONFIG["bibtex_bibfiles"]
    keys = set()
    for bibfile in bibfiles:
        for line in (REPO / bibfile).read_text().splitlines():
            if line.startswith("@"):
                keys.add(line.split("{", 1)[1].rstrip(",").strip())
    cited = set()
    for page in [*CHAPTERS, REPO / "intro.md"]:
        for role in re.findall(r"\{cite(?::[pt])?\}`([^`]+)`", page.read_text()):
            cited |= {key.strip() for key in role.split(",")}
    assert cited, "no chapter cites anything"
    assert cited <= keys, f"cited but not in {bibfiles}: {sorted(cited - keys)}"


def test_toc_has_the_book_parts_in_order() -> None:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    captions = [part["caption"] for part in toc["parts"]]
    order = ["Foundations", "Theory", "Data", "Models and training", "References"]
    assert captions == [c for c in order if c in captions]
    assert all(part["chapters"] for part in toc["parts"])


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_pairs_are_in_sync(chapter: Path) -> None:
    notebook = REPO / book.notebook_for_chapter(f"chapters/{chapter.name}")
    differences = book.pairing_differences(chapter, notebook)
    assert not differences, (
        f"{chapter.name} and its notebook are out of sync; run "
        f"`jupytext --sync chapters/{chapter.name}`:\n" + "\n".join(differences)
    )


def test_editing_one_line_without_sync_is_detected(tmp_path: Path) -> None:
    chapter = CHAPTERS[0]
    notebook = REPO / book.notebook_for_chapter(f"chapters/{chapter.name}")
    edited = tmp_path / chapter.name
    text = chapter.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(text) if line.startswith("This chapter"))
    text[index] = text[index].replace("This chapter", "This edited chapter")
    edited.write_text("".join(text))
    differences = book.pairing_differences(edited, notebook)
    assert differences and "edited" in differences[0]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, notebook.name


def _first_cell() -> str:
    repository = CONFIG["repository"]
    return book.first_cell_source(repository["url"], repository["branch"])


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_colab_setup(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert first_code.source == _first_cell(), (
        f"the first code cell of {notebook.name} must be exactly:\n{_first_cell()}"
    )
    tags = first_code.metadata.get("tags", [])
    assert all(tag in tags for tag in book.FIRST_CELL_TAGS), (
        f"the first code cell of {notebook.name} must carry the tags {book.FIRST_CELL_TAGS} "
        "(collapsed in the book)"
    )


def _record_pip_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record pip invocations instead of running them; let other subprocesses run."""
    calls: list[list[str]] = []
    real_run = subprocess.run

    def fake_run(args, *rest, **kwargs):
        if isinstance(args, list) and args[1:3] == ["-m", "pip"]:
            calls.append(args)
            return subprocess.CompletedProcess(args, 0)
        return real_run(args, *rest, **kwargs)

    monkeypatch.setattr(subprocess, "run", fake_run)
    return calls


def test_setup_cell_installs_nothing_outside_colab(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _record_pip_calls(monkeypatch)
    monkeypatch.delitem(sys.modules, "google.colab", raising=False)
    exec(compile(_first_cell(), "first-cell", "exec"), {})
    assert calls == []


def test_setup_cell_installs_from_the_configured_repository_inside_colab(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls = _record_pip_calls(monkeypatch)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    exec(compile(_first_cell(), "first-cell", "exec"), {})
    url, branch = CONFIG["repository"]["url"], CONFIG["repository"]["branch"]
    assert calls == [
        [sys.executable, "-m", "pip", "install", "-q", f"dlnotes[tensorflow] @ git+{url}@{branch}"]
    ]


def test_colab_url_points_at_the_paired_notebook() -> None:
    url = book.colab_url("https://github.com/org/repo", "main", "notebooks/01_x.ipynb")
    assert url == "https://colab.research.google.com/github/org/repo/blob/main/notebooks/01_x.ipynb"
    assert book.notebook_for_chapter("chapters/01_x") == "notebooks/01_x.ipynb"
    assert book.notebook_for_chapter("chapters/01_x.md") == "notebooks/01_x.ipynb"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: book.colab_url("https://gitlab.com/a/b", "main", "n.ipynb"),
            "github.com/OWNER/REPO",
        ),
        (
            lambda: book.colab_url("https://github.com/a/b", "main", "chapters/x.md"),
            "notebooks only",
        ),
        (lambda: book.notebook_for_chapter("intro"), "not a chapter"),
        (lambda: book.first_cell_source("not a url", "main"), "github.com/OWNER/REPO"),
    ],
)
def test_book_helpers_reject_bad_input(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_launch_buttons_never_point_colab_at_markdown() -> None:
    assert not CONFIG["launch_buttons"].get("colab_url"), (
        "the theme's Colab button would open the .md source; dlnotes.book links the notebook"
    )


def test_mathjax_bundle_is_installed() -> None:
    assert (book.mathjax_bundle_dir() / "tex-chtml.js").is_file()


def test_pairing_reports_a_missing_notebook(tmp_path: Path) -> None:
    copy = tmp_path / "x.md"
    shutil.copy(CHAPTERS[0], copy)
    with pytest.raises(FileNotFoundError, match="missing half"):
        book.pairing_differences(copy, tmp_path / "x.ipynb")
