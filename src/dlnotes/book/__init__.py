"""The book's presentation layer: showing package code, plots, diagrams, Colab, and the Sphinx
extension of the book.

* :func:`show_code` (:mod:`dlnotes.book.listing`) shows a function's real source in a chapter —
  in the book, Jupyter and Colab alike.
* :mod:`dlnotes.book.colab`: the Colab links and the first cell of every chapter, derived from
  the repository named once under ``repository:`` in ``_config.yml``.
* :mod:`dlnotes.book.plotting` and :mod:`dlnotes.book.diagrams`: the chapters' figures.

Used as a Sphinx extension (``dlnotes.book`` in ``_config.yml``), this module

* puts an "Open in Colab" link at the top of every chapter page that has a paired notebook, and
* serves MathJax from the built site, so the math renders without internet access. The MathJax 3
  bundle comes from the ``sphinx-mathjax-offline`` distribution, whose own extension cannot be
  imported (its package folder name contains hyphens); we only reuse its files;
* registers the bibliography style ``dlnotes_author_year`` (:mod:`dlnotes.book.citations`):
  author–year labels on the bibliography page, like the citations in the text.
"""

from __future__ import annotations

import html
import importlib.metadata
from pathlib import Path
from typing import Any

from dlnotes.book.listing import CodeListing, show_code

__all__ = ["CodeListing", "mathjax_bundle_dir", "setup", "show_code"]


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
    from dlnotes.book.colab import CHAPTERS_DIR, colab_url, notebook_for_chapter

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
    """Register the "Open in Colab" link, the offline MathJax and the bibliography style.

    Args:
        app: The Sphinx application.

    Returns:
        Extension metadata.
    """
    mathjax_bundle_dir()  # fail early, with a clear message, when the bundle is missing
    from dlnotes.book import citations

    citations.register()
    app.connect("config-inited", _use_local_mathjax)
    app.connect("html-page-context", _add_colab_link)
    app.connect("build-finished", _copy_mathjax)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
