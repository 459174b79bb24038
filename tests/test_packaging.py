"""What a pip user gets: every import declared, the package data in the wheel."""

from __future__ import annotations

import ast
import importlib.metadata
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import jupytext
import pytest

REPO = Path(__file__).resolve().parents[1]
METADATA = importlib.metadata.metadata("dlnotes")
"""The installed package's metadata: what pip reads (``pip install -e .`` writes it too)."""
PROVIDED_BY_JUPYTER = {"IPython"}
"""Modules that every Jupyter kernel (Colab's included) has, so nobody installs them for us."""
CHOSEN_BY_THE_USER = {"torch"}
"""Imported only when the user picked that Keras backend (``KERAS_BACKEND=torch``) and so
installed it; the package never asks for it."""


def _distribution_name(requirement: str) -> str:
    name = re.split(r"[\s<>=!~;\[@]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _extras() -> list[str]:
    return METADATA.get_all("Provides-Extra") or []


def _declared(*extras: str) -> set[str]:
    """Distributions installed by ``pip install "dlnotes[EXTRAS]"`` (directly, not transitively)."""
    names = set()
    for requirement in METADATA.get_all("Requires-Dist") or []:
        marker = re.search(r"extra == \"([^\"]+)\"", requirement)
        if marker is None or marker.group(1) in extras:
            names.add(_distribution_name(requirement))
    return names


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:``, which never run."""
    nodes: list[ast.AST] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        nodes.append(node)
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            pending.extend(node.orelse)
            continue
        pending.extend(ast.iter_child_nodes(node))
    return nodes


def _top_level_imports(source: str) -> set[str]:
    names = set()
    for node in _runtime_nodes(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif (  # import_quietly("tensorflow") and importlib.import_module("...") with a literal
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None))
            in ("import_quietly", "import_module")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            names.add(node.args[0].value.split(".")[0])
    return names


def _undeclared(modules: set[str], declared: set[str]) -> list[str]:
    distributions = importlib.metadata.packages_distributions()
    missing = []
    for module in sorted(modules):
        if module in sys.stdlib_module_names or module == "dlnotes":
            continue
        if module in PROVIDED_BY_JUPYTER | CHOSEN_BY_THE_USER or module.startswith("_"):
            continue
        names = {_distribution_name(d) for d in distributions.get(module, [module])}
        if not names & declared:
            missing.append(f"{module} (from {sorted(names)})")
    return missing


def _code_cells(chapter: Path) -> str:
    cells = jupytext.read(chapter).cells
    return "\n".join(
        "\n".join(line for line in cell.source.splitlines() if not line.startswith(("%", "!")))
        for cell in cells
        if cell.cell_type == "code"
    )


def test_every_import_of_the_chapters_comes_with_dlnotes_tensorflow() -> None:
    modules: set[str] = set()
    for chapter in sorted((REPO / "chapters").glob("*.md")):
        modules |= _top_level_imports(_code_cells(chapter))
    assert {"sklearn", "tensorflow", "keras"} <= modules  # the scan sees the chapters' imports
    assert _undeclared(modules, _declared("tensorflow")) == [], (
        'pip install "dlnotes[tensorflow]" must be enough to run every notebook'
    )


def test_every_import_of_the_package_is_declared() -> None:
    modules: set[str] = set()
    for module in sorted((REPO / "src" / "dlnotes").rglob("*.py")):
        modules |= _top_level_imports(module.read_text())
    assert {"numpy", "keras", "tensorflow_hub"} <= modules
    assert _undeclared(modules, _declared(*_extras())) == [], (
        "declare them in pyproject.toml (then reinstall: pip install -r requirements.txt)"
    )


def test_the_scan_finds_an_undeclared_import() -> None:
    modules = _top_level_imports(
        "import sklearn\nfrom yaml import safe_load\nimport json\n"
        "if TYPE_CHECKING:\n    import typing_extensions\n"
    )
    assert modules == {"sklearn", "yaml", "json"}
    assert _undeclared(modules, {"scikit-learn"}) == ["yaml (from ['pyyaml'])"]


def test_requirements_pin_every_declared_dependency() -> None:
    pinned = {
        _distribution_name(line)
        for line in (REPO / "requirements.txt").read_text().splitlines()
        if "==" in line
    }
    extras = ("tensorflow", "jax", "book", "test")
    assert sorted(_extras()) == sorted(extras)
    unpinned = _declared(*extras) - pinned
    assert unpinned == set(), "requirements.txt is the tested set: pin these too"


@pytest.mark.slow
def test_the_wheel_carries_the_package_data(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("dlnotes-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    source = REPO / "src"
    expected = {
        path.relative_to(source).as_posix()
        for path in (source / "dlnotes" / "resources").rglob("*")
        if path.is_file()
    }
    assert "dlnotes/resources/recorded_runs/full-profile/metrics.json" in expected
    assert expected <= names, sorted(expected - names)
    assert "dlnotes/py.typed" in names
