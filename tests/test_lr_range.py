"""The learning-rate range test (dlnotes.training.lr_range) on a small real regression."""

from __future__ import annotations

import numpy as np
import pytest

from dlnotes import runtime

keras = runtime.import_quietly("keras")

from dlnotes import training  # noqa: E402


def _regression(seed: int = 0) -> tuple[keras.Model, list[tuple[np.ndarray, np.ndarray]]]:
    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(32 * 20, 8)).astype("float32")
    y = x @ rng.normal(size=(8, 1)).astype("float32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(keras.optimizers.SGD(1e-3), "mse")
    return model, [(x[i : i + 32], y[i : i + 32]) for i in range(0, len(x), 32)]


def test_the_loss_falls_then_rises_and_the_test_stops_at_divergence() -> None:
    model, batches = _regression()
    result = training.learning_rate_range_test(model, batches, start=1e-4, stop=1e3, steps=80)
    assert result.diverged and len(result.losses) < 80  # stopped early, loss exploding
    # Plain SGD on this quadratic is unstable above 2/λmax = 1 (λ ≈ 2 for the MSE of unit-variance
    # inputs); the lowest loss comes a little later, before the oscillation has grown: the reason
    # to choose a peak well below the minimum.
    assert 0.3 < result.minimum < 10
    rise = result.rise()
    assert rise is not None and result.minimum < rise < 10
    assert result.smoothed.min() < 0.2 * result.baseline
    np.testing.assert_allclose(
        result.learning_rates[:3], [1e-4, 1e-4 * 1e7 ** (1 / 79), 1e-4 * 1e7 ** (2 / 79)]
    )


def test_a_gentle_range_does_not_diverge_and_reuses_the_batches() -> None:
    model, batches = _regression(1)
    result = training.learning_rate_range_test(model, batches[:3], start=1e-4, stop=1e-2, steps=10)
    assert not result.diverged and len(result.losses) == 10  # 3 batches, cycled
    assert result.rise() is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start": 1.0, "stop": 0.1}, "need 0 < start < stop"),
        ({"steps": 2}, "steps must be at least 3, got 2"),
        ({"beta": 1.0}, r"beta must be in \[0, 1\), got 1.0"),
        ({"divergence_factor": 1.0}, "divergence_factor must be above 1, got 1.0"),
    ],
)
def test_bad_arguments(kwargs, message) -> None:
    model, batches = _regression()
    with pytest.raises(ValueError, match=message):
        training.learning_rate_range_test(model, batches, **kwargs)


def test_a_schedule_is_refused() -> None:
    model, batches = _regression()
    schedule = keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)
    model.compile(keras.optimizers.SGD(schedule), "mse")
    with pytest.raises(ValueError, match="learning rate is a number"):
        training.learning_rate_range_test(model, batches)
