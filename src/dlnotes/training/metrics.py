"""What a run records in ``metrics.json``: the accuracy, where the time went, the versions, the
device and the data's size (:func:`run_metrics`)."""

from __future__ import annotations

import datetime
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dlnotes import runtime
from dlnotes.training import callbacks, run_folder
from dlnotes.training.config import TrainConfig
from dlnotes.training.datasets import Dataset


@dataclass(frozen=True)
class Plan:
    """How a run is spread and stepped, once the devices are known.

    Attributes:
        replicas: Devices the global batch is split over.
        processes: Processes of the run.
        global_batch: Images per step over all devices.
        steps_per_epoch: Optimiser steps per epoch.
        steps_per_execution: Training steps per call of the compiled function.
        first_epoch: The epoch training starts at (after the resumed ones).
        policy: Keras dtype policy.
        compiled: XLA everywhere (on a GPU), else Keras' choice.
    """

    replicas: int
    processes: int
    global_batch: int
    steps_per_epoch: int
    steps_per_execution: int
    first_epoch: int
    policy: str
    compiled: bool


@dataclass(frozen=True)
class Fitted:
    """What the fit and the evaluation of a run measured.

    Attributes:
        plan: How the run was spread and stepped.
        parameters: Parameters of the network.
        build_seconds: Building and compiling the models.
        fit_seconds: Keras' ``fit``.
        evaluate_seconds: The final evaluation.
        throughput: The throughput meter of the fit.
        single: The single-view evaluation's metrics.
        averaged: The flip-averaged evaluation's, or None.
    """

    plan: Plan
    parameters: int
    build_seconds: float
    fit_seconds: float
    evaluate_seconds: float
    throughput: callbacks.Throughput
    single: dict[str, float]
    averaged: dict[str, float] | None


def run_metrics(
    config: TrainConfig,
    dataset: Dataset,
    fitted: Fitted,
    out_dir: Path,
    *,
    started: float,
    compilation_cache: Path | None,
    distribute: str,
) -> dict[str, Any]:
    """What ``metrics.json`` records: the accuracy, where the time went, the machine, the data.

    A resumed run with nothing left to train keeps the rate and epoch times measured before.

    Args:
        config: The run's settings.
        dataset: The decoded data.
        fitted: What the fit and the evaluation measured.
        out_dir: The run folder (its log and earlier metrics are read).
        started: ``time.perf_counter()`` value the wall time counts from.
        compilation_cache: Where compiled programs are cached, or None.
        distribute: The ``--distribute`` choice.

    Returns:
        The metrics.
    """
    history = callbacks.read_log(out_dir / "history.csv")
    previous = run_folder.previous_metrics(out_dir)
    rate: float | None = fitted.throughput.steady_rate
    if rate is None or math.isnan(rate):
        rate = previous.get("train_images_per_second")
    epochs = fitted.throughput.epoch_seconds
    plan = fitted.plan
    return {
        **_accuracies(fitted.single, fitted.averaged, history),
        "train_images_per_second": rate,
        "wall_seconds": time.perf_counter() - started,
        "decode_seconds": dataset.decode_seconds,
        "first_epoch_seconds": epochs[0] if epochs else previous.get("first_epoch_seconds"),
        "median_epoch_seconds": (
            float(np.median(epochs[1:]))
            if len(epochs) > 1
            else previous.get("median_epoch_seconds")
        ),
        "build_seconds": fitted.build_seconds,
        "fit_seconds": fitted.fit_seconds,
        "evaluate_seconds": fitted.evaluate_seconds,
        "decode_cache": dataset.decode_cache,
        "compilation_cache": None if compilation_cache is None else str(compilation_cache),
        **_versions(),
        "device": runtime.device_description(),
        "distribute": distribute,
        "replicas": plan.replicas,
        "processes": plan.processes,
        "global_batch_size": plan.global_batch,
        "steps_per_execution": plan.steps_per_execution,
        "profile": config.profile,
        "precision": plan.policy,
        "parameters": fitted.parameters,
        "num_classes": len(dataset.class_ids),
        "train_images": len(dataset.train_images),
        "val_images": len(dataset.val_images),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def _accuracies(
    single: dict[str, float], averaged: dict[str, float] | None, history: dict[str, list[float]]
) -> dict[str, Any]:
    """The final accuracies (flip-averaged when there is one), the best epoch's, the epochs."""
    final = averaged if averaged is not None else single
    return {
        "val_top1": float(final["accuracy"]),
        "val_top5": float(final["top5"]),
        "val_top1_single_view": float(single["accuracy"]),
        "val_top5_single_view": float(single["top5"]),
        "val_top1_flip_averaged": None if averaged is None else float(averaged["accuracy"]),
        "val_top5_flip_averaged": None if averaged is None else float(averaged["top5"]),
        "best_val_top1": max(history.get("val_accuracy", [single["accuracy"]])),
        "epochs_completed": len(history.get("epoch", [])),
    }


def _versions() -> dict[str, str]:
    keras = runtime.import_quietly("keras")
    backend = runtime.keras_backend()
    module = runtime.import_quietly(backend)
    return {
        "keras_version": keras.__version__,
        "backend": backend,
        "backend_version": str(getattr(module, "__version__", "unknown")),
        "python_version": sys.version.split()[0],
    }
