"""Whether a MyST chapter and its paired notebook hold the same cells (a test helper).

The comparison is jupytext's own (:func:`jupytext.compare.compare_notebooks`, what
``jupytext --sync`` and ``--test`` use): cell types, sources and the metadata the MyST format keeps
(tags), not outputs (the committed notebooks are kept free of them).
"""

from __future__ import annotations

from pathlib import Path

import jupytext
from jupytext.compare import NotebookDifference, compare_notebooks


def pairing_differences(chapter: str | Path, notebook: str | Path) -> list[str]:
    """Compare a MyST chapter with its paired notebook.

    Args:
        chapter: Path of the ``.md`` source.
        notebook: Path of the paired ``.ipynb``.

    Returns:
        The first difference as jupytext describes it (with the differing lines); empty when the
        pair is in sync.

    Raises:
        FileNotFoundError: If either file is missing.
    """
    chapter, notebook = Path(chapter), Path(notebook)
    for path in (chapter, notebook):
        if not path.is_file():
            raise FileNotFoundError(f"missing half of a jupytext pair: {path}")
    try:
        compare_notebooks(jupytext.read(chapter), jupytext.read(notebook), fmt="md:myst")
    except NotebookDifference as difference:
        return [f"{chapter} and {notebook}: {difference}"]
    return []
