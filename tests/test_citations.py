"""Author–year labels of the bibliography page (dlnotes.book.citations)."""

from __future__ import annotations

import pytest
from pybtex.database import parse_string
from pybtex.plugin import find_plugin

from dlnotes.book import citations


def test_labels_follow_the_author_year_citations() -> None:
    assert citations.author_year_label(["Chollet"], "2020") == "Chollet 2020"
    assert citations.author_year_label(["Nocedal", "Wright"], "2006") == "Nocedal and Wright 2006"
    assert citations.author_year_label(["He", "Zhang", "Ren", "Sun"], "2016a") == "He et al. 2016a"
    with pytest.raises(ValueError, match=r"at least one author, got \[\]"):
        citations.author_year_label([], "2020")
    with pytest.raises(ValueError, match="needs a year, got ' '"):
        citations.author_year_label(["Chollet"], " ")


def test_the_registered_style_decodes_accents_and_keeps_year_suffixes() -> None:
    citations.register()
    citations.register()  # a second build in the same process registers again, harmlessly
    bib = parse_string(
        r"""
        @misc{goyal, author = {Goyal, Priya and Doll{\'a}r, Piotr and Girshick, Ross},
                     title = {Accurate}, year = {2017}}
        @misc{hea, author = {He, Kaiming and Sun, Jian}, title = {Deep}, year = {2016a}}
        @misc{heb, author = {He, Kaiming and Sun, Jian}, title = {Identity}, year = {2016b}}
        """,
        "bibtex",
    )
    style = find_plugin("pybtex.style.formatting", citations.STYLE_NAME)()
    labels = {entry.key: entry.label for entry in style.format_entries(bib.entries.values())}
    assert labels == {
        "goyal": "Goyal et al. 2017",
        "hea": "He and Sun 2016a",
        "heb": "He and Sun 2016b",
    }
