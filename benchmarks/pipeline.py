"""Input-pipeline throughput on Tiny ImageNet: five loaders measured side by side, several runs.

Usage:
    python benchmarks/pipeline.py --data-dir ROOT [--runs 3] [--repeat 20] [--batch-size 128]
        [--machine TEXT] [--dataset TEXT] [--write]

See dlnotes.data.throughput.compare_loaders for what is measured. Prints a table per run with the
ratio of each loader to the legacy ImageDataGenerator. With --write, the runs are stored in the
package resource src/dlnotes/resources/pipeline_benchmark.json, the one source of the numbers that
the input-pipeline chapter plots and the README quotes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
from pathlib import Path

from dlnotes import data, runtime
from dlnotes.data import throughput
from dlnotes.runtime import paths, storage

RESULTS = Path(__file__).resolve().parents[1] / "src" / "dlnotes" / throughput.RESULTS_RESOURCE


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None, help="Tiny ImageNet root")
    parser.add_argument("--runs", type=int, default=3, help="independent runs of all five loaders")
    parser.add_argument("--repeat", type=int, default=20, help="passes over the training split")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--machine", default=None, help="how to name this machine")
    parser.add_argument("--dataset", default=None, help="how to name the data set")
    parser.add_argument("--write", action="store_true", help=f"store the runs in {RESULTS}")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be at least 1, got {args.runs}")
    root = args.data_dir if args.data_dir is not None else paths.data_dir()
    tf = runtime.import_quietly("tensorflow")
    images = len(data.read_split(root, "train").paths)
    machine = args.machine or (
        f"{os.cpu_count()} CPU cores ({_cpu_model()}, {platform.machine()}), no GPU"
    )
    print(
        f"{images} training images × {args.repeat} passes, batch {args.batch_size}; {machine}, "
        f"TensorFlow {tf.__version__}"
    )
    runs = []
    for number in range(1, args.runs + 1):
        rates = throughput.compare_loaders(root, repeat=args.repeat, batch_size=args.batch_size)
        base = rates["image_data_generator"]
        print(f"\nrun {number}\n{'loader':<32}{'images/s':>12}{'× ImageDataGenerator':>24}")
        for name, rate in rates.items():
            print(f"{name:<32}{rate:>12,.0f}{rate / base:>24.1f}")
        runs.append({name: round(rate, 1) for name, rate in rates.items()})
    results = {
        "machine": machine,
        "date": datetime.date.today().isoformat(),
        "tensorflow": tf.__version__,
        "dataset": args.dataset or str(root),
        "images": images,
        "repeat": args.repeat,
        "batch_size": args.batch_size,
        "runs": runs,
    }
    throughput.check_results(results)
    if args.write:
        storage.write_json(RESULTS, results)
        print(f"\nwrote {RESULTS}")
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
