"""Google Colab: the links to the notebooks and the first cell of every chapter.

Colab opens notebooks only, so each chapter's MyST source in ``chapters/`` is paired by jupytext
with a notebook in ``notebooks/``; every page links to it, and its first code cell installs
``dlnotes`` when (and only when) it runs inside Colab.

The repository is named once, under ``repository:`` in ``_config.yml`` (``url`` and ``branch``).
The book's Colab links are derived from it when the book is built; the install line of the first
cells is derived from it by :func:`sync_first_cells` (``python -m dlnotes.book.colab``, also a
pre-commit hook), since a notebook opened in Colab has nothing but its own text to go on. A fork
changes that one line and runs the command; a test fails while anything is out of date.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from dlnotes.runtime import storage

COLAB_URL = "https://colab.research.google.com"
CHAPTERS_DIR = "chapters"
NOTEBOOKS_DIR = "notebooks"
CONFIG_FILE = "_config.yml"

FIRST_CELL_TAGS = ("hide-input",)
"""Tags of every chapter's first code cell: the book shows its output but collapses its code."""


def github_parts(repository_url: str) -> tuple[str, str]:
    """Split ``https://github.com/OWNER/REPO`` into ``(OWNER, REPO)``.

    Args:
        repository_url: The repository's address.

    Returns:
        The owner and the repository name (without ``.git``).

    Raises:
        ValueError: If the address is not a GitHub repository.
    """
    parsed = urlparse(repository_url.strip())
    parts = [p for p in parsed.path.split("/") if p]
    if parsed.scheme != "https" or parsed.netloc != "github.com" or len(parts) != 2:
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
    owner, repo = github_parts(repository_url)
    if not notebook_path.endswith(".ipynb"):
        raise ValueError(f"Colab opens notebooks only, got {notebook_path!r}")
    return f"{COLAB_URL}/github/{owner}/{repo}/blob/{branch}/{notebook_path.lstrip('/')}"


def install_requirement(repository_url: str, branch: str) -> str:
    """The pip requirement that installs the course package from the repository.

    Args:
        repository_url: ``https://github.com/OWNER/REPO``.
        branch: Branch to install from.

    Returns:
        ``dlnotes[tensorflow] @ git+https://github.com/OWNER/REPO@BRANCH``.

    Raises:
        ValueError: If the URL is not a GitHub repository or the branch is empty.
    """
    owner, repo = github_parts(repository_url)
    if not branch.strip() or any(c.isspace() for c in branch):
        raise ValueError(f"branch must be a non-empty name without spaces, got {branch!r}")
    return f"dlnotes[tensorflow] @ git+https://github.com/{owner}/{repo}@{branch}"


def first_cell_source(repository_url: str, branch: str) -> str:
    """Return the source of the first code cell of every chapter.

    The cell installs ``dlnotes`` (with its TensorFlow extras) from the repository when it runs
    inside Google Colab (where the module ``google.colab`` is loaded) and installs nothing
    anywhere else; then it calls :func:`dlnotes.runtime.setup`, which silences framework logs,
    prints the run profile and whether a GPU is visible, and says how to attach one. Data and
    pretrained weights are downloaded by the chapters that need them, when they first need them.

    Args:
        repository_url: ``https://github.com/OWNER/REPO``.
        branch: Branch to install from.

    Returns:
        Python source of the cell.

    Raises:
        ValueError: If the URL is not a GitHub repository or the branch is empty.
    """
    requirement = install_requirement(repository_url, branch)
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


def configured_repository(book_root: str | Path) -> tuple[str, str]:
    """Read the repository's URL and branch from the book's ``_config.yml``.

    Args:
        book_root: The folder holding ``_config.yml``.

    Returns:
        ``(url, branch)``.

    Raises:
        FileNotFoundError: If there is no ``_config.yml``.
        ValueError: If it names no GitHub repository under ``repository: url``.
    """
    import yaml

    config_file = Path(book_root) / CONFIG_FILE
    if not config_file.is_file():
        raise FileNotFoundError(f"no book configuration: {config_file} is missing")
    repository = (yaml.safe_load(config_file.read_text()) or {}).get("repository") or {}
    url, branch = str(repository.get("url", "")), str(repository.get("branch", "main"))
    try:
        github_parts(url)
    except ValueError as error:
        raise ValueError(f"{config_file}: repository.url: {error}") from None
    return url, branch


_CODE_CELL = re.compile(r"```\{code-cell\}[^\n]*\n(?P<body>.*?)^```$", re.S | re.M)


def _replace_first_cell(text: str, source: str, where: Path) -> str:
    match = _CODE_CELL.search(text)
    if match is None:
        raise ValueError(f"{where} has no code cell")
    lines = match.group("body").splitlines(keepends=True)
    options = []
    while lines and lines[0].startswith(":"):
        options.append(lines.pop(0))
    tags = f":tags: [{', '.join(FIRST_CELL_TAGS)}]\n"
    options = [line for line in options if not line.startswith(":tags:")] + [tags]
    body = "".join(options) + "\n" + source + "\n"
    return text[: match.start("body")] + body + text[match.end("body") :]


def sync_first_cells(book_root: str | Path, *, check: bool = False) -> list[Path]:
    """Make every chapter's first code cell the one :func:`first_cell_source` gives.

    The repository comes from ``_config.yml`` (:func:`configured_repository`); each changed
    chapter is written and its notebook re-synced with ``jupytext --sync``.

    Args:
        book_root: The book's folder (holding ``_config.yml`` and ``chapters/``).
        check: Only report, write nothing.

    Returns:
        The chapters whose first cell was (or, with ``check``, would be) changed.

    Raises:
        FileNotFoundError: If ``_config.yml`` is missing.
        ValueError: For a configuration without a GitHub repository or a chapter without code.
        subprocess.CalledProcessError: If jupytext fails.
    """
    root = Path(book_root)
    source = first_cell_source(*configured_repository(root))
    changed = []
    for chapter in sorted((root / CHAPTERS_DIR).glob("*.md")):
        text = chapter.read_text()
        updated = _replace_first_cell(text, source, chapter)
        if updated == text:
            continue
        changed.append(chapter)
        if not check:
            storage.write_text(chapter, updated)
    if changed and not check:
        subprocess.run(
            [sys.executable, "-m", "jupytext", "--quiet", "--sync", *map(str, changed)],
            check=True,
            cwd=root,
        )
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dlnotes.book.colab [--check] [BOOK_ROOT]``: sync the chapters' first cells.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).

    Returns:
        0 when everything is (now) in sync; 1 with ``--check`` when something is not, or after
        an error (printed as one line).
    """
    parser = argparse.ArgumentParser(
        prog="python -m dlnotes.book.colab",
        description="Derive every chapter's first cell from the repository in _config.yml.",
    )
    parser.add_argument("book_root", nargs="?", default=".", type=Path)
    parser.add_argument("--check", action="store_true", help="write nothing; fail if stale")
    args = parser.parse_args(argv)
    try:
        changed = sync_first_cells(args.book_root, check=args.check)
    except (OSError, ValueError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for chapter in changed:
        print(f"{'stale' if args.check else 'updated'}: {chapter}")
    return 1 if changed and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
