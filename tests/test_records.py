"""Recorded runs: read from the package's copy of benchmarks/results, their time breakdown."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dlnotes.training import records

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def test_the_package_carries_the_recorded_runs() -> None:
    packaged = Path(str(records.recorded_runs()))
    assert packaged == REPO / "src" / "dlnotes" / "resources" / "recorded_runs"
    run = records.load_run("full-profile")
    epochs = run.config["epochs"]
    assert run.config["profile"] == "full" and run.metrics["epochs_completed"] == epochs
    assert len(run.history["val_accuracy"]) == epochs
    assert run == records.load_run("full-profile", root=RESULTS)
    assert records.load_scaling() == records.load_scaling(root=RESULTS)


def test_the_packaged_runs_are_those_of_benchmarks_results() -> None:
    script = REPO / "benchmarks" / "package_runs.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_package_runs_copies_new_and_changed_files_and_removes_stale_ones(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "package_runs", REPO / "benchmarks" / "package_runs.py"
    )
    assert spec is not None and spec.loader is not None
    package_runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package_runs)
    results, packaged = tmp_path / "results", tmp_path / "packaged"
    shutil.copytree(RESULTS / "full-profile", results / "full-profile")
    shutil.copytree(RESULTS / "ablations" / "no-cutmix-h100", results / "stopped")
    (results / "multi-gpu").mkdir()
    (results / "multi-gpu" / "index.json").write_text('{"runs": []}')
    (packaged / "gone").mkdir(parents=True)
    (packaged / "gone" / "config.json").write_text("{}")
    assert package_runs.differences(results, packaged)
    package_runs.copy_runs(results, packaged)
    assert package_runs.differences(results, packaged) == []
    assert sorted(p.relative_to(packaged).as_posix() for p in packaged.rglob("*.*")) == [
        "full-profile/config.json",
        "full-profile/history.csv",
        "full-profile/metrics.json",
        "multi-gpu/index.json",
        "stopped/config.json",
        "stopped/history.csv",
    ]  # no logs, no metrics for a stopped run, nothing stale
    (results / "full-profile" / "metrics.json").write_text("{}")
    assert package_runs.differences(results, packaged) == ["changed: full-profile/metrics.json"]


def test_a_run_folder_without_its_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"broken lacks history\.csv"):
        records.load_run("broken", root=tmp_path)
    with pytest.raises(ValueError, match=r"got '\.\./full-profile'"):
        records.load_run("../full-profile")


def test_measurements_travel_with_the_package() -> None:
    peers = records.load_measurement("speed/peers.json")
    assert peers == json.loads((RESULTS / "speed" / "peers.json").read_text())
    with pytest.raises(ValueError, match=r"got 'speed/trace\.json\.gz'"):
        records.load_measurement("speed/trace.json.gz")
    with pytest.raises(FileNotFoundError, match=r"no recorded measurement 'nowhere\.json'"):
        records.load_measurement("nowhere.json")


def test_a_run_stopped_before_its_end_loads_without_metrics() -> None:
    stopped = records.load_run("ablations/no-cutmix-h100")
    assert stopped.metrics == {} and 0 < len(stopped.history["epoch"]) < stopped.config["epochs"]


def test_time_breakdown_adds_up_to_the_wall_time() -> None:
    metrics = records.load_run("full-profile").metrics
    parts = records.time_breakdown(metrics)
    assert sum(parts.values()) == pytest.approx(metrics["wall_seconds"])
    assert all(seconds >= 0 for seconds in parts.values())
    assert parts["compilation (first epoch beyond a steady one)"] == pytest.approx(
        metrics["first_epoch_seconds"] - metrics["median_epoch_seconds"]
    )
    with pytest.raises(ValueError, match=r"lack timing keys: \['decode_seconds'\]"):
        records.time_breakdown({**metrics, "decode_seconds": None})


def test_scaling_runs_are_listed_and_complete() -> None:
    runs = records.load_scaling()
    assert len(runs) >= 4 and {run["gpus"] for run in runs} >= {1, 2}
    for run in runs:
        for key in ("card", "backend", "backend_version", "keras_version", "date", "command"):
            assert run[key], (run["name"], key)
        assert run["images_per_second"] > 0
        assert (run["kind"] == "full recipe") == ("val_top1" in run)


def test_scaling_table_divides_by_the_one_gpu_run_of_the_same_batch() -> None:
    def run(name: str, gpus: int, batch: int, rate: float) -> dict:
        return {
            "name": name,
            "kind": "throughput",
            "gpus": gpus,
            "batch_per_device": batch,
            "global_batch_size": batch * gpus,
            "images_per_second": rate,
        }

    runs = [run("b", 2, 256, 300.0), run("a", 1, 256, 200.0), run("c", 2, 512, 100.0)]
    table = records.scaling_table(runs)
    assert [row["name"] for row in table] == ["a", "b", "c"]
    assert table[0]["speedup"] == 1.0 and table[1]["speedup"] == 1.5
    assert table[1]["efficiency"] == 0.75
    assert table[1]["step_milliseconds"] == pytest.approx(1000 * 512 / 300.0)
    assert table[2]["speedup"] is None and table[2]["efficiency"] is None
    assert "speedup" not in runs[0]  # the input is left alone
    with pytest.raises(ValueError, match=r"two runs measure \('throughput', 256, 2\): b and d"):
        records.scaling_table([*runs, run("d", 2, 256, 1.0)])


def test_scaling_without_an_index_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"index\.json is missing"):
        records.load_scaling(root=tmp_path)
    (tmp_path / "multi-gpu").mkdir()
    (tmp_path / "multi-gpu" / "index.json").write_text('{"runs": ["gone"]}')
    with pytest.raises(FileNotFoundError, match=r"gone\.json"):
        records.load_scaling(root=tmp_path)
