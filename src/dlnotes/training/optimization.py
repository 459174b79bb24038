"""Precision, learning-rate schedule, optimiser, loss and metrics: compiling a classifier.

Everything is backend-agnostic Keras 3.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes.runtime import import_quietly

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")  # quietly: the first import of TensorFlow logs to stderr


def precision_policy(compute_capability: tuple[int, int] | None) -> str:
    """Pick the Keras dtype policy for an accelerator.

    * bfloat16 on NVIDIA GPUs of compute capability 8.0 or newer (A100, L4, H100) — same range as
      float32, no loss scaling needed;
    * float16 (with loss scaling) on 7.x cards such as the T4 of free Colab, which have float16
      but no bfloat16 tensor cores;
    * float32 on CPUs and older GPUs.

    Args:
        compute_capability: ``(major, minor)`` of the GPU, or None for a CPU.

    Returns:
        ``"mixed_bfloat16"``, ``"mixed_float16"`` or ``"float32"``.
    """
    if compute_capability is None:
        return "float32"
    major = compute_capability[0]
    if major >= 8:
        return "mixed_bfloat16"
    if major == 7:
        return "mixed_float16"
    return "float32"


# Dense tensor-core peaks from the vendors' datasheets, in FLOP/s: (16-bit, 32-bit/TF32).
PEAK_FLOPS = {
    "H100": (989e12, 494.5e12),
    "H200": (989e12, 494.5e12),
    "A100": (312e12, 156e12),
    "L4": (121e12, 60e12),
    "T4": (65e12, 8.1e12),
}


def peak_flops(device: str, precision: str) -> float | None:
    """Datasheet peak of an NVIDIA GPU for a precision, to compute model-FLOP utilisation.

    Args:
        device: Device description containing the model name, e.g. ``"NVIDIA H100 80GB HBM3"``.
        precision: A dtype policy name; ``"mixed_*"`` counts as 16-bit, anything else as 32-bit
            (TF32 tensor cores on Ampere and newer).

    Returns:
        FLOP/s, or None for an unknown device (e.g. a CPU).
    """
    for name, (half, single) in PEAK_FLOPS.items():
        if name in device:
            return half if precision.startswith("mixed") else single
    return None


def learning_rate_schedule(
    *,
    peak: float,
    steps_per_epoch: int,
    epochs: int,
    warmup_epochs: float = 5,
    initial_scale: float = 0.01,
    final_scale: float = 0.01,
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up from ``initial_scale·peak`` to ``peak``, cosine decay to ``final_scale·peak``.

    Keras' ``CosineDecay`` with its ``warmup_target`` does exactly this. The defaults are the source
    notes': peak 1e-3, start and end at 1 % of the peak, 5 warm-up epochs.

    Args:
        peak: Largest learning rate (> 0).
        steps_per_epoch: Optimiser steps per epoch (≥ 1).
        epochs: Total epochs, warm-up included (≥ 1).
        warmup_epochs: Epochs of linear warm-up (0 ≤ warmup_epochs < epochs).
        initial_scale: Learning rate at step 0, as a fraction of the peak.
        final_scale: Learning rate at the last step, as a fraction of the peak.

    Returns:
        The schedule (a function of the step).

    Raises:
        ValueError: For out-of-range arguments.
    """
    if not peak > 0:
        raise ValueError(f"peak must be positive, got {peak!r}")
    if steps_per_epoch < 1 or epochs < 1:
        raise ValueError(
            f"steps_per_epoch and epochs must be at least 1, got {steps_per_epoch}, {epochs}"
        )
    if not 0 <= warmup_epochs < epochs:
        raise ValueError(f"warmup_epochs must be in [0, {epochs}), got {warmup_epochs!r}")
    for name, scale in (("initial_scale", initial_scale), ("final_scale", final_scale)):
        if not 0 <= scale <= 1:
            raise ValueError(f"{name} must be in [0, 1], got {scale!r}")
    warmup_steps = round(warmup_epochs * steps_per_epoch)
    total_steps = epochs * steps_per_epoch
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak * initial_scale if warmup_steps else peak,
        decay_steps=max(total_steps - warmup_steps, 1),
        alpha=final_scale,
        warmup_target=peak if warmup_steps else None,
        warmup_steps=warmup_steps,
    )


def make_optimizer(
    name: str,
    learning_rate: Any,
    *,
    weight_decay: float | None = None,
    momentum: float = 0.9,
) -> keras.optimizers.Optimizer:
    """Build ``"sgd"`` (Nesterov momentum), ``"adam"`` or ``"adamw"``, with decoupled weight decay.

    Weight decay is not applied to batch-normalisation parameters and biases.

    Args:
        name: Optimiser name.
        learning_rate: A float or a schedule.
        weight_decay: Decoupled weight decay, or None.
        momentum: Momentum of SGD.

    Returns:
        The optimiser.

    Raises:
        ValueError: For an unknown name or a negative weight decay.
    """
    if weight_decay is not None and weight_decay < 0:
        raise ValueError(f"weight_decay must be non-negative, got {weight_decay!r}")
    if name == "sgd":
        optimizer = keras.optimizers.SGD(
            learning_rate, momentum=momentum, nesterov=True, weight_decay=weight_decay
        )
    elif name == "adam":
        optimizer = keras.optimizers.Adam(learning_rate, weight_decay=weight_decay)
    elif name == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=weight_decay or 0.0)
    else:
        raise ValueError(f"optimizer must be 'sgd', 'adam' or 'adamw', got {name!r}")
    if weight_decay:
        optimizer.exclude_from_weight_decay(var_names=["gamma", "beta", "bias"])
    return optimizer


def compile_classifier(
    model: keras.Model,
    optimizer: keras.optimizers.Optimizer,
    *,
    label_smoothing: float = 0.0,
    policy: str = "float32",
    jit_compile: bool | str = "auto",
    steps_per_execution: int = 1,
    soft_targets: bool = False,
) -> keras.Model:
    """Compile a logits model with top-1 and top-5 accuracy.

    Label smoothing needs one-hot targets in Keras' loss, so with smoothing — or with
    ``soft_targets``, e.g. the blended targets of MixUp/CutMix — the targets are expected as
    probability rows (see :func:`one_hot`); otherwise, sparse integer labels are used. The loss is
    averaged with the sample weights (``"mean_with_sample_weight"``), so zero-weight padding
    leaves both the loss and the metrics of an evaluation unchanged.

    Args:
        model: Model producing logits.
        optimizer: The optimiser; wrapped in a ``LossScaleOptimizer`` for ``mixed_float16``.
        label_smoothing: In [0, 1).
        policy: The dtype policy the model was built with.
        jit_compile: Passed to ``compile`` (XLA).
        steps_per_execution: Training steps per compiled call (fewer host round trips).
        soft_targets: Expect probability rows as targets even without label smoothing.

    Returns:
        The compiled model.

    Raises:
        ValueError: For label smoothing outside [0, 1).
    """
    if not 0 <= label_smoothing < 1:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
    if policy == "mixed_float16":
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    loss, metrics = _loss_and_metrics(label_smoothing, soft=bool(label_smoothing or soft_targets))
    model.compile(
        optimizer=optimizer,
        loss=loss,
        weighted_metrics=metrics,
        jit_compile=jit_compile,
        steps_per_execution=steps_per_execution,
    )
    return model


def _loss_and_metrics(
    label_smoothing: float, *, soft: bool
) -> tuple[keras.losses.Loss, list[keras.metrics.Metric]]:
    """The cross-entropy and the top-1/top-5 accuracies, for probability rows (``soft``) or
    integer labels, averaged with the sample weights."""
    if soft:
        loss: keras.losses.Loss = keras.losses.CategoricalCrossentropy(
            from_logits=True,
            label_smoothing=label_smoothing,
            reduction="mean_with_sample_weight",
        )
        return loss, [
            keras.metrics.CategoricalAccuracy(name="accuracy"),
            keras.metrics.TopKCategoricalAccuracy(k=5, name="top5"),
        ]
    loss = keras.losses.SparseCategoricalCrossentropy(
        from_logits=True, reduction="mean_with_sample_weight"
    )
    return loss, [
        keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
        keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"),
    ]


def one_hot(labels: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Integer labels → float32 one-hot rows."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}), got range [{labels.min()}, {labels.max()}]"
        )
    rows: np.ndarray = np.eye(num_classes, dtype=np.float32)[labels]
    return rows
