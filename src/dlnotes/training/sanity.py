"""Two checks before a long run: the untrained model's loss, and overfitting one batch."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from dlnotes.runtime import import_quietly
from dlnotes.theory import softmax

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")  # quietly: the first import of TensorFlow logs to stderr


@dataclass(frozen=True)
class SanityReport:
    """Initial loss and accuracy against what an untrained classifier should give."""

    initial_loss: float
    expected_loss: float
    initial_accuracy: float
    expected_accuracy: float

    @property
    def ok(self) -> bool:
        """Loss within 20 % of ln(C); accuracy at most 3× chance."""
        return (
            abs(self.initial_loss - self.expected_loss) < 0.2 * self.expected_loss
            and self.initial_accuracy <= 3 * self.expected_accuracy + 1e-9
        )


def initial_sanity(
    model: keras.Model,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    *,
    batch_size: int = 256,
) -> SanityReport:
    """Loss and accuracy of an untrained model: the loss should be ≈ ln(C), the accuracy ≈ 1/C.

    The logits come from forward passes in **training mode**, as in the first steps of training:
    batch normalisation then normalises with each batch's statistics. In inference mode an
    untrained network would use its initial moving statistics (mean 0, variance 1), which do not
    normalise anything, so the activations and the logits would grow layer after layer and the
    loss would say nothing about the model training starts from. The passes go through
    ``stateless_call``, so nothing in the model changes (no moving statistics are updated).

    Args:
        model: An untrained model producing logits.
        images: Inputs.
        labels: Integer labels.
        num_classes: Number of classes C.
        batch_size: Images per forward pass (batch statistics need a few dozen).

    Returns:
        The report.

    Raises:
        ValueError: If images and labels differ in length or a label is outside [0, C).
    """
    labels = np.asarray(labels, dtype=np.int64)
    if len(images) != len(labels) or len(labels) == 0:
        raise ValueError(
            f"need as many labels as images (at least one), got {len(labels)} and {len(images)}"
        )
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(
            f"labels must be in [0, {num_classes}), got [{labels.min()}, {labels.max()}]"
        )
    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    losses, correct = [], 0
    for start in range(0, len(images), batch_size):
        logits, _ = model.stateless_call(
            trainable, non_trainable, images[start : start + batch_size], training=True
        )
        logits = keras.ops.convert_to_numpy(logits).astype(np.float64)
        log_probabilities = softmax.log_softmax(logits)
        batch_labels = labels[start : start + batch_size]
        losses.append(-log_probabilities[np.arange(len(batch_labels)), batch_labels])
        correct += int(np.sum(logits.argmax(axis=1) == batch_labels))
    return SanityReport(
        initial_loss=float(np.concatenate(losses).mean()),
        expected_loss=math.log(num_classes),
        initial_accuracy=correct / len(labels),
        expected_accuracy=1.0 / num_classes,
    )


class _StopWhenMemorised(keras.callbacks.Callback):  # type: ignore[misc]
    """Stop training once the accuracy on the batch reaches 100 %."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        if logs is not None and logs.get("accuracy", 0.0) >= 1.0:
            self.model.stop_training = True


def overfit_one_batch(
    model: keras.Model, images: np.ndarray, labels: np.ndarray, *, steps: int = 60
) -> float:
    """Train on a single batch for at most ``steps`` steps and return its final training accuracy.

    Training stops as soon as every image of the batch is classified correctly. A model that
    cannot memorise one batch has a bug (wrong labels, a broken loss, a frozen layer).

    Args:
        model: A compiled model with an ``accuracy`` metric.
        images: The batch's inputs.
        labels: Its labels.
        steps: The most optimiser steps to take (≥ 1).

    Returns:
        The accuracy on the batch at the last step, in training mode.

    Raises:
        ValueError: If ``steps`` is below 1.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    history = model.fit(
        images,
        labels,
        batch_size=len(images),
        epochs=steps,
        verbose=0,
        shuffle=False,
        callbacks=[_StopWhenMemorised()],
    )
    return float(history.history["accuracy"][-1])
