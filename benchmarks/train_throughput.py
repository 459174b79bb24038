"""Training throughput of the trainer's own network and input path, on synthetic images.

Usage:
    KERAS_BACKEND=jax python benchmarks/train_throughput.py [--configs 4,6,3,2:64:256 …]
        [--steps 60] [--mix cutmix] [--distribute none|data-parallel] [--profile full]

Each configuration ``LEVELS:WIDTH:BATCH`` (batch per device) is trained exactly as
``python -m dlnotes.train`` trains it — the images held in accelerator memory by
``ImageLookup``, index batches with MixUp/CutMix parameters from ``IndexBatches``, augmentation
and mixing inside the compiled step, the profile's optimiser, precision and steps per execution —
for two epochs of ``--steps`` steps on random uint8 images (200 classes). Reported per
configuration: images per second in the second epoch, the seconds the first epoch took beyond
the second (≈ compilation), and the model-FLOP utilisation MFU = 3 × forward FLOPs per image ×
rate / (the card's datasheet peak × devices) (NVIDIA H100 SXM: 989 TFLOP/s dense bf16; the peak
used is printed). The last line is one JSON list of the measurements.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from dlnotes import runtime, training


def measure(
    levels: tuple[int, ...],
    width: int,
    batch_size: int,
    *,
    steps: int,
    mix: str,
    distribute: str,
    profile: str,
    steps_per_execution: int | None,
    profile_dir: Path | None = None,
) -> dict:
    """Train one configuration for two short epochs and return its measurements.

    With ``profile_dir`` (JAX only), also write what :func:`profile_steady_epoch` records there.
    """
    keras = runtime.import_quietly("keras")
    from dlnotes import models, training

    keras.utils.clear_session()
    config = training.TrainConfig.for_profile(
        profile, levels=levels, width=width, batch_size=batch_size, mix=mix
    )
    capability = runtime.gpu_compute_capability()
    policy = training.precision_policy(capability)
    spe = steps_per_execution or (32 if capability is not None else 1)
    rng = np.random.default_rng(0)
    with training.distribution(distribute) as (replicas, scope):
        global_batch = batch_size * replicas
        count = steps * global_batch
        dataset = training.Dataset(
            train_images=rng.integers(0, 256, (count, 64, 64, 3), dtype=np.uint8),
            train_labels=rng.integers(0, 200, count),
            val_images=rng.integers(0, 256, (global_batch, 64, 64, 3), dtype=np.uint8),
            val_labels=rng.integers(0, 200, global_batch),
            class_ids=[f"n{i:08d}" for i in range(200)],
            mean=[120.0] * 3,
            std=[64.0] * 3,
            decode_seconds=0.0,
        )
        with scope:
            started = time.perf_counter()
            backbone, built = training.build_models(
                config,
                dataset,
                replicas=replicas,
                steps_per_epoch=steps,
                policy=policy,
                jit_compile=True if capability is not None else "auto",
                steps_per_execution=spe,
            )
            build_seconds = time.perf_counter() - started
        meter = training.Throughput(global_batch, images_per_epoch=count)
        batches = training.training_batches(config, dataset, global_batch)
        built.train.fit(batches, epochs=2, verbose=0, callbacks=[meter])
        if profile_dir is not None:
            profile_steady_epoch(
                built.train, batches, profile_dir, step_seconds=global_batch / meter.rates[-1]
            )
    device = runtime.device_description()
    rate = meter.rates[-1]
    flops = models.forward_flops(backbone)
    peak = training.peak_flops(device, policy)
    return {
        "levels": list(levels),
        "width": width,
        "batch_per_device": batch_size,
        "replicas": replicas,
        "mix": mix,
        "precision": policy,
        "steps_per_execution": spe,
        "images_per_second": round(rate, 1),
        "first_epoch_extra_seconds": round(meter.epoch_seconds[0] - meter.epoch_seconds[1], 2),
        "build_seconds": round(build_seconds, 2),
        "forward_gflop_per_image": round(flops / 1e9, 4),
        "parameters": int(backbone.count_params()),
        "mfu": None if peak is None else round(3 * flops * rate / (peak * replicas), 4),
        "peak_flops": peak,
        "device": device,
        "gpus": replicas if runtime.gpu_compute_capability() is not None else 0,
        "backend": runtime.keras_backend(),
        "backend_version": str(
            getattr(runtime.import_quietly(runtime.keras_backend()), "__version__", "unknown")
        ),
        "keras_version": keras.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def profile_steady_epoch(model: Any, batches: Any, folder: Path, *, step_seconds: float) -> None:
    """Record where a steady epoch's time goes (JAX backend), for ``benchmarks/op_classes.py``.

    Writes into ``folder``: ``train_step.hlo.txt.gz``, the optimised HLO of one training step
    (fusion and custom-call names, which the GPU kernels of the trace are named after);
    ``cost.json``, XLA's count of the step's floating-point operations and bytes accessed with the
    measured seconds per step; ``trace.json.gz``, a Perfetto/Chrome trace of one more epoch
    (``jax.profiler``), every GPU kernel with its duration.
    """
    import gzip
    import shutil

    jax = runtime.import_quietly("jax")
    folder.mkdir(parents=True, exist_ok=True)
    state = model._get_jax_state(  # the trainer's state, as fit() passes it to the step
        trainable_variables=True,
        non_trainable_variables=True,
        optimizer_variables=True,
        metrics_variables=True,
        purge_model_variables=False,
    )
    compiled = jax.jit(model.train_step).lower(state, batches[0]).compile()
    with gzip.open(folder / "train_step.hlo.txt.gz", "wt") as handle:
        handle.write(compiled.as_text())
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    (folder / "cost.json").write_text(
        json.dumps(
            {
                "flops_per_step": float(cost.get("flops", 0.0)),
                "bytes_accessed_per_step": float(cost.get("bytes accessed", 0.0)),
                "measured_seconds_per_step": step_seconds,
                "batch": len(batches[0][1]),
            },
            indent=2,
        )
    )
    raw = folder / "raw-trace"
    jax.profiler.start_trace(str(raw), create_perfetto_trace=True)
    model.fit(batches, epochs=1, verbose=0)
    jax.profiler.stop_trace()
    traces = sorted(raw.rglob("*.trace.json.gz")) + sorted(raw.rglob("perfetto_trace.json.gz"))
    if traces:
        shutil.copy(traces[-1], folder / "trace.json.gz")
    shutil.rmtree(raw, ignore_errors=True)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help="LEVELS:WIDTH:BATCH, e.g. 4,6,3,2:64:256 (default: the full profile's network)",
    )
    parser.add_argument("--steps", type=int, default=60, help="steps per measured epoch")
    parser.add_argument("--mix", default=None, help="mixing mode (default: the profile's)")
    parser.add_argument("--distribute", default="none", choices=training.DISTRIBUTE_CHOICES)
    parser.add_argument("--profile", default="full", choices=["smoke", "full", "fast"])
    parser.add_argument("--steps-per-execution", type=int, default=None)
    parser.add_argument(
        "--profile-dir",
        type=Path,
        default=None,
        help="JAX: trace a steady epoch of the first configuration and write its HLO and cost",
    )
    args = parser.parse_args(argv)
    print(runtime.describe(), flush=True)
    defaults = training.PROFILE_DEFAULTS[args.profile]
    configs = args.configs or [
        f"{','.join(map(str, defaults['levels']))}:{defaults['width']}:{defaults['batch_size']}"
    ]
    results = []
    for number, text in enumerate(configs):
        levels_text, width, batch = text.split(":")
        row = measure(
            tuple(int(v) for v in levels_text.split(",")),
            int(width),
            int(batch),
            steps=args.steps,
            mix=args.mix or defaults["mix"],
            distribute=args.distribute,
            profile=args.profile,
            steps_per_execution=args.steps_per_execution,
            profile_dir=args.profile_dir if number == 0 else None,
        )
        results.append(row)
        mfu = "n/a" if row["mfu"] is None else f"{row['mfu']:.1%}"
        peak = "" if row["peak_flops"] is None else f" of {row['peak_flops'] / 1e12:.0f} TFLOP/s"
        print(
            f"levels {levels_text:<9} width {int(width):>3}  batch {int(batch):>4} × "
            f"{row['replicas']}  {row['images_per_second']:>9,.0f} img/s  "
            f"MFU {mfu}{peak}  first epoch +{row['first_epoch_extra_seconds']:.1f} s  "
            f"{row['forward_gflop_per_image']:.3f} GFLOP  {row['parameters']:,} params",
            flush=True,
        )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
