"""Input-pipeline throughput on Tiny ImageNet: five loaders measured side by side in one run.

Usage:
    python benchmarks/pipeline.py --data-dir ROOT [--repeat 20] [--batch-size 128]

See dlnotes.throughput.compare_loaders for what is measured. Prints a table with the ratio of
each loader to the legacy ImageDataGenerator and, as its last line, one JSON object with the
five rates (images per second).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from dlnotes import data, paths, runtime, throughput


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="Tiny ImageNet root")
    parser.add_argument("--repeat", type=int, default=20, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    root = args.data_dir if args.data_dir is not None else paths.data_dir()
    rates = throughput.compare_loaders(root, repeat=args.repeat, batch_size=args.batch_size)
    tf = runtime.import_quietly("tensorflow")
    images = len(data.read_split(root, "train").paths)
    print(
        f"\n{images} training images × {args.repeat} passes, batch {args.batch_size}; "
        f"{os.cpu_count()} CPU cores ({platform.machine()}), TensorFlow {tf.__version__}"
    )
    base = rates["image_data_generator"]
    print(f"{'loader':<32}{'images/s':>12}{'× ImageDataGenerator':>24}")
    for name, rate in rates.items():
        print(f"{name:<32}{rate:>12,.0f}{rate / base:>24.1f}")
    print(json.dumps({name: round(rate, 1) for name, rate in rates.items()}))
    return rates


if __name__ == "__main__":
    main()
