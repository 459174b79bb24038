"""Execute chapter notebooks one after the other with nbmake's runner (started by conftest.py).

Usage:
    python tests/run_chapters.py OUT_DIR CELL_TIMEOUT NOTEBOOK [NOTEBOOK ...]

After each notebook, writes ``OUT_DIR/NAME`` (the executed notebook) and then
``OUT_DIR/NAME.result.json``: ``{"error": null}``, or nbmake's error (summary, trace, failing
cell). conftest.py runs this in its own process while the unit tests run, and the notebook test
items report these results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import nbformat
from nbmake.nb_run import NotebookRun


def main(argv: list[str]) -> int:
    out_dir, timeout, *notebooks = argv
    for notebook in map(Path, notebooks):
        result = NotebookRun(notebook, int(timeout)).execute()
        nbformat.write(result.nb, str(Path(out_dir) / notebook.name))
        error = None if result.error is None else dataclasses.asdict(result.error)
        record = Path(out_dir) / f"{notebook.name}.result.json"
        partial = record.with_suffix(".partial")
        partial.write_text(json.dumps({"error": error}))
        os.replace(partial, record)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
