"""README's commands, CI's steps and the pre-commit hooks agree; ruff, ruff format and mypy run
in CI's lint step and in pre-commit (not in pytest: the quick loop stays quick)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_package_imports_and_has_a_version() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import dlnotes; print(dlnotes.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "0.1.0"


def _readme_commands() -> list[str]:
    readme = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:]]
    assert len(blocks) == 2, "README must show exactly two set-up commands"
    return blocks


def _ci_lines() -> list[str]:
    return [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]


def _pre_commit_hooks() -> dict[str, dict[str, str]]:
    import yaml

    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    return {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}


def test_ci_runs_the_test_command_written_in_readme() -> None:
    install_and_build, test_command = _readme_commands()
    assert "jupyter-book build" in install_and_build and "requirements.txt" in install_and_build
    assert test_command in _ci_lines()


# The lint and type checks run in CI as a step of their own, before README's test command, and
# as pre-commit hooks: each CI line is its hook's command without the fixing.
CI_CHECKS = {
    "ruff": ".venv/bin/ruff check .",
    "ruff-format": ".venv/bin/ruff format --check .",
    "mypy": ".venv/bin/mypy",
}


def test_ci_runs_the_lint_and_type_checks_of_the_hooks_before_the_tests() -> None:
    lines, hooks = _ci_lines(), _pre_commit_hooks()
    assert "set -euo pipefail" in lines  # a failing check fails CI
    for hook_id, command in CI_CHECKS.items():
        assert command.startswith(hooks[hook_id]["entry"].removesuffix(" --fix")), hook_id
        assert command in lines, f".ci/run does not run {command!r}"
    positions = [lines.index(command) for command in CI_CHECKS.values()]
    assert max(positions) < lines.index(_readme_commands()[1])


def test_readme_pipeline_table_is_the_committed_benchmark() -> None:
    from dlnotes.data import throughput

    readme = (REPO / "README.md").read_text()
    results = throughput.reference_results()
    assert results["machine"] in readme and results["date"] in readme
    for loader in throughput.LOADERS:
        rates = " | ".join(f"{run[loader]:,.0f}" for run in results["runs"])
        row = f"| {throughput.LOADER_NAMES[loader]} | {rates} |"
        assert row in readme, f"README's pipeline table lacks the row {row!r}"


def test_pre_commit_hooks_use_the_pinned_tools_of_the_venv() -> None:
    hooks = _pre_commit_hooks()
    assert set(hooks) >= {"ruff", "ruff-format", "colab-first-cells", "jupytext-sync", "mypy"}
    pinned = (REPO / "requirements.txt").read_text()
    for hook in hooks.values():
        tool = Path(hook["entry"].split()[0]).name
        if tool == "python":  # a module of this package, run by the venv's interpreter
            assert hook["entry"].startswith(".venv/bin/python -m dlnotes."), hook["entry"]
            continue
        assert f"\n{tool}==" in pinned, f"{tool} of hook {hook['id']} is not pinned"
        assert (Path(sys.executable).parent / tool).is_file(), f"{tool} is not in the venv"
