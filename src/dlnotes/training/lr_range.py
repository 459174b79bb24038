"""The learning-rate range test: how high can the learning rate go before training diverges?

Train a fresh copy of the model for a few dozen steps while the learning rate grows geometrically
from tiny to huge, and record the loss of every batch (Smith, 2017). At first the rate is too small
to change anything, then the loss falls, then the steps become too large and it rises again. The
peak of a schedule belongs in the range where the loss falls, safely below the rate where it
starts to rise (:meth:`RangeTest.rise`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from dlnotes.runtime import import_quietly

if TYPE_CHECKING:
    import keras
else:
    keras = import_quietly("keras")


@dataclass(frozen=True)
class RangeTest:
    """The losses of a learning-rate range test.

    Attributes:
        learning_rates: The rate of each step taken.
        losses: The loss of each step's batch.
        smoothed: An exponential moving average of the losses (factor ``beta``, bias-corrected),
            which the noise of single batches would otherwise hide.
        diverged: Whether the test stopped because the smoothed loss exceeded its best value
            by the divergence factor (or became non-finite).
    """

    learning_rates: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray
    diverged: bool

    @property
    def minimum(self) -> float:
        """The learning rate at which the smoothed loss was lowest."""
        return float(self.learning_rates[int(np.nanargmin(self.smoothed))])

    @property
    def baseline(self) -> float:
        """The smoothed loss while the rate is still too small to matter: the median of the first
        tenth of the steps (at least three)."""
        return float(np.median(self.smoothed[: max(3, len(self.smoothed) // 10)]))

    def rise(self, tolerance: float = 0.01) -> float | None:
        """The first learning rate after the minimum at which the smoothed loss exceeds the
        baseline by more than ``tolerance`` (a fraction): where the steps start to overshoot.

        Args:
            tolerance: Relative margin over :attr:`baseline` (> 0).

        Returns:
            The rate, or None when the loss never rose that far within the test.

        Raises:
            ValueError: For a tolerance that is not positive.
        """
        if not tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {tolerance!r}")
        after = np.arange(len(self.smoothed)) > int(np.nanargmin(self.smoothed))
        above = after & ~(self.smoothed <= self.baseline * (1 + tolerance))
        return float(self.learning_rates[int(np.argmax(above))]) if above.any() else None


def _batches(data: Any) -> Any:
    """Yield ``(x, y, sample_weight)`` forever from a sequence of batches, epoch after epoch."""
    while True:
        for index in range(len(data)):
            batch = data[index]
            yield (*batch, None) if len(batch) == 2 else tuple(batch)
        if hasattr(data, "on_epoch_end"):
            data.on_epoch_end()


def learning_rate_range_test(
    model: keras.Model,
    data: Sequence[Any] | Any,
    *,
    start: float = 1e-5,
    stop: float = 10.0,
    steps: int = 100,
    beta: float = 0.9,
    divergence_factor: float = 4.0,
) -> RangeTest:
    """Train ``model`` with a learning rate growing from ``start`` to ``stop``, one step per rate.

    The model must be compiled with an optimiser whose learning rate is a number (not a schedule);
    its weights and optimiser state change, so use a copy made for the test. The batches are
    reused, in order, as often as needed.

    Args:
        model: A freshly built, compiled model.
        data: Batches ``(x, y)`` or ``(x, y, sample_weight)``, indexable with a length, e.g. a
            ``keras.utils.PyDataset``.
        start: First learning rate (> 0).
        stop: Last learning rate (> start).
        steps: Number of steps, one per rate (≥ 3).
        beta: Smoothing factor of the losses' moving average, in [0, 1).
        divergence_factor: Stop once the smoothed loss exceeds its minimum by this factor (> 1).

    Returns:
        The rates tried and the losses recorded.

    Raises:
        ValueError: For out-of-range arguments or a model compiled with a schedule.
    """
    _check_range_test(model, start, stop, steps, beta, divergence_factor)
    optimizer = model.optimizer
    rates = start * (stop / start) ** (np.arange(steps) / (steps - 1))
    losses: list[float] = []
    smoothed: list[float] = []
    average, best, diverged = 0.0, math.inf, False
    batches = _batches(data)
    for step, rate in enumerate(rates):
        optimizer.learning_rate = float(rate)
        x, y, weights = next(batches)
        logs = model.train_on_batch(x, y, sample_weight=weights, return_dict=True)
        loss = float(logs["loss"])
        average = beta * average + (1 - beta) * loss
        value = average / (1 - beta ** (step + 1))
        losses.append(loss)
        smoothed.append(value)
        best = min(best, value)
        if not math.isfinite(value) or value > divergence_factor * best:
            diverged = True
            break
    count = len(losses)
    return RangeTest(
        learning_rates=rates[:count],
        losses=np.asarray(losses),
        smoothed=np.asarray(smoothed),
        diverged=diverged,
    )


def _check_range_test(
    model: keras.Model, start: float, stop: float, steps: int, beta: float, factor: float
) -> None:
    """Refuse out-of-range arguments of :func:`learning_rate_range_test`, or a schedule."""
    if not 0 < start < stop:
        raise ValueError(f"need 0 < start < stop, got start={start!r}, stop={stop!r}")
    if steps < 3:
        raise ValueError(f"steps must be at least 3, got {steps}")
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    if not factor > 1:
        raise ValueError(f"divergence_factor must be above 1, got {factor!r}")
    optimizer = model.optimizer
    if optimizer is None or isinstance(
        optimizer._learning_rate, keras.optimizers.schedules.LearningRateSchedule
    ):
        raise ValueError("compile the model with an optimiser whose learning rate is a number")
