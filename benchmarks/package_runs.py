"""Copy the recorded runs that the book reads into the package, so that they travel with it.

Usage:
    python benchmarks/package_runs.py [--check]

``benchmarks/results`` keeps everything that came back from the GPU machines (logs included).
The pages read only each run's ``config.json``, ``metrics.json`` (absent for a run stopped before
its end) and ``history.csv``, and the JSON files of the other measurements: this script
copies exactly those into ``src/dlnotes/resources/recorded_runs/``, with the same folder names,
and removes packaged files whose source is gone. :mod:`dlnotes.training.records` reads them from
there, so an installed package, Google Colab and a machine without network read the same files as
a source checkout. ``--check`` copies nothing and fails if the package's copy differs
(``tests/test_records.py`` runs it).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PACKAGED = REPO / "src" / "dlnotes" / "resources" / "recorded_runs"
RUN_FILES = ("config.json", "metrics.json", "history.csv")
MEASUREMENT_FOLDERS = ("multi-gpu", "speed", "startup")


def wanted_files(results: Path = RESULTS) -> list[Path]:
    """The files of ``results`` the package carries, relative to ``results``, sorted.

    Args:
        results: The folder of recorded runs.

    Returns:
        Every run file (see :data:`RUN_FILES`) of every folder holding a ``history.csv``, and
        every ``*.json`` directly inside the measurement folders (:data:`MEASUREMENT_FOLDERS`).
    """
    files: set[Path] = set()
    for history in results.rglob("history.csv"):
        for name in RUN_FILES:
            if (history.parent / name).is_file():
                files.add((history.parent / name).relative_to(results))
    for folder in MEASUREMENT_FOLDERS:
        files |= {path.relative_to(results) for path in (results / folder).glob("*.json")}
    return sorted(files)


def differences(results: Path = RESULTS, packaged: Path = PACKAGED) -> list[str]:
    """What differs between the recorded runs and the package's copy.

    Args:
        results: The folder of recorded runs.
        packaged: The package's copy.

    Returns:
        One line per missing, changed or extra packaged file; empty when in sync.
    """
    wanted = set(wanted_files(results))
    present = {path.relative_to(packaged) for path in packaged.rglob("*") if path.is_file()}
    lines = [f"missing from the package: {path}" for path in sorted(wanted - present)]
    lines += [
        f"changed: {path}"
        for path in sorted(wanted & present)
        if not filecmp.cmp(results / path, packaged / path, shallow=False)
    ]
    lines += [f"no longer recorded: {path}" for path in sorted(present - wanted)]
    return lines


def copy_runs(results: Path = RESULTS, packaged: Path = PACKAGED) -> int:
    """Bring the package's copy in line with the recorded runs.

    Args:
        results: The folder of recorded runs.
        packaged: The package's copy.

    Returns:
        The number of files copied or removed.
    """
    changes = differences(results, packaged)
    wanted = set(wanted_files(results))
    for path in wanted:
        target = packaged / path
        if not target.is_file() or not filecmp.cmp(results / path, target, shallow=False):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(results / path, target)
    for path in sorted(packaged.rglob("*"), reverse=True):
        if path.is_file() and path.relative_to(packaged) not in wanted:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()
    return len(changes)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="copy nothing; fail if out of date")
    args = parser.parse_args(argv)
    if args.check:
        lines = differences()
        for line in lines:
            print(line, file=sys.stderr)
        if lines:
            print("run: python benchmarks/package_runs.py", file=sys.stderr)
        return 1 if lines else 0
    print(f"{copy_runs()} file(s) updated in {PACKAGED.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
