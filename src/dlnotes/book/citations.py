"""Author–year labels for the bibliography page, to match the author–year citations in the text.

The chapters cite in author–year form ("He et al. [2016a]"). Sphinx's bibliography page would
otherwise label each entry in pybtex's "alpha" form ("[HZRS16]"), which mangles names with
accents and shows a year suffix such as ``2016a`` as ``6a``. :class:`AuthorYearStyle` is pybtex's
alpha formatting style with labels that repeat the citation: "He et al. 2016a". Two works by the
same authors in the same year are told apart by the year field itself (``2016a``, ``2016b``), so
the label in the text and on the bibliography page agree.

:func:`register` makes the style available to sphinxcontrib-bibtex as ``dlnotes_author_year``
(``bibtex_default_style`` in ``_config.yml``); the book's Sphinx extension calls it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.alpha import Style as AlphaStyle
from pybtex.style.labels import BaseLabelStyle

STYLE_NAME = "dlnotes_author_year"


def author_year_label(last_names: Sequence[str], year: str) -> str:
    """The label of a work: "Smith 2020", "Smith and Jones 2020" or "Smith et al. 2020".

    Args:
        last_names: The authors' last names, in order (at least one).
        year: The year as written in the entry, e.g. ``"2016a"``.

    Returns:
        The label.

    Raises:
        ValueError: For no author or an empty year.
    """
    if not last_names:
        raise ValueError(f"a label needs at least one author, got {list(last_names)!r}")
    if not year.strip():
        raise ValueError(f"a label needs a year, got {year!r}")
    if len(last_names) == 1:
        authors = last_names[0]
    elif len(last_names) == 2:
        authors = f"{last_names[0]} and {last_names[1]}"
    else:
        authors = f"{last_names[0]} et al."
    return f"{authors} {year.strip()}"


def _plain(latex: str) -> str:
    """LaTeX text of a bibliography field as plain text (accents decoded, braces dropped)."""
    rendered: str = Text.from_latex(latex).render_as("text")
    return rendered


class AuthorYearLabelStyle(BaseLabelStyle):  # type: ignore[misc]
    """pybtex label style: :func:`author_year_label` of each entry."""

    def format_labels(self, sorted_entries: Sequence[Any]) -> Iterator[str]:
        for entry in sorted_entries:
            people = entry.persons.get("author") or entry.persons.get("editor") or []
            names = [_plain(" ".join(person.last_names)) for person in people]
            yield author_year_label(names or [entry.key], entry.fields.get("year", "n.d."))


class AuthorYearStyle(AlphaStyle):  # type: ignore[misc]
    """pybtex's alpha formatting style with :class:`AuthorYearLabelStyle` labels."""

    default_label_style = STYLE_NAME


def register() -> None:
    """Register the label and formatting styles with pybtex under :data:`STYLE_NAME`."""
    register_plugin("pybtex.style.labels", STYLE_NAME, AuthorYearLabelStyle, force=True)
    register_plugin("pybtex.style.formatting", STYLE_NAME, AuthorYearStyle, force=True)
