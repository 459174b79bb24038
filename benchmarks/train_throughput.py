"""Training throughput of the Tiny ImageNet ResNet: precisions and batch sizes side by side.

Usage:
    KERAS_BACKEND=jax python benchmarks/train_throughput.py [--batch-sizes 128,256,512]
        [--precisions mixed_bfloat16,float32] [--steps 50] [--steps-per-execution 1]
        [--levels 4,6,3,2] [--width 64]

Trains the full model (uint8 input, in-model augmentation and normalisation, SGD, 200 classes)
on synthetic in-memory images for two passes of ``--steps`` steps; the rate of the second pass
(after XLA compilation) is reported in images per second, with the model-FLOP utilisation
(3 × forward FLOPs per image × rate / datasheet peak of the card). Runs on whatever backend and
device it finds. The last line is one JSON list of the measurements.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from dlnotes import runtime


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-sizes", default="128,256,512")
    parser.add_argument("--precisions", default="mixed_bfloat16,float32")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--steps-per-execution", default="1")
    parser.add_argument("--levels", default="4,6,3,2")
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument(
        "--on-device",
        default="0",
        help="comma list of 0/1: 1 puts the uint8 images in accelerator memory first",
    )
    parser.add_argument(
        "--no-augment", action="store_true", help="leave out the in-model augmentation"
    )
    args = parser.parse_args(argv)
    print(runtime.describe(), flush=True)
    keras = runtime.import_quietly("keras")
    from dlnotes import models, training

    levels = tuple(int(v) for v in args.levels.split(","))
    device = runtime.device_description()
    flops = models.forward_flops(models.build_resnet(args.classes, levels, args.width))
    print(f"forward pass: {flops / 1e9:.3f} GFLOP per image; {device}", flush=True)
    rng = np.random.default_rng(0)
    results = []
    for precision in args.precisions.split(","):
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            for spe, on_device in (
                (int(s), bool(int(d)))
                for s in args.steps_per_execution.split(",")
                for d in args.on_device.split(",")
            ):
                keras.utils.clear_session()
                images = rng.integers(0, 256, size=(batch * args.steps, 64, 64, 3), dtype=np.uint8)
                labels = rng.integers(0, args.classes, size=batch * args.steps)
                if on_device:
                    images = keras.ops.convert_to_tensor(images)
                    labels = keras.ops.convert_to_tensor(labels)
                backbone = models.build_resnet(args.classes, levels, args.width, dtype=precision)
                model = models.with_preprocessing(
                    backbone, [120.0] * 3, [64.0] * 3, augment=not args.no_augment
                )
                optimizer = training.make_optimizer("sgd", 0.1, weight_decay=5e-5)
                training.compile_classifier(
                    model, optimizer, policy=precision, jit_compile=True, steps_per_execution=spe
                )
                meter = training.Throughput(batch)
                model.fit(images, labels, batch_size=batch, epochs=2, verbose=0, callbacks=[meter])
                rate = meter.rates[-1]
                peak = training.peak_flops(device, precision)
                mfu = 3 * flops * rate / peak if peak else None
                row = {
                    "precision": precision,
                    "batch_size": batch,
                    "steps_per_execution": spe,
                    "images_per_second": round(rate, 1),
                    "mfu": None if mfu is None else round(mfu, 4),
                    "backend": runtime.keras_backend(),
                    "device": device,
                }
                results.append(row)
                mfu_text = "n/a" if mfu is None else f"{mfu:.1%}"
                print(
                    f"{precision:<16} batch {batch:>4}  steps/exec {spe:>2}  "
                    f"{'on device' if on_device else 'from host'}  "
                    f"{rate:>10,.0f} images/s  MFU {mfu_text}",
                    flush=True,
                )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
