"""``python -m dlnotes.train`` end to end on the real mini archive: learning, resuming, devices."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlnotes import data, training

# Width 16, not 8: TensorFlow 2.21 on CPU crashed (SIGSEGV) in 2-channel bottleneck convolutions.
TINY = ["--levels", "1", "--width", "16", "--max-train-per-class", "30", "--batch-size", "50"]


def train_command(root: Path, out_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "dlnotes.train",
        "--data-dir",
        str(root),
        "--out-dir",
        str(out_dir),
        "--profile",
        "smoke",
        *extra,
    ]


def run_train(root: Path, out_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        train_command(root, out_dir, *extra), capture_output=True, text=True, timeout=900
    )


@pytest.fixture(scope="session")
def smoke_run(tiny_imagenet: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A small run of the command (the smoke profile's full run is the training chapter's, whose
    results test_chapter_results.py checks)."""
    out_dir = tmp_path_factory.mktemp("smoke-run")
    result = run_train(tiny_imagenet, out_dir, *TINY, "--epochs", "3")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out_dir, json.loads((out_dir / "metrics.json").read_text())


@pytest.mark.slow
def test_run_folder_contents(smoke_run) -> None:
    out_dir, metrics = smoke_run
    assert set(metrics) >= {
        "val_top1",
        "val_top5",
        "val_top1_single_view",
        "val_top1_flip_averaged",
        "epochs_completed",
        "train_images_per_second",
        "wall_seconds",
        "decode_seconds",
        "first_epoch_seconds",
        "keras_version",
        "backend",
        "backend_version",
        "device",
        "profile",
        "date",
        "num_classes",
        "train_images",
        "val_images",
    }
    assert metrics["num_classes"] == 10 and metrics["val_images"] == 500
    assert metrics["backend"] == "tensorflow" and metrics["profile"] == "smoke"
    assert metrics["epochs_completed"] == 3 and metrics["train_images_per_second"] > 0
    assert training.read_log(out_dir / "history.csv")["epoch"] == [0.0, 1.0, 2.0]
    assert (out_dir / "best.weights.h5").is_file()
    assert (out_dir / "backup" / "training_metadata.json").is_file()
    assert any((out_dir / "tensorboard").rglob("*tfevents*"))


@pytest.mark.slow
def test_resumes_after_sigkill_without_losing_or_repeating_epochs(
    tiny_imagenet: Path, tmp_path: Path
) -> None:
    command = train_command(tiny_imagenet, tmp_path, *TINY, "--epochs", "5")
    log = tmp_path / "history.csv"
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and process.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 3:  # header + 2 epochs
            time.sleep(0.3)  # into the next epoch
            break
        time.sleep(0.05)
    assert process.poll() is None, "training finished before it could be interrupted"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    logged_before = len(training.read_log(log)["epoch"])
    assert logged_before < 5
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming after epoch" in resumed.stdout
    assert training.read_log(log)["epoch"] == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert json.loads((tmp_path / "metrics.json").read_text())["epochs_completed"] == 5


@pytest.mark.slow
def test_a_run_folder_refuses_other_settings(tiny_imagenet: Path, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"epochs": 99}))
    result = run_train(tiny_imagenet, tmp_path, *TINY, "--epochs", "1")
    assert result.returncode == 1
    assert "holds a run with different settings" in result.stderr


@pytest.mark.slow
def test_mirrored_strategy_on_two_logical_cpus(tiny_imagenet: Path, tmp_path: Path) -> None:
    result = run_train(
        tiny_imagenet,
        tmp_path,
        *TINY,
        "--epochs",
        "1",
        "--distribute",
        "data-parallel",
        "--logical-cpus",
        "2",
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "batch 100 on 2 replica(s)" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 1 and metrics["replicas"] == 2
    assert metrics["global_batch_size"] == 100 and metrics["distribute"] == "data-parallel"


@pytest.mark.slow
def test_keras_data_parallel_on_two_jax_cpu_devices(tiny_imagenet: Path, tmp_path: Path) -> None:
    pytest.importorskip("jax")
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    command = train_command(
        tiny_imagenet,
        tmp_path,
        *TINY,
        "--epochs",
        "2",
        "--mix",
        "cutmix",
        "--distribute",
        "data-parallel",
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, env=environment)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "keras 3" in result.stdout and "on jax" in result.stdout
    assert "batch 100 on 2 replica(s)" in result.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["backend"] == "jax" and metrics["replicas"] == 2
    assert metrics["epochs_completed"] == 2
    assert 0 <= metrics["val_top1_single_view"] <= 1


def test_bad_arguments_are_reported(tiny_imagenet: Path, tmp_path: Path) -> None:
    bad_levels = run_train(tiny_imagenet, tmp_path, "--levels", "4,x")
    assert bad_levels.returncode == 2 and "comma-separated integers" in bad_levels.stderr
    too_big = run_train(
        tiny_imagenet, tmp_path / "b", *TINY[:-2], "--batch-size", "5000", "--epochs", "1"
    )
    assert too_big.returncode == 1 and "larger than the 300 training images" in too_big.stderr


@pytest.mark.slow
def test_trained_model_reloads_for_inference(smoke_run, tiny_imagenet: Path) -> None:
    import numpy as np

    from dlnotes import train

    out_dir, metrics = smoke_run
    model = train.load_trained_model(out_dir)
    val = data.read_split(tiny_imagenet, "val")
    predictions = np.argmax(model.predict(data.load_images(val.paths), verbose=0), axis=1)
    assert np.mean(predictions == val.labels) == pytest.approx(metrics["best_val_top1"], abs=0.01)
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        train.load_trained_model(out_dir / "nowhere")
    with pytest.raises(ValueError, match="'best' or 'last'"):
        train.load_trained_model(out_dir, weights="first")


def test_dry_run_prints_the_resolved_configuration_and_writes_nothing(tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    result = run_train(Path("unused"), out_dir, "--profile", "full", "--width", "64", "--dry-run")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["width"] == 64 and printed["levels"] == [1, 2, 4, 2]
    assert printed["mix"] == "cutmix" and printed["profile"] == "full"
    assert not out_dir.exists()


def test_train_config_for_profile_and_validation() -> None:
    from dlnotes import train

    smoke = train.TrainConfig.for_profile("smoke", epochs=3)
    assert smoke.profile == "smoke" and smoke.epochs == 3 and smoke.seed == 0
    assert train.TrainConfig.for_profile("full").levels == (1, 2, 4, 2)
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\): \['depth'\]"):
        train.TrainConfig.for_profile("smoke", depth=3)
    for field, value in [("epochs", 0), ("batch_size", 0), ("width", 30), ("mix", "x")]:
        with pytest.raises(ValueError, match=f"invalid {field}: {value!r}"):
            train.TrainConfig.for_profile("smoke", **{field: value})


def test_learning_rates_follow_the_schedule_per_epoch() -> None:
    from dlnotes import train

    config = train.TrainConfig.for_profile("full")
    rates = train.learning_rates(config, 390)
    assert len(rates) == config.epochs
    peak = int(np.argmax(rates))
    assert rates[peak] == pytest.approx(config.learning_rate, rel=1e-3)
    assert peak == round(config.warmup_epochs) - 1
    assert rates[-1] == pytest.approx(0.01 * config.learning_rate, rel=1e-3)
    assert train.learning_rates(config, 390, replicas=2)[peak] == pytest.approx(2 * rates[peak])
