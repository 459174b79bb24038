"""Train the Tiny ImageNet ResNet from the command line, resumably.

Usage:
    python -m dlnotes.train --data-dir ROOT --out-dir OUT [--epochs N] [--batch-size B]
        [--levels 4,6,3,2] [--width 64] [--profile smoke|full]

Re-running the same command after an interruption — even ``kill -9`` in the middle of an epoch —
resumes from ``OUT/backup`` and finishes the requested number of epochs; ``OUT/history.csv`` has
each epoch exactly once. At the end ``OUT/metrics.json`` holds ``val_top1``, ``val_top5``,
``epochs_completed``, ``train_images_per_second``, ``backend``, ``device`` and ``profile``.
Works on every Keras backend (``KERAS_BACKEND=jax`` on a GPU machine without TensorFlow).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from dlnotes import data, paths, profiles, runtime

keras = runtime.import_quietly("keras")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run; stored in ``OUT/config.json`` and checked on resume."""

    profile: str
    epochs: int
    batch_size: int
    levels: tuple[int, ...]
    width: int
    optimizer: str
    learning_rate: float
    warmup_epochs: float
    weight_decay: float
    label_smoothing: float
    augment_padding: int
    max_train_per_class: int | None
    seed: int


PROFILE_DEFAULTS = {
    # Runs in about a minute on 2 CPU cores on the 10-class mini archive.
    "smoke": {
        "epochs": 12,
        "batch_size": 32,
        "levels": (1, 1, 1),
        "width": 16,
        "optimizer": "sgd",
        "learning_rate": 0.05,
        "warmup_epochs": 1.0,
        "weight_decay": 5e-5,
        "label_smoothing": 0.1,
        "augment_padding": 4,
        "max_train_per_class": None,
    },
    # The default network on the full Tiny ImageNet on one GPU.
    "full": {
        "epochs": 40,
        "batch_size": 256,
        "levels": (4, 6, 3, 2),
        "width": 64,
        "optimizer": "sgd",
        "learning_rate": 0.4,
        "warmup_epochs": 5.0,
        "weight_decay": 5e-5,
        "label_smoothing": 0.1,
        "augment_padding": 4,
        "max_train_per_class": None,
    },
}


def _levels(text: str) -> tuple[int, ...]:
    try:
        levels = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"levels must be comma-separated integers, got {text!r}"
        ) from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"levels must be positive integers, got {text!r}")
    return levels


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m dlnotes.train", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="Tiny ImageNet root (default: DLNOTES_DATA_DIR or the cache)",
    )
    parser.add_argument(
        "--out-dir", type=Path, required=True, help="run folder; re-use it to resume"
    )
    parser.add_argument(
        "--profile",
        choices=["smoke", "full", "auto"],
        default=None,
        help="default: DLNOTES_PROFILE or auto",
    )
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int, help="per device")
    parser.add_argument("--levels", type=_levels, help="blocks per level, e.g. 4,6,3,2")
    parser.add_argument("--width", type=int)
    parser.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    parser.add_argument("--learning-rate", type=float, help="peak learning rate")
    parser.add_argument("--warmup-epochs", type=float)
    parser.add_argument("--weight-decay", type=float)
    parser.add_argument("--label-smoothing", type=float)
    parser.add_argument(
        "--augment-padding", type=int, help="largest random shift in pixels (0: flips only)"
    )
    parser.add_argument(
        "--max-train-per-class", type=int, help="use a subset of the training images"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--steps-per-execution",
        type=int,
        default=None,
        help="training steps per compiled call (default: 32 on a GPU, 1 on a CPU)",
    )
    parser.add_argument(
        "--distribute",
        choices=["none", "mirrored"],
        default="none",
        help="mirrored: tf.distribute.MirroredStrategy over all local GPUs (TensorFlow backend)",
    )
    parser.add_argument(
        "--logical-cpus",
        type=int,
        default=0,
        help="split the CPU into N logical devices (tests the multi-device path without GPUs)",
    )
    return parser.parse_args(argv)


def make_config(args: argparse.Namespace) -> TrainConfig:
    """Merge the command line over the defaults of the resolved profile."""
    profile = profiles.get_profile(args.profile)
    values = dict(PROFILE_DEFAULTS[profile.name])
    for key in values:
        given = getattr(args, key)
        if given is not None:
            values[key] = tuple(given) if key == "levels" else given
    return TrainConfig(profile=profile.name, seed=args.seed, **values)


def _check_resume(out_dir: Path, config: TrainConfig) -> None:
    saved = out_dir / "config.json"
    current = json.loads(json.dumps(asdict(config)))
    if saved.is_file():
        previous = json.loads(saved.read_text())
        if previous != current:
            changed = sorted(k for k in current if previous.get(k) != current[k])
            raise ValueError(
                f"{out_dir} holds a run with different settings ({', '.join(changed)}); "
                "use another --out-dir or the same settings to resume"
            )
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_json(saved, current)


def _write_json(path: Path, value: dict) -> None:
    partial = path.with_suffix(path.suffix + ".partial")
    partial.write_text(json.dumps(value, indent=2) + "\n")
    os.replace(partial, path)


def _subset(split: data.SplitFiles, per_class: int | None) -> tuple[list[str], np.ndarray]:
    if per_class is None:
        return split.paths, split.labels
    keep = np.concatenate(
        [np.flatnonzero(split.labels == c)[:per_class] for c in range(len(split.class_ids))]
    )
    keep.sort()
    return [split.paths[i] for i in keep], split.labels[keep]


def run(args: argparse.Namespace) -> dict:
    """Train according to ``args`` and return the metrics written to ``metrics.json``."""
    if args.logical_cpus:
        tf = runtime.import_quietly("tensorflow")
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus
        )
    print(runtime.describe(), flush=True)
    from dlnotes import models, training

    config = make_config(args)
    out_dir = args.out_dir
    _check_resume(out_dir, config)
    root = args.data_dir if args.data_dir is not None else paths.data_dir()
    # The profile's part of the data (smoke: at most 10 classes, 100 training images per class).
    subset = data.profile_subset(root, config.profile)
    train_split = data.read_split(root, "train", subset=subset)
    val_split = data.read_split(root, "val", subset=subset)
    num_classes = len(train_split.class_ids)
    train_paths, train_labels = _subset(train_split, config.max_train_per_class)
    print(
        f"decoding {len(train_paths)} training and {len(val_split.paths)} validation images",
        flush=True,
    )
    x_train = data.load_images(train_paths, progress=sys.stderr.isatty())
    x_val = data.load_images(val_split.paths, progress=sys.stderr.isatty())
    mean = x_train.reshape(-1, 3).mean(axis=0)
    std = x_train.reshape(-1, 3).std(axis=0)
    _write_json(
        out_dir / "dataset.json",
        {"mean": mean.tolist(), "std": std.tolist(), "class_ids": train_split.class_ids},
    )

    keras.utils.set_random_seed(config.seed)
    capability = training.gpu_compute_capability()
    policy = training.precision_policy(capability)
    strategy = None
    replicas = 1
    if args.distribute == "mirrored":
        if runtime.keras_backend() != "tensorflow":
            raise ValueError("--distribute mirrored needs the TensorFlow backend")
        tf = runtime.import_quietly("tensorflow")
        strategy = tf.distribute.MirroredStrategy()
        replicas = strategy.num_replicas_in_sync
    global_batch = config.batch_size * replicas
    steps_per_execution = args.steps_per_execution or (32 if capability is not None else 1)
    if global_batch > len(x_train):
        raise ValueError(
            f"batch of {global_batch} is larger than the {len(x_train)} training images"
        )
    steps_per_epoch = -(-len(x_train) // global_batch)  # Keras keeps the last, partial batch

    def build() -> keras.Model:
        backbone = models.build_resnet(num_classes, config.levels, config.width, dtype=policy)
        model = models.with_preprocessing(
            backbone,
            mean.tolist(),
            std.tolist(),
            augment=True,
            padding=config.augment_padding,
            seed=config.seed,
        )
        schedule = training.learning_rate_schedule(
            peak=config.learning_rate,
            steps_per_epoch=steps_per_epoch,
            epochs=config.epochs,
            warmup_epochs=min(config.warmup_epochs, config.epochs - 1),
        )
        optimizer = training.make_optimizer(
            config.optimizer, schedule, weight_decay=config.weight_decay or None
        )
        return training.compile_classifier(
            model,
            optimizer,
            label_smoothing=config.label_smoothing,
            policy=policy,
            jit_compile=True if capability is not None else "auto",
            steps_per_execution=steps_per_execution,
        )

    if strategy is not None:
        with strategy.scope():
            model = build()
    else:
        model = build()
    y_train, y_val = train_labels, val_split.labels
    if config.label_smoothing:
        y_train, y_val = (
            training.one_hot(y_train, num_classes),
            training.one_hot(y_val, num_classes),
        )

    first_epoch = training.resumed_epoch(out_dir / "backup")
    training.truncate_log(out_dir / "history.csv", first_epoch)
    if first_epoch:
        print(f"resuming after epoch {first_epoch} of {config.epochs}", flush=True)
    print(
        f"{num_classes} classes, {len(x_train)} training images, "
        f"batch {global_batch} on {replicas} replica(s), {steps_per_epoch} steps per epoch, "
        f"precision {policy}, "
        f"{model.count_params():,} parameters",
        flush=True,
    )
    throughput = training.Throughput(global_batch, images_per_epoch=len(x_train))
    model.fit(
        x_train,
        y_train,
        batch_size=global_batch,
        epochs=config.epochs,
        shuffle=True,
        validation_data=(x_val, y_val),
        callbacks=[*training.training_callbacks(out_dir), throughput],
        verbose=1 if sys.stdout.isatty() else 2,
    )
    results = model.evaluate(x_val, y_val, batch_size=global_batch, verbose=0, return_dict=True)
    history = training.read_log(out_dir / "history.csv")
    rate = throughput.steady_rate
    previous = out_dir / "metrics.json"
    if math.isnan(rate):  # nothing left to train: keep the rate measured by the earlier run
        rate = (
            json.loads(previous.read_text()).get("train_images_per_second")
            if previous.is_file()
            else None
        )
    metrics = {
        "val_top1": float(results["accuracy"]),
        "val_top5": float(results["top5"]),
        "best_val_top1": max(history.get("val_accuracy", [results["accuracy"]])),
        "epochs_completed": len(history.get("epoch", [])),
        "train_images_per_second": rate,
        "backend": runtime.keras_backend(),
        "device": runtime.device_description(),
        "profile": config.profile,
        "precision": policy,
        "num_classes": num_classes,
    }
    _write_json(out_dir / "metrics.json", metrics)
    print(json.dumps(metrics), flush=True)
    return metrics


def load_trained_model(out_dir: str | os.PathLike[str], *, weights: str = "best") -> keras.Model:
    """Rebuild the model of a finished run and load its weights, for inference.

    Args:
        out_dir: The run folder (holds ``config.json`` and ``dataset.json``).
        weights: ``"best"`` (highest validation accuracy) or ``"last"`` (the latest backup).

    Returns:
        The model: uint8 images in, logits out (augmentation is inactive at inference).

    Raises:
        FileNotFoundError: If the folder is not a finished run.
        ValueError: For an unknown ``weights`` choice.
    """
    from dlnotes import models

    out_dir = Path(out_dir)
    files = {"best": out_dir / "best.weights.h5", "last": out_dir / "backup" / "latest.weights.h5"}
    if weights not in files:
        raise ValueError(f"weights must be 'best' or 'last', got {weights!r}")
    for needed in (out_dir / "config.json", out_dir / "dataset.json", files[weights]):
        if not needed.is_file():
            raise FileNotFoundError(f"not a finished training run: {needed} is missing")
    config = json.loads((out_dir / "config.json").read_text())
    dataset = json.loads((out_dir / "dataset.json").read_text())
    backbone = models.build_resnet(
        len(dataset["class_ids"]), tuple(config["levels"]), config["width"]
    )
    model = models.with_preprocessing(
        backbone, dataset["mean"], dataset["std"], padding=config["augment_padding"]
    )
    with warnings.catch_warnings():
        # The files also hold the optimizer's state, which an inference model does not need.
        warnings.filterwarnings("ignore", message=".*optimizer.*")
        model.load_weights(files[weights])
    return model


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
