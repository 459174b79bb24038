"""Recorded training runs: the GPU runs committed under ``benchmarks/results`` with provenance.

A page that shows a GPU result reads it from the run folder the trainer wrote on the GPU
(``config.json``, ``metrics.json``, ``history.csv``) — never from numbers typed into the page.
Those files travel with the package (``dlnotes/resources/recorded_runs``, copied from
``benchmarks/results`` by ``benchmarks/package_runs.py``), so a source checkout, an installed
wheel, Google Colab and a machine without network all read the same files, with no download.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dlnotes.training.config import upgrade_record

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

RECORDED_RUNS_RESOURCE = "resources/recorded_runs"
"""Where the recorded runs lie inside the package."""

RUN_FILES = ("config.json", "history.csv")
"""Files every run folder has; ``metrics.json`` is written only when a run finishes."""


@dataclass(frozen=True)
class RecordedRun:
    """One recorded run of ``python -m dlnotes.train``.

    Attributes:
        name: Folder name under ``benchmarks/results``, e.g. ``"full-profile"``.
        config: The run's ``config.json``, with the fields added to :class:`TrainConfig` since
            at their defaults (:func:`dlnotes.training.config.upgrade_record`).
        metrics: The run's ``metrics.json``; empty for a run stopped before its end.
        history: The per-epoch log, ``{metric: [value per epoch]}``.
    """

    name: str
    config: dict[str, Any]
    metrics: dict[str, Any]
    history: dict[str, list[float]]


def recorded_runs() -> Traversable:
    """The folder of recorded runs inside the installed package."""
    return importlib.resources.files("dlnotes").joinpath(RECORDED_RUNS_RESOURCE)


def _folder(name: str, root: str | os.PathLike[str] | None) -> Traversable:
    if not name or name.startswith("/") or ".." in name.split("/"):
        raise ValueError(
            f"a recorded run is named by its folder, e.g. 'full-profile', got {name!r}"
        )
    folder: Traversable = Path(root) if root is not None else recorded_runs()
    for part in name.split("/"):
        folder = folder.joinpath(part)
    return folder


def _history(text: str) -> dict[str, list[float]]:
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        return {}
    return {key: [float(row[key]) for row in rows] for key in rows[0]}


def load_run(name: str, *, root: str | os.PathLike[str] | None = None) -> RecordedRun:
    """Read a recorded run.

    Args:
        name: Folder name under ``benchmarks/results`` (may contain ``/``).
        root: Folder holding the runs; default: the copy inside the package.

    Returns:
        The run; ``metrics`` is empty for a run stopped before its end (no ``metrics.json``).

    Raises:
        ValueError: For a name that is not a relative folder name.
        FileNotFoundError: If the run folder lacks one of its files.
    """
    folder = _folder(name, root)
    missing = [file for file in RUN_FILES if not folder.joinpath(file).is_file()]
    if missing:
        raise FileNotFoundError(f"not a recorded run: {folder} lacks {', '.join(missing)}")
    metrics_file = folder.joinpath("metrics.json")
    return RecordedRun(
        name=name,
        config=upgrade_record(json.loads(folder.joinpath("config.json").read_text())),
        metrics=json.loads(metrics_file.read_text()) if metrics_file.is_file() else {},
        history=_history(folder.joinpath("history.csv").read_text()),
    )


def load_scaling(
    folder: str = "multi-gpu", *, root: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """Read the per-run JSON files of a scaling measurement (``benchmarks/multi_gpu.py``).

    Args:
        folder: Folder under ``benchmarks/results`` holding ``index.json`` and the runs.
        root: Folder holding ``folder``; default: the copy inside the package.

    Returns:
        The runs in the order of ``index.json``, each a dict with at least ``name``, ``kind``,
        ``gpus``, ``batch_per_device`` and ``images_per_second``.

    Raises:
        ValueError: For a folder name that is not relative.
        FileNotFoundError: If ``index.json`` or a run it lists is missing.
    """
    base = _folder(folder, root)
    index_file = base.joinpath("index.json")
    if not index_file.is_file():
        raise FileNotFoundError(f"no scaling measurements: {index_file} is missing")
    index = json.loads(index_file.read_text())
    files = [base.joinpath(f"{name}.json") for name in index["runs"]]
    missing = [str(file) for file in files if not file.is_file()]
    if missing:
        raise FileNotFoundError(f"{index_file} lists runs that are missing: {missing}")
    return [json.loads(file.read_text()) for file in files]


def load_measurement(name: str) -> dict[str, Any]:
    """Read a JSON file of measurements that travels with the package.

    Args:
        name: Its path under ``benchmarks/results``, e.g. ``"speed/peers.json"`` (the files
            ``benchmarks/speed_results.py`` and ``benchmarks/multi_gpu.py`` derive from the raw
            logs).

    Returns:
        The file's content.

    Raises:
        ValueError: For a name that is not a relative path to a ``.json`` file.
        FileNotFoundError: If the package holds no such file.
    """
    if not name.endswith(".json"):
        raise ValueError(f"measurements are JSON files, got {name!r}")
    path = _folder(name, None)
    if not path.is_file():
        raise FileNotFoundError(f"no recorded measurement {name!r} in {recorded_runs()}")
    value = json.loads(path.read_text())
    if not isinstance(value, dict):
        raise ValueError(f"{name} holds {type(value).__name__}, not an object")
    return value


def scaling_table(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run with its speed-up over the one-GPU run of the same kind and per-device batch.

    Args:
        runs: As returned by :func:`load_scaling`.

    Returns:
        Copies of the runs, sorted by kind, per-device batch and GPUs, with ``speedup`` (images
        per second ÷ those of the one-GPU run; ``None`` without one), ``efficiency``
        (``speedup`` ÷ GPUs) and ``step_milliseconds`` (the global batch ÷ images per second:
        how long one optimiser step took).

    Raises:
        ValueError: If two runs share kind, per-device batch and number of GPUs.
    """
    keyed: dict[tuple[str, int, int], dict[str, Any]] = {}
    for run in runs:
        key = (run["kind"], run["batch_per_device"], run["gpus"])
        if key in keyed:
            raise ValueError(f"two runs measure {key}: {keyed[key]['name']} and {run['name']}")
        keyed[key] = run
    table = []
    for key in sorted(keyed):
        run = dict(keyed[key])
        base = keyed.get((key[0], key[1], 1))
        speedup = None if base is None else run["images_per_second"] / base["images_per_second"]
        run["speedup"] = speedup
        run["efficiency"] = None if speedup is None else speedup / run["gpus"]
        run["step_milliseconds"] = 1000 * run["global_batch_size"] / run["images_per_second"]
        table.append(run)
    return table


def time_breakdown(metrics: dict[str, Any]) -> dict[str, float]:
    """Split a run's wall time into where it went.

    * **decoding** the JPEGs into memory;
    * **compilation**: how much longer the first epoch took than the median epoch (the first
      epoch traces and compiles the training and evaluation steps);
    * **training** epochs (validation after each epoch included) without that extra;
    * the **final evaluation** (single view and flip-averaged);
    * **the rest**: start-up, imports, listing files, building the models, writing files.

    Args:
        metrics: A ``metrics.json`` of the trainer.

    Returns:
        Seconds per part, in that order; they add up to ``wall_seconds``.

    Raises:
        ValueError: If a timing key is missing.
    """
    keys = (
        "wall_seconds",
        "decode_seconds",
        "fit_seconds",
        "evaluate_seconds",
        "first_epoch_seconds",
        "median_epoch_seconds",
    )
    missing = [key for key in keys if metrics.get(key) is None]
    if missing:
        raise ValueError(f"metrics lack timing keys: {missing}")
    compilation = max(metrics["first_epoch_seconds"] - metrics["median_epoch_seconds"], 0.0)
    measured = metrics["decode_seconds"] + metrics["fit_seconds"] + metrics["evaluate_seconds"]
    return {
        "decoding": metrics["decode_seconds"],
        "compilation (first epoch beyond a steady one)": compilation,
        "training and validation epochs": metrics["fit_seconds"] - compilation,
        "final evaluation": metrics["evaluate_seconds"],
        "start-up, building, writing": metrics["wall_seconds"] - measured,
    }
