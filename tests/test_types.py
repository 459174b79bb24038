"""mypy's configuration in pyproject.toml is strict.

mypy itself checks the package (it ships ``py.typed``) in CI's lint step and as a pre-commit hook,
with this configuration (tests/test_lint.py checks that both run it).
"""

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
