"""The package's shape: layers import only from the layers below them, nothing cycles, modules and
functions stay short.

runtime → theory → data → models → training → book (each may use the ones before it). Imports
inside functions count: a function-level import is a dependency as much as a module-level one.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "dlnotes"
LAYERS = ["runtime", "theory", "data", "models", "training", "book"]
FRAMEWORKS = {"tensorflow", "tensorflow_hub", "keras", "jax", "torch"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (string-named imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                candidate = f"{node.module}.{alias.name}"
                found.add(candidate if candidate in MODULES else node.module)
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_quietly"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1:
        return -1  # dlnotes itself: the version only
    if parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return len(LAYERS)  # dlnotes.train, the command's entry point, sits on top


def _dependencies() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        graph[module] = {
            imported
            for imported in _imports(path)
            if imported.split(".")[0] == "dlnotes" and imported != module
        }
    return graph


@pytest.mark.parametrize("module", sorted(MODULES))
def test_a_module_imports_only_from_its_layer_and_below(module: str) -> None:
    higher = sorted(
        imported for imported in _dependencies()[module] if _layer(imported) > _layer(module)
    )
    assert not higher, f"{module} (layer {_layer(module)}) imports from higher layers: {higher}"


def test_there_is_no_import_cycle() -> None:
    graph = _dependencies()
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.get(module, ())):
            if state.get(imported) == 1:
                pytest.fail(
                    "import cycle: " + " → ".join([*path[path.index(imported) :], imported])
                )
            elif imported in graph and state.get(imported) is None:
                visit(imported)
        path.pop()
        state[module] = 2

    for module in sorted(graph):
        if state.get(module) is None:
            visit(module)


def test_theory_never_imports_a_deep_learning_framework() -> None:
    for module, path in MODULES.items():
        if module.startswith("dlnotes.theory"):
            used = {name.split(".")[0] for name in _imports(path)} & FRAMEWORKS
            assert not used, f"{module} imports {sorted(used)}"


def test_a_submodule_does_not_import_its_own_package() -> None:
    for module, path in MODULES.items():
        package = module.rsplit(".", 1)[0]
        if path.name != "__init__.py" and package != "dlnotes":
            assert package not in _imports(path), (
                f"{module} imports its own package {package}: import the sibling module instead"
            )


def test_importing_the_package_and_the_training_command_is_cheap() -> None:
    code = (
        "import sys, dlnotes, dlnotes.train, dlnotes.runtime, dlnotes.theory; "
        "print(sorted(m for m in ('numpy', 'keras', 'tensorflow', 'jax') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]", result.stdout


MODULE_LINES = 410
"""A module longer than this (about 400 lines) says why at its top, after ``Why this is long:``."""

FUNCTION_LINES = 60
"""A function's code (its docstring not counted) stays within this, drawing code apart."""

DRAWING_MODULES = {"dlnotes.book.diagrams", "dlnotes.book.plotting"}


def _code_lines(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    lines = function.end_lineno - function.lineno + 1
    first = function.body[0]
    if ast.get_docstring(function) is not None and isinstance(first, ast.Expr):
        lines -= first.end_lineno - first.lineno + 1
    return lines


def test_long_modules_say_why() -> None:
    long = {
        module: len(path.read_text().splitlines())
        for module, path in MODULES.items()
        if len(path.read_text().splitlines()) > MODULE_LINES
        and "Why this is long:" not in (ast.get_docstring(ast.parse(path.read_text())) or "")
    }
    assert not long, f"modules over {MODULE_LINES} lines without a reason at the top: {long}"


def test_functions_are_short_outside_drawing_code() -> None:
    long = {
        f"{module}.{node.name}": _code_lines(node)
        for module, path in MODULES.items()
        if module not in DRAWING_MODULES
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and _code_lines(node) > FUNCTION_LINES
    }
    assert not long, f"functions over {FUNCTION_LINES} lines of code: {long}"
