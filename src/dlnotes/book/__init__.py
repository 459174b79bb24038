"""Glue between the book and Google Colab, plus a small Sphinx extension.

The MyST ``.md`` files in ``chapters/`` are the source of every chapter; jupytext pairs each one
with a notebook of the same name in ``notebooks/``. Colab can only open notebooks, so every page
links to the paired ``.ipynb``, and each notebook starts with a cell that installs ``dlnotes``
when (and only when) it runs inside Colab. The repository URL and branch are configured once,
under ``repository:`` in ``_config.yml``.

Used as a Sphinx extension (``dlnotes.book`` in ``_config.yml``), this module

* puts an "Open in Colab" link at the top of every chapter page that has a paired notebook, and
* serves MathJax from the built site, so the math renders without internet access. The MathJax 3
  bundle comes from the ``sphinx-mathjax-offline`` distribution, whose own extension cannot be
  imported (its package folder name contains hyphens); we only reuse its files.
"""

from __future__ import annotations

import html
import importlib.metadata
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

COLAB_URL = "https://colab.research.google.com"
CHAPTERS_DIR = "chapters"
NOTEBOOKS_DIR = "notebooks"


def _github_parts(repository_url: str) -> tuple[str, str]:
    parsed = urlparse(repository_url.strip())
    parts = [p for p in parsed.path.split("/") if p]
    if parsed.netloc != "github.com" or len(parts) != 2:
        raise ValueError(
            f"repository URL must look like https://github.com/OWNER/REPO, got {repository_url!r}"
        )
    owner, repo = parts
    return owner, repo.removesuffix(".git")


def notebook_for_chapter(chapter: str) -> str:
    """Return the repository path of the notebook paired with a chapter.

    Args:
        chapter: A chapter docname or path such as ``"chapters/01_tensorflow_essentials"`` or
            ``"chapters/01_tensorflow_essentials.md"``.

    Returns:
        The path of the paired notebook, e.g. ``"notebooks/01_tensorflow_essentials.ipynb"``.

    Raises:
        ValueError: If ``chapter`` is not inside ``chapters/``.
    """
    path = Path(chapter)
    if path.parts[:1] != (CHAPTERS_DIR,) or len(path.parts) != 2:
        raise ValueError(f"not a chapter under {CHAPTERS_DIR}/: {chapter!r}")
    return f"{NOTEBOOKS_DIR}/{path.stem}.ipynb"


def colab_url(repository_url: str, branch: str, notebook_path: str) -> str:
    """Return the Colab address that opens a notebook of the repository.

    Args:
        repository_url: ``https://github.com/OWNER/REPO``.
        branch: Branch name, e.g. ``"main"``.
        notebook_path: Path of an ``.ipynb`` file inside the repository.

    Returns:
        ``https://colab.research.google.com/github/OWNER/REPO/blob/BRANCH/PATH``.

    Raises:
        ValueError: If the URL is not a GitHub repository or the path is not a notebook.
    """
    owner, repo = _github_parts(repository_url)
    if not notebook_path.endswith(".ipynb"):
        raise ValueError(f"Colab opens notebooks only, got {notebook_path!r}")
    return f"{COLAB_URL}/github/{owner}/{repo}/blob/{branch}/{notebook_path.lstrip('/')}"


FIRST_CELL_TAGS = ("hide-input",)
"""Tags of every chapter's first code cell: the book shows its output but collapses its code."""


def first_cell_source(repository_url: str, branch: str) -> str:
    """Return the source of the first code cell of every chapter.

    The cell installs ``dlnotes`` (with its TensorFlow extras) from the repository when it runs
    inside Google Colab (where the module ``google.colab`` is loaded) and installs nothing
    anywhere else; then it calls :func:`dlnotes.runtime.setup`, which silences framework logs,
    prints the run profile and whether a GPU is visible, and says how to attach one. Data and
    pretrained weights are downloaded by the chapters that need them, when they first need them
    (:func:`dlnotes.data.find_root`, :func:`dlnotes.models.hub.load_pretrained_classifier`,
    :func:`dlnotes.models.transfer.pretrained_backbone_weights`). In the book the cell carries
    the tags :data:`FIRST_CELL_TAGS`.

    Args:
        repository_url: ``https://github.com/OWNER/REPO``.
        branch: Branch to install from.

    Returns:
        Python source of the cell.
    """
    _github_parts(repository_url)
    requirement = f"dlnotes[tensorflow] @ git+{repository_url.rstrip('/')}@{branch}"
    return (
        "# On Google Colab, install the course package; anywhere else this does nothing. Data and\n"
        "# pretrained weights download by themselves when a chapter first needs them.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    requirement = "{requirement}"\n'
        '    subprocess.run([sys.executable, "-m", "pip", "install", "-q", requirement], '
        "check=True)\n"
        "\n"
        "from dlnotes import runtime\n"
        "\n"
        "runtime.setup()"
    )


def _colab_link_html(url: str) -> str:
    return (
        '<p class="dlnotes-colab"><a class="reference external" '
        f'href="{html.escape(url)}">Open this chapter in Colab</a> '
        "(runs the paired notebook; a GPU runtime makes the <code>full</code> profile "
        "possible)</p>\n"
    )


def _add_colab_link(
    app: Any, pagename: str, templatename: str, context: dict[str, Any], doctree: Any
) -> None:
    if not pagename.startswith(f"{CHAPTERS_DIR}/") or "body" not in context:
        return
    notebook = notebook_for_chapter(pagename)
    if not (Path(app.srcdir) / notebook).is_file():
        return
    options = app.config.html_theme_options or {}
    url = colab_url(
        options.get("repository_url", ""), options.get("repository_branch", "main"), notebook
    )
    body = context["body"]
    end_of_title = body.find("</h1>")
    cut = end_of_title + len("</h1>") if end_of_title >= 0 else 0
    context["body"] = body[:cut] + _colab_link_html(url) + body[cut:]


MATHJAX_DISTRIBUTION = "sphinx-mathjax-offline"
MATHJAX_ENTRY = "mathjax/tex-chtml.js"


def mathjax_bundle_dir() -> Path:
    """Return the folder of the offline MathJax 3 bundle installed with ``sphinx-mathjax-offline``.

    Returns:
        The folder that holds ``tex-chtml.js``.

    Raises:
        FileNotFoundError: If the distribution is not installed or lacks the bundle.
    """
    try:
        dist = importlib.metadata.distribution(MATHJAX_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError(
            f"the {MATHJAX_DISTRIBUTION} distribution is not installed; "
            "pip install -r requirements.txt installs it"
        ) from error
    folder = Path(str(dist.locate_file("sphinx-mathjax-offline/static/mathjax")))
    if not (folder / "tex-chtml.js").is_file():
        raise FileNotFoundError(f"no tex-chtml.js in {folder}")
    return folder


def _use_local_mathjax(app: Any, config: Any) -> None:
    config.mathjax_path = MATHJAX_ENTRY


def _copy_mathjax(app: Any, exception: BaseException | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    from sphinx.util.fileutil import copy_asset

    copy_asset(str(mathjax_bundle_dir()), str(Path(app.outdir) / "_static" / "mathjax"))


def setup(app: Any) -> dict[str, Any]:
    """Register the "Open in Colab" link and the offline MathJax with Sphinx.

    Args:
        app: The Sphinx application.

    Returns:
        Extension metadata.
    """
    mathjax_bundle_dir()  # fail early, with a clear message, when the bundle is missing
    app.connect("config-inited", _use_local_mathjax)
    app.connect("html-page-context", _add_colab_link)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


def pairing_differences(chapter: str | Path, notebook: str | Path) -> list[str]:
    """Compare a MyST chapter with its paired notebook, cell by cell.

    Only what jupytext keeps in both files is compared: cell types, sources and tags.
    Outputs are ignored here (the committed notebooks are kept free of them).

    Args:
        chapter: Path of the ``.md`` source.
        notebook: Path of the paired ``.ipynb``.

    Returns:
        Human-readable differences; empty when the pair is in sync.

    Raises:
        FileNotFoundError: If either file is missing.
    """
    import jupytext
    import nbformat

    chapter, notebook = Path(chapter), Path(notebook)
    for path in (chapter, notebook):
        if not path.is_file():
            raise FileNotFoundError(f"missing half of a jupytext pair: {path}")
    text_cells = jupytext.read(chapter).cells
    notebook_cells = nbformat.read(notebook, as_version=4).cells
    differences = []
    if len(text_cells) != len(notebook_cells):
        differences.append(
            f"{chapter} has {len(text_cells)} cells, {notebook} has {len(notebook_cells)}"
        )
    for index, (a, b) in enumerate(zip(text_cells, notebook_cells, strict=False)):
        if a.cell_type != b.cell_type:
            differences.append(
                f"cell {index}: {a.cell_type} in {chapter}, {b.cell_type} in {notebook}"
            )
        elif a.source != b.source:
            first = next(
                (
                    la
                    for la, lb in zip(
                        a.source.splitlines(), b.source.splitlines() + [""] * 999, strict=False
                    )
                    if la != lb
                ),
                "(lines added or removed)",
            )
            differences.append(f"cell {index} differs, first differing line of the .md: {first!r}")
        elif a.metadata.get("tags", []) != b.metadata.get("tags", []):
            differences.append(f"cell {index}: tags differ")
    return differences
