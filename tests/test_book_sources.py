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
from notebook_pairing import pairing_differences

from dlnotes import book
from dlnotes.book import colab

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
    assert keys <= cited, f"in {bibfiles} but cited nowhere: {sorted(keys - cited)}"


def test_every_chapter_cites_and_ends_with_further_reading() -> None:
    for chapter in CHAPTERS:
        text = chapter.read_text()
        assert re.search(r"\{cite(?::[pt])?\}`", text), f"{chapter.name} cites nothing"
        assert "\n## Further reading\n" in text, f"{chapter.name} has no further reading"


def test_toc_has_the_book_parts_in_order() -> None:
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    captions = [part["caption"] for part in toc["parts"]]
    order = [
        "Foundations",
        "Theory",
        "Data",
        "Models and training",
        "Pretrained networks",
        "References",
    ]
    assert captions == [c for c in order if c in captions]
    assert all(part["chapters"] for part in toc["parts"])


def test_chapters_are_numbered_in_reading_order() -> None:
    # Files are named NN_name, numbered 01, 02, … without gaps or suffixes, in the order of the
    # table of contents, so that a file name, its notebook and its place in the book agree.
    numbers = [int(re.fullmatch(r"(\d\d)_[a-z0-9_]+", c.stem).group(1)) for c in CHAPTERS]
    assert numbers == list(range(1, len(CHAPTERS) + 1)), [c.stem for c in CHAPTERS]
    assert _toc_files() == [f"chapters/{c.stem}" for c in CHAPTERS]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_pairs_are_in_sync(chapter: Path) -> None:
    notebook = REPO / colab.notebook_for_chapter(f"chapters/{chapter.name}")
    differences = pairing_differences(chapter, notebook)
    assert not differences, (
        f"{chapter.name} and its notebook are out of sync; run "
        f"`jupytext --sync chapters/{chapter.name}`:\n" + "\n".join(differences)
    )


def test_editing_one_line_without_sync_is_detected(tmp_path: Path) -> None:
    chapter = CHAPTERS[0]
    notebook = REPO / colab.notebook_for_chapter(f"chapters/{chapter.name}")
    edited = tmp_path / chapter.name
    text = chapter.read_text().splitlines(keepends=True)
    index = next(i for i, line in enumerate(text) if line.startswith("This chapter"))
    text[index] = text[index].replace("This chapter", "This edited chapter")
    edited.write_text("".join(text))
    differences = pairing_differences(edited, notebook)
    assert differences and "edited" in differences[0]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_have_no_outputs(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, notebook.name


def _first_cell() -> str:
    repository = CONFIG["repository"]
    return colab.first_cell_source(repository["url"], repository["branch"])


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_colab_setup(notebook: Path) -> None:
    nb = nbformat.read(notebook, as_version=4)
    first_code = next(cell for cell in nb.cells if cell.cell_type == "code")
    assert first_code.source == _first_cell(), (
        f"the first code cell of {notebook.name} must be exactly:\n{_first_cell()}"
    )
    tags = first_code.metadata.get("tags", [])
    assert all(tag in tags for tag in colab.FIRST_CELL_TAGS), (
        f"the first code cell of {notebook.name} must carry the tags {colab.FIRST_CELL_TAGS} "
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
    url = colab.colab_url("https://github.com/org/repo", "main", "notebooks/01_x.ipynb")
    assert url == "https://colab.research.google.com/github/org/repo/blob/main/notebooks/01_x.ipynb"
    assert colab.notebook_for_chapter("chapters/01_x") == "notebooks/01_x.ipynb"
    assert colab.notebook_for_chapter("chapters/01_x.md") == "notebooks/01_x.ipynb"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: colab.colab_url("https://gitlab.com/a/b", "main", "n.ipynb"),
            "github.com/OWNER/REPO",
        ),
        (
            lambda: colab.colab_url("https://github.com/a/b", "main", "chapters/x.md"),
            "notebooks only",
        ),
        (lambda: colab.notebook_for_chapter("intro"), "not a chapter"),
        (lambda: colab.first_cell_source("not a url", "main"), "github.com/OWNER/REPO"),
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
        pairing_differences(copy, tmp_path / "x.ipynb")


SPHINX_ONLY_CODE_DIRECTIVES = ("literalinclude", "include")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_no_chapter_shows_code_through_a_sphinx_only_directive(chapter: Path) -> None:
    # Colab and Jupyter show such a directive as raw text: the code would be missing there.
    for directive in SPHINX_ONLY_CODE_DIRECTIVES:
        assert f"{{{directive}}}" not in chapter.read_text(), (
            f"{chapter.name} uses {{{directive}}}: show package code with book.show_code(...)"
        )


def test_first_cells_are_derived_from_the_configured_repository() -> None:
    assert colab.configured_repository(REPO) == (
        CONFIG["repository"]["url"],
        CONFIG["repository"]["branch"],
    )
    assert colab.sync_first_cells(REPO, check=True) == [], (
        "run `python -m dlnotes.book.colab` after changing repository: in _config.yml"
    )


def _tracked_text_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    files = [REPO / name.decode() for name in listed if name]
    return [f for f in files if f.is_file() and f.suffix not in {".h5", ".png", ".zip", ".jpg"}]


def test_the_repository_is_named_once() -> None:
    owner, name = colab.github_parts(CONFIG["repository"]["url"])
    pattern = re.compile(rf"\b{re.escape(owner)}/{re.escape(name)}\b")
    first_cell = _first_cell()
    places = []
    for path in _tracked_text_files():
        text = path.read_text(errors="replace")
        if pattern.search(text) is None:
            continue
        relative = path.relative_to(REPO).as_posix()
        if relative in ("chapters/" + p.name for p in CHAPTERS):
            text = text.replace(first_cell, "")
        elif relative in ("notebooks/" + p.name for p in NOTEBOOKS):
            cells = nbformat.read(path, as_version=4).cells
            text = "\n".join(c.source for c in cells if c.source != first_cell)
        if pattern.search(text):
            places.append(relative)
    assert places == ["_config.yml"], (
        f"{owner}/{name} is written outside _config.yml and the generated first cells: {places}"
    )


def test_a_fork_changes_one_line(tmp_path: Path) -> None:
    fork = tmp_path / "fork"
    shutil.copytree(REPO / "chapters", fork / "chapters")
    shutil.copytree(REPO / "notebooks", fork / "notebooks")
    shutil.copy(REPO / "pyproject.toml", fork / "pyproject.toml")  # jupytext's pairing formats
    config = (REPO / "_config.yml").read_text()
    old_url = CONFIG["repository"]["url"]
    assert config.count(old_url) == 1
    (fork / "_config.yml").write_text(config.replace(old_url, "https://github.com/someone/fork"))
    assert colab.sync_first_cells(fork, check=True) == sorted((fork / "chapters").glob("*.md"))
    assert colab.main([str(fork)]) == 0
    assert colab.main([str(fork), "--check"]) == 0
    expected = colab.first_cell_source("https://github.com/someone/fork", "main")
    for notebook in sorted((fork / "notebooks").glob("*.ipynb")):
        cells = nbformat.read(notebook, as_version=4).cells
        assert next(c for c in cells if c.cell_type == "code").source == expected
        assert pairing_differences(fork / "chapters" / f"{notebook.stem}.md", notebook) == []
    # The Colab links follow the same line when the book is built (html_theme_options).
    assert colab.colab_url("https://github.com/someone/fork", "main", "notebooks/x.ipynb") == (
        "https://colab.research.google.com/github/someone/fork/blob/main/notebooks/x.ipynb"
    )


def test_sync_reports_a_configuration_without_a_repository(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "_config.yml").write_text("title: x\n")
    assert colab.main([str(tmp_path)]) == 1
    assert "repository.url" in capsys.readouterr().err
    assert colab.main([str(tmp_path / "nowhere")]) == 1
    assert "_config.yml is missing" in capsys.readouterr().err


def test_show_code_shows_the_installed_source() -> None:
    import inspect

    from dlnotes import models
    from dlnotes.data import mixing

    listing = book.show_code(models.conv_unit)
    assert listing.source == inspect.getsource(models.conv_unit)
    assert listing.origin == "dlnotes.models.resnet.conv_unit"
    markdown = listing._repr_markdown_()
    assert markdown.startswith("```python\ndef conv_unit(") and markdown.endswith("\n```\n")
    method = book.show_code(mixing.MixImages.call)
    assert method.source.startswith("def call(")  # dedented out of its class
    for wrong in (models, 3, print):
        with pytest.raises(ValueError, match="got"):
            book.show_code(wrong)
