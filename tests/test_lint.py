from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_is_clean() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run([str(ruff), "check", str(REPO)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_code_and_notebooks_are_formatted() -> None:
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "format", "--check", str(REPO)], capture_output=True, text=True, cwd=REPO
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_package_imports_and_has_a_version() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import dlnotes; print(dlnotes.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "0.1.0"


def test_ci_runs_the_test_command_written_in_readme() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = [b.split("```", 1)[0].strip() for b in readme.split("```bash\n")[1:]]
    assert len(blocks) == 2, "README must show exactly two set-up commands"
    install_and_build, test_command = blocks
    assert "jupyter-book build" in install_and_build and "requirements.txt" in install_and_build
    ci_lines = [line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()]
    assert test_command in ci_lines


def test_readme_pipeline_table_is_the_committed_benchmark() -> None:
    from dlnotes.data import throughput

    readme = (REPO / "README.md").read_text()
    results = throughput.reference_results()
    assert results["machine"] in readme and results["date"] in readme
    for loader in throughput.LOADERS:
        rates = " | ".join(f"{run[loader]:,.0f}" for run in results["runs"])
        row = f"| {throughput.LOADER_NAMES[loader]} | {rates} |"
        assert row in readme, f"README's pipeline table lacks the row {row!r}"


def test_pre_commit_runs_the_checks_the_suite_runs() -> None:
    import yaml

    config = yaml.safe_load((REPO / ".pre-commit-config.yaml").read_text())
    hooks = {hook["id"]: hook for repo in config["repos"] for hook in repo["hooks"]}
    assert set(hooks) >= {"ruff", "ruff-format", "colab-first-cells", "jupytext-sync", "mypy"}
    pinned = (REPO / "requirements.txt").read_text()
    for hook in hooks.values():
        tool = Path(hook["entry"].split()[0]).name
        if tool == "python":  # a module of this package, run by the venv's interpreter
            assert hook["entry"].startswith(".venv/bin/python -m dlnotes."), hook["entry"]
            continue
        assert f"\n{tool}==" in pinned, f"{tool} of hook {hook['id']} is not pinned"
        assert (Path(sys.executable).parent / tool).is_file(), f"{tool} is not in the venv"
