"""How many epochs of a recipe fit a time budget, from measurements made on the same card.

Usage:
    python benchmarks/budget_epochs.py --budget 300 --throughput BENCH.json --levels 1,2,4,2
        --width 96 --batch 512 [--overhead-run RUN/metrics.json] [--margin 15]

The whole command's time is the fixed part (start-up, decoding, compiling, the final evaluation)
plus the epochs. The fixed part comes from a finished run of the trainer on the same machine
(``--overhead-run``: its wall time minus its epochs) or, without one, from the benchmark's
compilation time plus :data:`FIXED_WITHOUT_A_RUN` seconds for start-up, decoding and the final
evaluation. An epoch's time is the training images over the benchmark's images per second, plus
:data:`VALIDATION_SECONDS`. Prints the number of epochs (at least 1) and, on stderr, the
arithmetic.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

TRAIN_IMAGES = 100_000
FIXED_WITHOUT_A_RUN = 48.0
"""Seconds of start-up, decoding and final evaluation assumed without a finished run (the recorded
H100 run benchmarks/results/full-profile spent 19.5 s decoding, 4.4 s in the final evaluation
and 23.7 s starting, building and writing)."""
VALIDATION_SECONDS = 0.5
"""Seconds per epoch beyond training: validation on 10,000 images and the checkpoints."""


def _measurement(path: Path, levels: list[int], width: int, batch: int) -> dict[str, Any]:
    rows = json.loads(path.read_text())
    for row in rows:
        if row["levels"] == levels and row["width"] == width and row["batch_per_device"] == batch:
            return dict(row)
    raise SystemExit(f"{path} has no measurement of levels {levels}, width {width}, batch {batch}")


def run_batch(metrics: dict[str, Any]) -> int:
    """The per-device batch of a finished run."""
    return int(metrics["global_batch_size"]) // int(metrics.get("replicas", 1))


def epochs_within(
    budget: float,
    images_per_second: float,
    fixed_seconds: float,
    *,
    margin: float = 15.0,
    train_images: int = TRAIN_IMAGES,
    epoch_factor: float = 1.0,
) -> tuple[int, str]:
    """The most epochs whose predicted whole-command time stays under ``budget - margin``.

    Args:
        budget: Seconds for the whole command.
        images_per_second: Training throughput of the recipe on the card.
        fixed_seconds: Seconds that do not depend on the number of epochs.
        margin: Seconds kept free for what the prediction misses.
        train_images: Training images per epoch.
        epoch_factor: Measured over predicted epoch time of a finished run (1: none).

    Returns:
        ``(epochs, explanation)``.
    """
    epoch = (train_images / images_per_second + VALIDATION_SECONDS) * epoch_factor
    epochs = max(1, math.floor((budget - margin - fixed_seconds) / epoch))
    explanation = (
        f"{budget:.0f} s − {margin:.0f} s margin − {fixed_seconds:.1f} s fixed = "
        f"{budget - margin - fixed_seconds:.1f} s for epochs of {epoch:.2f} s "
        f"(({train_images:,} images at {images_per_second:,.0f}/s + {VALIDATION_SECONDS} s) "
        f"× {epoch_factor:.3f}) "
        f"→ {epochs} epochs, predicted {fixed_seconds + epochs * epoch:.0f} s"
    )
    return epochs, explanation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--budget", type=float, required=True)
    parser.add_argument("--throughput", type=Path, required=True, help="train_throughput JSON")
    parser.add_argument("--levels", required=True)
    parser.add_argument("--width", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--overhead-run", type=Path, default=None, help="a finished metrics.json")
    parser.add_argument("--margin", type=float, default=15.0)
    args = parser.parse_args(argv)
    levels = [int(v) for v in args.levels.split(",")]
    row = _measurement(args.throughput, levels, args.width, args.batch)
    factor = 1.0
    if args.overhead_run is not None:
        run = json.loads(args.overhead_run.read_text())
        fixed = run["wall_seconds"] - run["fit_seconds"] + run["first_epoch_seconds"]
        fixed -= run["median_epoch_seconds"]  # the first epoch's compilation stays fixed
        # How far that run's epochs were from what the benchmark predicts for its recipe.
        config = json.loads((args.overhead_run.parent / "config.json").read_text())
        measured = _measurement(args.throughput, config["levels"], config["width"], run_batch(run))
        factor = run["median_epoch_seconds"] / (
            TRAIN_IMAGES / measured["images_per_second"] + VALIDATION_SECONDS
        )
        source = f"{args.overhead_run}"
    else:
        fixed = row["first_epoch_extra_seconds"] + FIXED_WITHOUT_A_RUN
        source = "benchmark compilation + assumed start-up, decoding, evaluation"
    epochs, explanation = epochs_within(
        args.budget, row["images_per_second"], fixed, margin=args.margin, epoch_factor=factor
    )
    print(f"fixed part from {source}: {explanation}", file=sys.stderr)
    print(epochs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
