"""Training helpers: precision, schedule, optimiser, logs, sanity checks."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from dlnotes import runtime

runtime.import_quietly("tensorflow")
import keras  # noqa: E402

from dlnotes import models, runtime, training  # noqa: E402


@pytest.mark.parametrize(
    ("capability", "policy"),
    [
        (None, "float32"),
        ((9, 0), "mixed_bfloat16"),
        ((8, 0), "mixed_bfloat16"),
        ((7, 5), "mixed_float16"),
        ((6, 1), "float32"),
    ],
)
def test_precision_policy(capability, policy) -> None:
    assert training.precision_policy(capability) == policy


def test_compute_capability_exactly_when_a_gpu_is_visible() -> None:
    capability = runtime.gpu_compute_capability()
    assert (capability is not None) == runtime.gpu_available()
    if capability is not None:
        assert len(capability) == 2 and capability[0] >= 3


def test_schedule_warms_up_then_decays_to_the_final_scale() -> None:
    schedule = training.learning_rate_schedule(
        peak=1e-3, steps_per_epoch=10, epochs=30, warmup_epochs=5
    )
    values = np.array([float(schedule(step)) for step in range(0, 301)])
    assert values[0] == pytest.approx(1e-5)
    assert values[50] == pytest.approx(1e-3)
    assert np.all(np.diff(values[:51]) > 0)
    assert np.all(np.diff(values[50:]) <= 1e-12)
    assert values[300] == pytest.approx(1e-5, rel=1e-3)
    no_warmup = training.learning_rate_schedule(
        peak=0.1, steps_per_epoch=5, epochs=2, warmup_epochs=0
    )
    assert float(no_warmup(0)) == pytest.approx(0.1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"peak": 0}, "peak must be positive"),
        ({"epochs": 0}, "at least 1"),
        ({"warmup_epochs": 3}, r"warmup_epochs must be in \[0, 3\)"),
        ({"final_scale": 2.0}, r"final_scale must be in \[0, 1\]"),
    ],
)
def test_schedule_rejects_bad_arguments(kwargs, message) -> None:
    arguments = {"peak": 1e-3, "steps_per_epoch": 10, "epochs": 3, "warmup_epochs": 1, **kwargs}
    with pytest.raises(ValueError, match=message):
        training.learning_rate_schedule(**arguments)


def test_optimizers() -> None:
    sgd = training.make_optimizer("sgd", 0.1, weight_decay=1e-4)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.weight_decay == 1e-4
    assert isinstance(training.make_optimizer("adam", 1e-3), keras.optimizers.Adam)
    assert isinstance(
        training.make_optimizer("adamw", 1e-3, weight_decay=0.01), keras.optimizers.AdamW
    )
    with pytest.raises(ValueError, match="'sgd', 'adam' or 'adamw', got 'rmsprop'"):
        training.make_optimizer("rmsprop", 0.1)
    with pytest.raises(ValueError, match="non-negative"):
        training.make_optimizer("sgd", 0.1, weight_decay=-1.0)


def test_weight_decay_spares_batch_norm_and_biases() -> None:
    model = models.build_resnet(3, (1,), 8, input_shape=(8, 8, 3))
    optimizer = training.make_optimizer("sgd", 0.1, weight_decay=0.5)
    variables = model.trainable_variables
    before = {v.path: np.array(v) for v in variables}
    optimizer.apply_gradients([(keras.ops.zeros_like(v), v) for v in variables])
    # With zero gradients, only the decoupled weight decay can move a variable.
    moved = {v.name for v in variables if not np.array_equal(np.array(v), before[v.path])}
    assert "kernel" in moved
    assert not moved & {"gamma", "beta", "bias"}


def test_compile_with_and_without_label_smoothing() -> None:
    model = models.build_resnet(3, (1,), 8, input_shape=(8, 8, 3))
    training.compile_classifier(model, training.make_optimizer("sgd", 0.1), label_smoothing=0.1)
    assert isinstance(model.loss, keras.losses.CategoricalCrossentropy)
    training.compile_classifier(model, training.make_optimizer("sgd", 0.1), policy="mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\)"):
        training.compile_classifier(model, training.make_optimizer("sgd", 0.1), label_smoothing=1.0)


def test_one_hot() -> None:
    np.testing.assert_array_equal(training.one_hot([2, 0], 3), [[0, 0, 1], [1, 0, 0]])
    with pytest.raises(ValueError, match=r"in \[0, 3\)"):
        training.one_hot([3], 3)


def _write_log(path: Path, epochs: int) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["epoch", "accuracy", "loss"])
        for epoch in range(epochs):
            writer.writerow([epoch, 0.1 * epoch, 2.0 - 0.1 * epoch])


def test_truncate_log_drops_epochs_that_will_be_trained_again(tmp_path: Path) -> None:
    log = tmp_path / "history.csv"
    assert training.truncate_log(log, 3) == 0  # missing is fine
    _write_log(log, 5)
    assert training.truncate_log(log, 3) == 3
    assert training.read_log(log)["epoch"] == [0.0, 1.0, 2.0]
    assert not list(tmp_path.glob("*.partial"))


def test_resumed_epoch_reads_the_backup_metadata(tmp_path: Path) -> None:
    assert training.resumed_epoch(tmp_path) == 0
    (tmp_path / "training_metadata.json").write_text(json.dumps({"epoch": 4, "batch": -1}))
    assert training.resumed_epoch(tmp_path) == 4


def test_peak_flops() -> None:
    assert training.peak_flops("GPU: NVIDIA H100 80GB HBM3", "mixed_bfloat16") == 989e12
    assert training.peak_flops("GPU: NVIDIA H100 80GB HBM3", "float32") == 494.5e12
    assert training.peak_flops("no GPU visible, CPU: 2 cores", "float32") is None


def test_callbacks(tmp_path: Path) -> None:
    callbacks = training.training_callbacks(tmp_path)
    kinds = [type(c).__name__ for c in callbacks]
    assert kinds == [
        "StopOnNonFiniteLoss",  # first: a diverged epoch reaches none of the others
        "FreeSpaceCheck",
        "ModelCheckpoint",
        "CSVLogger",
        "RunBackup",
        "TensorBoard",
    ]
    assert isinstance(callbacks[4], keras.callbacks.BackupAndRestore)
    assert callbacks[2].filepath == str(tmp_path / "backup" / training.STAGED_BEST)
    assert callbacks[4].best_checkpoint is callbacks[2]
    assert callbacks[4].manifest_path == tmp_path / training.MANIFEST


def test_sanity_checks_and_throughput_on_a_tiny_model() -> None:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(16, 8, 8, 3)).astype("float32")
    labels = np.arange(16) % 4
    model = models.build_resnet(4, (1,), 8, input_shape=(8, 8, 3))
    training.compile_classifier(model, training.make_optimizer("adam", 3e-3))
    report = training.initial_sanity(model, images, labels, 4)
    assert report.expected_loss == pytest.approx(math.log(4))
    assert report.ok, report
    assert training.overfit_one_batch(model, images, labels, steps=80) == 1.0
    meter = training.Throughput(8)
    model.fit(images, labels, batch_size=8, epochs=2, verbose=0, callbacks=[meter])
    assert len(meter.rates) == 2 and meter.steady_rate > 0
    assert math.isnan(training.Throughput(8).steady_rate)


def test_overfit_one_batch_stops_once_the_batch_is_memorised() -> None:
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).normal(size=(16, 8, 8, 3)).astype("float32")
    labels = np.arange(16) % 4
    model = models.build_resnet(4, (1,), 8, input_shape=(8, 8, 3))
    training.compile_classifier(model, training.make_optimizer("adam", 3e-3))
    assert training.overfit_one_batch(model, images, labels, steps=500) == 1.0
    assert 1 <= int(model.optimizer.iterations) < 500  # stopped early, at 100 %
    with pytest.raises(ValueError, match="steps must be at least 1, got 0"):
        training.overfit_one_batch(model, images, labels, steps=0)


def test_initial_sanity_uses_batch_statistics_and_changes_nothing() -> None:
    keras.utils.set_random_seed(1)
    images = np.random.default_rng(1).uniform(0, 255, (64, 16, 16, 3)).astype("float32")
    labels = np.arange(64) % 10
    model = models.build_resnet(10, (1, 1), 16, input_shape=(16, 16, 3))
    before = [np.array(w) for w in model.get_weights()]
    report = training.initial_sanity(model, images, labels, 10, batch_size=32)
    assert report.ok, report  # with batch statistics the untrained loss is close to ln 10
    for old, new in zip(before, model.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)  # moving statistics untouched
    # In inference mode the same untrained network does not normalise: the loss is far off.
    training.compile_classifier(model, training.make_optimizer("sgd", 0.1))
    inference_loss = model.evaluate(images, labels, verbose=0, return_dict=True)["loss"]
    assert abs(inference_loss - math.log(10)) > 0.2 * math.log(10)
    with pytest.raises(ValueError, match="need as many labels as images"):
        training.initial_sanity(model, images, labels[:3], 10)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        training.initial_sanity(model, images, labels + 5, 10)


def test_throughput_records_epoch_times() -> None:
    images = np.zeros((8, 8, 8, 3), "float32")
    model = models.build_resnet(2, (1,), 8, input_shape=(8, 8, 3))
    training.compile_classifier(model, training.make_optimizer("sgd", 0.1))
    meter = training.Throughput(4, images_per_epoch=8)
    model.fit(
        images,
        np.arange(8) % 2,
        batch_size=4,
        epochs=3,
        verbose=0,
        validation_data=(images, np.arange(8) % 2),
        callbacks=[meter],
    )
    assert len(meter.epoch_seconds) == 3 and len(meter.rates) == 3
    assert all(seconds > 0 for seconds in meter.epoch_seconds)


def test_compile_uses_weighted_metrics_for_padded_evaluation() -> None:
    model = models.build_resnet(3, (1,), 8, input_shape=(8, 8, 3))
    training.compile_classifier(model, training.make_optimizer("sgd", 0.1), soft_targets=True)
    images = np.random.default_rng(0).normal(size=(6, 8, 8, 3)).astype("float32")
    targets = training.one_hot([0, 1, 2, 0, 1, 2], 3)
    weights = np.array([1, 1, 1, 0, 0, 0], dtype="float32")
    padded = model.evaluate(images, targets, sample_weight=weights, verbose=0, return_dict=True)
    real = model.evaluate(images[:3], targets[:3], verbose=0, return_dict=True)
    assert padded["accuracy"] == pytest.approx(real["accuracy"])
    assert padded["loss"] == pytest.approx(real["loss"], rel=1e-5)
