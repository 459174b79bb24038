"""Recorded runs: reading them where they lie, downloading them elsewhere, their time breakdown."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
from pathlib import Path

import pytest
import yaml

from dlnotes.training import records

REPO = Path(__file__).resolve().parents[1]


def test_the_checkout_holds_the_recorded_runs() -> None:
    assert records.results_dir() == REPO / "benchmarks" / "results"
    run = records.load_run("full-profile")
    assert run.config["profile"] == "full" and run.metrics["epochs_completed"] == 55
    assert len(run.history["val_accuracy"]) == 55


def test_a_run_folder_without_its_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"broken lacks history\.csv"):
        records.load_run("broken", root=tmp_path)
    stopped = records.load_run("ablations/no-cutmix-h100")  # killed before its end: no metrics
    assert stopped.metrics == {} and len(stopped.history["epoch"]) < stopped.config["epochs"]


def test_the_raw_url_is_the_configured_repository() -> None:
    repository = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]
    owner_repo = repository["url"].removeprefix("https://github.com/").rstrip("/")
    assert records.REPOSITORY_RAW_URL == (
        f"https://raw.githubusercontent.com/{owner_repo}/{repository['branch']}"
    )


def test_outside_a_checkout_runs_are_downloaded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served = tmp_path / "served"
    for folder in ("full-profile", "multi-gpu"):
        shutil.copytree(
            REPO / "benchmarks" / "results" / folder,
            served / "benchmarks" / "results" / folder,
        )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setattr(records, "results_dir", lambda: None)
        monkeypatch.setattr(records, "REPOSITORY_RAW_URL", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        run = records.load_run("full-profile")
        assert (
            run.metrics
            == records.load_run("full-profile", root=REPO / "benchmarks" / "results").metrics
        )
        scaling = records.load_scaling()
        assert scaling == records.load_scaling(root=REPO / "benchmarks" / "results")
        server.shutdown()  # a second load reads the cache
        assert records.load_run("full-profile").config == run.config
        assert records.load_scaling() == scaling
    finally:
        server.server_close()


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
