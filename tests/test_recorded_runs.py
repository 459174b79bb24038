"""The recorded GPU runs in benchmarks/results agree with the code and with themselves.

A change of the full or fast profile's recipe makes the first test fail: record a new run (see
benchmarks/results/README.md) before changing the defaults.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlnotes import training
from dlnotes.training import records

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
CURRENT = {"full-profile": "full", "fast-profile": "fast"}
"""The recorded runs of today's profiles: their settings must be the profiles' defaults."""
PREVIOUS = (
    "previous-full-profile-h100",
    "previous-full-profile-h100-repro",
    "multi-gpu/full-1gpu",
    "multi-gpu/full-2gpu",
)
"""Runs of the full profile's previous recipe (until 2026-12-03), kept as they were recorded."""
PREVIOUS_RECIPE = {
    "profile": "full",
    "epochs": 55,
    "batch_size": 256,
    "levels": [1, 2, 4, 2],
    "width": 96,
    "optimizer": "sgd",
    "learning_rate": 0.4,
    "warmup_epochs": 5.0,
    "weight_decay": 5e-05,
    "label_smoothing": 0.1,
    "augment_padding": 4,
    "mix": "cutmix",
    "mix_alpha": 1.0,
    "mix_probability": 0.5,
    "test_time_flip": True,
    "max_train_per_class": None,
    "seed": 0,
}
RECORDED = (*CURRENT, *PREVIOUS)


def _load(name: str) -> tuple[dict, dict, dict[str, list[float]]]:
    folder = RESULTS / name
    config = training.upgrade_record(json.loads((folder / "config.json").read_text()))
    metrics = json.loads((folder / "metrics.json").read_text())
    return config, metrics, training.read_log(folder / "history.csv")


@pytest.mark.parametrize("name", CURRENT)
def test_recorded_config_is_the_current_profile(name: str) -> None:
    config, _, _ = _load(name)
    current = training.config_record(training.TrainConfig.for_profile(CURRENT[name]))
    assert config == current, f"the {CURRENT[name]} profile changed: record a new run first"


@dataclasses.dataclass(frozen=True)
class _WithANewSetting(training.TrainConfig):
    """``TrainConfig`` as it would be with a setting added after the runs were recorded."""

    new_setting: bool = False


@pytest.mark.parametrize("name", CURRENT)
def test_a_new_defaulted_setting_keeps_the_recorded_runs_current(name: str) -> None:
    recorded = json.loads((RESULTS / name / "config.json").read_text())
    newer = _WithANewSetting.for_profile(CURRENT[name])
    assert "new_setting" not in recorded
    assert training.upgrade_record(recorded, _WithANewSetting) == training.config_record(newer)
    assert training.changed_settings(recorded, newer) == []
    changed = dataclasses.replace(newer, new_setting=True)
    assert training.changed_settings(recorded, changed) == ["new_setting"]
    loaded = records.load_run(name, root=RESULTS).config
    assert loaded == training.config_record(training.TrainConfig.for_profile(CURRENT[name]))


@pytest.mark.parametrize("name", PREVIOUS)
def test_previous_runs_used_the_previous_recipe(name: str) -> None:
    config, _, _ = _load(name)
    assert config == PREVIOUS_RECIPE


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
    config, metrics, _ = _load(name)
    card = "H100" if name in PREVIOUS else "H200"
    assert card in metrics["device"] and metrics["backend"] == "jax"
    assert metrics["keras_version"] and metrics["backend_version"] and metrics["date"]
    assert (metrics["num_classes"], metrics["train_images"], metrics["val_images"]) == (
        200,
        100_000,
        10_000,
    )
    assert metrics["profile"] == config["profile"]
    assert metrics["replicas"] == (2 if name.endswith("2gpu") else 1)
    assert metrics["global_batch_size"] == config["batch_size"] * metrics["replicas"]


def test_the_fast_profile_reaches_60_percent_within_five_minutes() -> None:
    _, fast, _ = _load("fast-profile")
    assert fast["val_top1"] >= 0.60 and fast["wall_seconds"] <= 300
    assert fast["decode_cache"] == "stored"  # a cold run: nothing decoded before


def test_the_full_profile_is_the_best_recorded_within_ten_minutes() -> None:
    _, full, _ = _load("full-profile")
    assert full["wall_seconds"] <= 600 and full["decode_cache"] == "stored"
    for name in (*PREVIOUS, "fast-profile"):
        _, other, _ = _load(name)
        assert full["val_top1"] > other["val_top1"], name
    # The goal of 64 % was not reached (63.7 %); the book and README say so.
    assert full["val_top1"] < 0.64


def test_previous_runs_reproduce() -> None:
    _, record, _ = _load("previous-full-profile-h100")
    _, repeat, _ = _load("previous-full-profile-h100-repro")
    assert record["val_top1"] >= 0.60 and record["wall_seconds"] <= 600
    assert abs(record["val_top1"] - repeat["val_top1"]) <= 0.01


def test_a_rerun_reuses_the_decoded_images_and_the_compiled_programs() -> None:
    startup = json.loads((RESULTS / "startup" / "summary.json").read_text())
    warm, cold = startup["warm"], startup["cold"]
    assert warm["decode_cache"] == "hit" and warm["decode_seconds"] <= 3
    assert warm["first_epoch_extra_seconds"] <= 5 < cold["first_epoch_extra_seconds"]


@pytest.mark.parametrize("script", ["multi_gpu.py", "speed_results.py"])
def test_derived_measurements_are_those_the_raw_results_give(script: str) -> None:
    collector = Path(__file__).resolve().parents[1] / "benchmarks" / script
    result = subprocess.run(
        [sys.executable, str(collector), "--check"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_the_trainer_is_ahead_of_its_pytorch_peers() -> None:
    peers = json.loads((RESULTS / "speed" / "peers.json").read_text())
    trainer, *others = peers["runs"]
    assert trainer["relative_to_the_trainer"] == 1.0 and others
    assert all(peer["images_per_second"] < trainer["images_per_second"] for peer in others)


def test_two_gpus_keep_the_one_gpu_accuracy() -> None:
    _, one, _ = _load("multi-gpu/full-1gpu")
    _, two, _ = _load("multi-gpu/full-2gpu")
    assert abs(two["val_top1"] - one["val_top1"]) <= 0.01
    assert two["wall_seconds"] < one["wall_seconds"]


def test_readme_quotes_the_recorded_runs() -> None:
    readme = (RESULTS.parents[1] / "README.md").read_text()
    for name in ("fast-profile", "full-profile"):
        _, metrics, _ = _load(name)
        row = next(line for line in readme.splitlines() if line.startswith(f"| `{name}` |"))
        for key in ("val_top1", "val_top1_single_view", "val_top5"):
            assert f"{100 * metrics[key]:.2f} %" in row, (name, key)
        assert f"**{metrics['wall_seconds']:.0f} s**" in row, name
    peers = json.loads((RESULTS / "speed" / "peers.json").read_text())["runs"]
    for peer in peers:
        assert f"{peer['images_per_second']:,.0f}" in readme, peer["mode"]
    startup = json.loads((RESULTS / "startup" / "summary.json").read_text())
    assert (
        f"images ready in {startup['warm']['decode_seconds']:.1f} s instead of "
        f"{startup['cold']['decode_seconds']:.1f} s" in readme
    )
    assert f"{startup['warm']['first_epoch_extra_seconds']:.1f} s longer" in readme
