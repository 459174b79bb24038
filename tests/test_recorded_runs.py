"""The recorded full-profile runs in benchmarks/results agree with the code and with themselves.

A change of the full profile's recipe makes the first test fail: record a new run (see
benchmarks/results/README.md) before changing the defaults.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from dlnotes import training

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
RECORDED = ("full-profile", "full-profile-repro", "multi-gpu/full-1gpu", "multi-gpu/full-2gpu")


def _load(name: str) -> tuple[dict, dict, dict[str, list[float]]]:
    folder = RESULTS / name
    config = json.loads((folder / "config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    return config, metrics, training.read_log(folder / "history.csv")


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_config_is_the_current_full_profile(name: str) -> None:
    config, _, _ = _load(name)
    current = json.loads(json.dumps(asdict(training.TrainConfig.for_profile("full"))))
    assert config == current, "the full profile changed: record a new run before changing it"


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_metrics_agree_with_the_history(name: str) -> None:
    config, metrics, history = _load(name)
    epochs = len(history["epoch"])
    assert history["epoch"] == [float(e) for e in range(epochs)]
    assert metrics["epochs_completed"] == epochs == config["epochs"]
    assert metrics["best_val_top1"] == pytest.approx(max(history["val_accuracy"]), abs=1e-6)
    # The final single-view evaluation uses the last epoch's weights on the same images.
    assert metrics["val_top1_single_view"] == pytest.approx(history["val_accuracy"][-1], abs=1e-6)
    assert metrics["val_top5_single_view"] == pytest.approx(history["val_top5"][-1], abs=1e-6)
    reported = "flip_averaged" if config["test_time_flip"] else "single_view"
    assert metrics["val_top1"] == metrics[f"val_top1_{reported}"]
    parts = metrics["decode_seconds"] + metrics["fit_seconds"] + metrics["evaluate_seconds"]
    assert parts < metrics["wall_seconds"]
    assert metrics["first_epoch_seconds"] > metrics["median_epoch_seconds"] > 0


@pytest.mark.parametrize("name", RECORDED)
def test_recorded_runs_name_their_machine_data_and_versions(name: str) -> None:
    _, metrics, _ = _load(name)
    assert "H100" in metrics["device"] and metrics["backend"] == "jax"
    assert metrics["keras_version"] and metrics["backend_version"] and metrics["date"]
    assert (metrics["num_classes"], metrics["train_images"], metrics["val_images"]) == (
        200,
        100_000,
        10_000,
    )
    assert metrics["profile"] == "full"
    assert metrics["replicas"] == (2 if name.endswith("2gpu") else 1)
    assert metrics["global_batch_size"] == 256 * metrics["replicas"]


def test_the_recorded_run_meets_the_goal_and_reproduces() -> None:
    _, record, _ = _load("full-profile")
    _, repeat, _ = _load("full-profile-repro")
    assert record["val_top1"] >= 0.60 and record["wall_seconds"] <= 600
    assert repeat["wall_seconds"] <= 600
    assert abs(record["val_top1"] - repeat["val_top1"]) <= 0.01


def test_the_multi_gpu_files_are_those_the_raw_results_give() -> None:
    collector = Path(__file__).resolve().parents[1] / "benchmarks" / "multi_gpu.py"
    result = subprocess.run(
        [sys.executable, str(collector), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_two_gpus_keep_the_one_gpu_accuracy() -> None:
    _, one, _ = _load("multi-gpu/full-1gpu")
    _, two, _ = _load("multi-gpu/full-2gpu")
    assert abs(two["val_top1"] - one["val_top1"]) <= 0.01
    assert two["wall_seconds"] < one["wall_seconds"]
