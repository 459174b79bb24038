"""The package ships ``py.typed``: mypy, strict as configured in pyproject.toml, finds nothing."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _mypy(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", *arguments],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_package_is_clean_under_strict_mypy() -> None:
    result = _mypy()  # the files and options of [tool.mypy]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout


def test_mypy_configuration_is_strict(tmp_path: Path) -> None:
    # The same configuration must reject an unannotated function and a bare `type: ignore`.
    module = tmp_path / "loose.py"
    module.write_text("def double(x):\n    return 2 * x\n\n\ny: int = 'one'  # type: ignore\n")
    result = _mypy(
        "--config-file",
        str(REPO / "pyproject.toml"),
        "--cache-dir",
        str(tmp_path / "cache"),  # not the package's cache: mypy caches by module name
        str(module),
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[no-untyped-def]" in result.stdout, result.stdout
    assert "[ignore-without-code]" in result.stdout, result.stdout
