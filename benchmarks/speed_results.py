"""Derive the speed measurements the book reads from what came back from the GPU machine.

Usage:
    python benchmarks/speed_results.py [--check]

Reads, unchanged, the raw files under ``benchmarks/results``:

* ``speed/jax.log`` and ``speed/torch.log`` — ``benchmarks/train_throughput.py`` (the trainer's
  network and step, Keras on JAX) and ``benchmarks/torch_peer.py`` (the same network and step in
  PyTorch, eager and ``torch.compile``), run one after the other in one call on one card; their
  last line is a JSON list;
* ``speed/trace.json.gz``, ``speed/train_step.hlo.txt.gz``, ``speed/cost.json`` — the profile of
  a steady epoch (``--profile-dir``), analysed by ``benchmarks/op_classes.py``;
* ``fast-profile/`` and ``startup/train.log`` — the fast profile's cold run, and the same command
  run again right after with the caches the first one left, stopped after a few epochs.

Writes ``speed/throughput.json``, ``speed/peers.json``, ``speed/op_classes.json`` and
``startup/summary.json``. ``--check`` writes nothing and fails if a committed file differs from
what the raw files give (``tests/test_recorded_runs.py`` runs it).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
COMMIT = "579ff0e"
"""The repository commit the machine ran (the working tree carried to it)."""
MACHINE = "device kind nvidia-h200: 1 × NVIDIA H200 (143,771 MiB, driver 580.159.04), 16 CPU cores"
ENVIRONMENT = (
    "KERAS_BACKEND=jax, PYTHONPATH=src with the keras 3.15.1, namex and optree wheels installed "
    "beside the machine's Python 3.12.3, JAX 0.11.2 and PyTorch 2.11.0+cu130"
)


def _last_json(log: Path) -> list[dict[str, Any]]:
    return json.loads(log.read_text().strip().splitlines()[-1])


def _op_classes() -> Any:
    spec = importlib.util.spec_from_file_location(
        "op_classes", Path(__file__).resolve().parent / "op_classes.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _epochs(log_text: str) -> list[float]:
    return [float(m) for m in re.findall(r"^epoch \d+ took ([\d.]+) s", log_text, re.M)]


def derive(results: Path = RESULTS) -> dict[Path, Any]:
    """Every derived file and its content."""
    speed = results / "speed"
    keras_rows = _last_json(speed / "jax.log")
    torch_rows = _last_json(speed / "torch.log")
    reference = next(r for r in keras_rows if r["width"] == 96 and r["batch_per_device"] == 512)
    provenance = {"machine": MACHINE, "environment": ENVIRONMENT, "commit": COMMIT}
    peers = [
        {
            "framework": (
                f"Keras {reference['keras_version']} on JAX {reference['backend_version']}"
            ),
            "mode": "the trainer (jit, 32 steps per call)",
            "images_per_second": reference["images_per_second"],
            "compile_seconds": reference["first_epoch_extra_seconds"],
        }
    ] + [
        {
            "framework": row["framework"],
            "mode": row["mode"],
            "images_per_second": row["images_per_second"],
            "compile_seconds": row["warmup_seconds"],
        }
        for row in torch_rows
    ]
    for peer in peers:
        peer["relative_to_the_trainer"] = round(
            peer["images_per_second"] / reference["images_per_second"], 3
        )
    op_classes = _op_classes().analyse(
        speed,
        peak_tflops=989.0,
        peak_tbps=4.8,
        model_gflop_per_image=reference["forward_gflop_per_image"],
    )
    cold = json.loads((results / "fast-profile" / "metrics.json").read_text())
    cold_log = (results / "fast-profile" / "train.log").read_text()
    warm_log = (results / "startup" / "train.log").read_text()
    warm_epochs = _epochs(warm_log)
    decode = re.search(r"^images ready in ([\d.]+) s \((\w+)\)", warm_log, re.M)
    if decode is None or len(warm_epochs) < 3:
        raise SystemExit("startup/train.log lacks the decode time or three epochs")
    startup = {
        "command": warm_log.splitlines()[0].removeprefix("# "),
        "cold": {
            "decode_seconds": round(cold["decode_seconds"], 2),
            "decode_cache": cold["decode_cache"],
            "first_epoch_seconds": round(cold["first_epoch_seconds"], 2),
            "steady_epoch_seconds": round(cold["median_epoch_seconds"], 2),
            "epoch_seconds": _epochs(cold_log),
        },
        "warm": {
            "decode_seconds": float(decode.group(1)),
            "decode_cache": decode.group(2),
            "first_epoch_seconds": warm_epochs[0],
            "steady_epoch_seconds": sorted(warm_epochs[1:])[len(warm_epochs[1:]) // 2],
            "epoch_seconds": warm_epochs,
        },
    }
    for run in (startup["cold"], startup["warm"]):
        run["first_epoch_extra_seconds"] = round(
            run["first_epoch_seconds"] - run["steady_epoch_seconds"], 2
        )
    return {
        speed / "throughput.json": {**provenance, "runs": keras_rows},
        speed / "peers.json": {
            **provenance,
            "network": {"levels": reference["levels"], "width": reference["width"]},
            "batch": reference["batch_per_device"],
            "runs": peers,
        },
        speed / "op_classes.json": {**provenance, **op_classes},
        results / "startup" / "summary.json": {**provenance, **startup},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for path, content in derive().items():
        text = json.dumps(content, indent=2) + "\n"
        if args.check:
            if not path.is_file() or path.read_text() != text:
                stale.append(str(path.relative_to(RESULTS)))
        else:
            path.write_text(text)
    if stale:
        print(f"out of date (run benchmarks/speed_results.py): {stale}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
