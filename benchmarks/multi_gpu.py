"""Collect the multi-GPU measurements into one JSON file per run.

Usage:
    python benchmarks/multi_gpu.py [--results benchmarks/results/multi-gpu] [--check]

Reads what came back from the GPU machine, unchanged: the logs of
``benchmarks/train_throughput.py`` under ``logs/`` (their last line is a JSON list, one entry
per configuration) and the run folders of ``python -m dlnotes.train`` (``full-*/metrics.json``).
Writes ``<name>.json`` for every measured run — ``gpus``, ``images_per_second``, ``val_top1``
for the full recipe, the card, the host, backend, versions, date, the command and its source
file — and ``index.json`` listing them. ``--check`` writes nothing and fails if the committed
files differ from what the sources give.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

HOST = (
    "device kind nvidia-h100-x2: 2 × NVIDIA H100 80GB HBM3 (81,559 MiB, driver 580.159.04), "
    "32 CPU cores, 251 GiB (logs/machine.txt)"
)
COMMIT = "ee88971"
"""The repository commit the machine ran (the working tree carried to it)."""

PREFIX = (
    "# environment: KERAS_BACKEND=jax DLNOTES_PROFILE=full PYTHONPATH=src, with the keras 3.15.1, "
    "namex and optree wheels installed beside the machine's JAX"
)
THROUGHPUT_LOGS = {
    "throughput-1gpu.log": "CUDA_VISIBLE_DEVICES=0 python3 benchmarks/train_throughput.py "
    "--steps 320 --configs 1,2,4,2:96:256 1,2,4,2:96:128",
    "throughput-2gpu.log": "python3 benchmarks/train_throughput.py --steps 320 "
    "--configs 1,2,4,2:96:256 1,2,4,2:96:128 --distribute data-parallel",
    "throughput-1gpu-batch512.log": "CUDA_VISIBLE_DEVICES=0 python3 benchmarks/train_throughput.py "
    "--steps 160 --configs 1,2,4,2:96:512",
    "throughput-2gpu-batch512.log": "python3 benchmarks/train_throughput.py --steps 160 "
    "--configs 1,2,4,2:96:512 --distribute data-parallel",
}
FULL_RUNS = {
    "full-1gpu": "CUDA_VISIBLE_DEVICES=0 python3 -m dlnotes.train --data-dir /tmp/tin "
    "--out-dir /tmp/runs/full-profile-1gpu-same-host",
    "full-2gpu": "python3 -m dlnotes.train --data-dir /tmp/tin "
    "--out-dir /tmp/runs/full-profile-2gpu --distribute data-parallel",
}


def card_name(device: str) -> str:
    """``"GPU: 2 × NVIDIA H100 80GB HBM3"`` → ``"NVIDIA H100 80GB HBM3"``."""
    name = device.removeprefix("GPU: ")
    count, times, rest = name.partition(" × ")
    return rest if times and count.isdigit() else name


def _common(record: dict[str, Any], gpus: int) -> dict[str, Any]:
    return {
        "gpus": gpus,
        "card": card_name(record["device"]),
        "host": HOST,
        "backend": record["backend"],
        "backend_version": record["backend_version"],
        "keras_version": record["keras_version"],
        "date": record["date"],
        "commit": COMMIT,
    }


def collect(results: Path) -> dict[str, dict[str, Any]]:
    """Every measured run of ``results`` as ``{name: record}``."""
    runs: dict[str, dict[str, Any]] = {}
    for log, command in THROUGHPUT_LOGS.items():
        rows = json.loads((results / "logs" / log).read_text().strip().splitlines()[-1])
        for row in rows:
            name = f"throughput-{row['gpus']}gpu-batch{row['batch_per_device']}"
            runs[name] = {
                "name": name,
                "kind": "throughput",
                **_common(row, row["gpus"]),
                "images_per_second": row["images_per_second"],
                "batch_per_device": row["batch_per_device"],
                "global_batch_size": row["batch_per_device"] * row["replicas"],
                "levels": row["levels"],
                "width": row["width"],
                "precision": row["precision"],
                "steps_per_execution": row["steps_per_execution"],
                "mfu_per_gpu": row["mfu"],
                "command": f"{PREFIX}\n{command}",
                "source": f"logs/{log}",
            }
    for name, command in FULL_RUNS.items():
        metrics = json.loads((results / name / "metrics.json").read_text())
        config = json.loads((results / name / "config.json").read_text())
        runs[name] = {
            "name": name,
            "kind": "full recipe",
            **_common(metrics, metrics["replicas"]),
            "images_per_second": metrics["train_images_per_second"],
            "batch_per_device": config["batch_size"],
            "global_batch_size": metrics["global_batch_size"],
            "val_top1": metrics["val_top1"],
            "val_top1_single_view": metrics["val_top1_single_view"],
            "val_top5": metrics["val_top5"],
            "epochs": metrics["epochs_completed"],
            "median_epoch_seconds": metrics["median_epoch_seconds"],
            "first_epoch_seconds": metrics["first_epoch_seconds"],
            "wall_seconds": metrics["wall_seconds"],
            "command": f"{PREFIX}\n{command}",
            "source": f"{name}/",
        }
    return dict(sorted(runs.items()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    default = Path(__file__).resolve().parent / "results" / "multi-gpu"
    parser.add_argument("--results", type=Path, default=default)
    parser.add_argument("--check", action="store_true", help="compare, write nothing")
    args = parser.parse_args(argv)
    runs = collect(args.results)
    files = {f"{name}.json": record for name, record in runs.items()}
    files["index.json"] = {"runs": list(runs)}
    stale = []
    for file, record in files.items():
        text = json.dumps(record, indent=2, ensure_ascii=False) + "\n"
        path = args.results / file
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(file)
        else:
            path.write_text(text)
    if stale:
        print(f"stale or missing in {args.results}: {', '.join(stale)}", file=sys.stderr)
        return 1
    print(f"{len(runs)} runs {'checked' if args.check else 'written'} in {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
