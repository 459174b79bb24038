"""The arithmetic of the benchmark tools: epochs within a budget, time by class of operation."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


budget_epochs = _load("budget_epochs")
op_classes = _load("op_classes")


def test_epochs_fill_the_budget_without_passing_it() -> None:
    epochs, text = budget_epochs.epochs_within(300, 20_000, 80, margin=15)
    epoch = 100_000 / 20_000 + budget_epochs.VALIDATION_SECONDS
    assert epochs == int((300 - 15 - 80) // epoch) == 37
    assert 80 + epochs * epoch <= 285 < 80 + (epochs + 1) * epoch
    assert "→ 37 epochs" in text
    assert budget_epochs.epochs_within(10, 20_000, 80)[0] == 1  # never fewer than one
    slower, _ = budget_epochs.epochs_within(300, 20_000, 80, margin=15, epoch_factor=1.2)
    assert slower == int((300 - 15 - 80) // (epoch * 1.2))


def test_budget_from_a_finished_run_corrects_the_epoch_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            [
                {"levels": [1], "width": 8, "batch_per_device": 4, "images_per_second": 10_000.0,
                 "first_epoch_extra_seconds": 30.0},
                {"levels": [1], "width": 16, "batch_per_device": 4, "images_per_second": 5_000.0,
                 "first_epoch_extra_seconds": 40.0},
            ]
        )
    )  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"levels": [1], "width": 8}))
    # Epochs of 12 s where the benchmark predicts 10.5 s: a factor of 8/7.
    (run / "metrics.json").write_text(
        json.dumps(
            {"wall_seconds": 400.0, "fit_seconds": 340.0, "first_epoch_seconds": 40.0,
             "median_epoch_seconds": 12.0, "global_batch_size": 4, "replicas": 1}
        )
    )  # fmt: skip
    common = ["--throughput", str(bench), "--levels", "1", "--batch", "4", "--margin", "0"]
    assert budget_epochs.main(["--budget", "600", "--width", "16", *common]) == 0
    fixed = 40.0 + budget_epochs.FIXED_WITHOUT_A_RUN
    assert int(capsys.readouterr().out) == int((600 - fixed) // (100_000 / 5_000 + 0.5))
    arguments = ["--budget", "600", "--width", "16", *common, "--overhead-run"]
    assert budget_epochs.main([*arguments, str(run / "metrics.json")]) == 0
    factor = 12.0 / (100_000 / 10_000 + 0.5)
    fixed = 400.0 - 340.0 + 40.0 - 12.0
    assert int(capsys.readouterr().out) == int((600 - fixed) // ((20 + 0.5) * factor))
    with pytest.raises(SystemExit, match="no measurement of levels \\[1\\], width 32"):
        budget_epochs.main(["--budget", "600", "--width", "32", *common])


HLO = """HloModule jit_train_step, entry_computation_layout={}

%fused_reduce (p: f32[8,4]) -> f32[4] {
  %p = f32[8,4]{1,0} parameter(0)
  %c = f32[] constant(0)
  ROOT %r = f32[4]{0} reduce(%p, %c), dimensions={0}, to_apply=%add
}

%fused_gather (t: u8[10,4], i: s32[8]) -> u8[8,4] {
  %t = u8[10,4]{1,0} parameter(0)
  %i = s32[8]{0} parameter(1)
  ROOT %g = u8[8,4]{1,0} gather(%t, %i), offset_dims={1}
}

%fused_update (w: f32[4], g: f32[4]) -> f32[4] {
  %w = f32[4]{0} parameter(0)
  %g = f32[4]{0} parameter(1)
  ROOT %s = f32[4]{0} subtract(%w, %g)
}

%fused_relu (x: f32[8,4]) -> f32[8,4] {
  %x = f32[8,4]{1,0} parameter(0)
  ROOT %m = f32[8,4]{1,0} maximum(%x, %x)
}

ENTRY %main.1 (state_0__0_.1: f32[4], state_1__0_.1: u8[10,4], state_2__0_.1: f32[4], state_3__0_.1: f32[], data_0.1: s32[8]) -> (f32[], f32[4], u8[10,4], f32[4], f32[]) {
  %state_0__0_.1 = f32[4]{0} parameter(0)
  %state_1__0_.1 = u8[10,4]{1,0} parameter(1)
  %state_2__0_.1 = f32[4]{0} parameter(2)
  %data_0.1 = s32[8]{0} parameter(4)
  %gather.fusion = u8[8,4]{1,0} fusion(%state_1__0_.1, %data_0.1), kind=kLoop, calls=%fused_gather
  %conv.1 = (f32[8,4]{1,0}, u8[0]{0}) custom-call(%gather.fusion), custom_call_target="__cudnn$convForward"
  %relu.fusion = f32[8,4]{1,0} fusion(%conv.1), kind=kLoop, calls=%fused_relu
  %reduce.fusion = f32[4]{0} fusion(%relu.fusion), kind=kInput, calls=%fused_reduce
  %update.fusion = f32[4]{0} fusion(%state_0__0_.1, %reduce.fusion), kind=kLoop, calls=%fused_update
  %momentum.fusion = f32[4]{0} fusion(%state_2__0_.1, %reduce.fusion), kind=kLoop, calls=%fused_update
  %copy.2 = f32[4]{0} copy(%momentum.fusion)
  %loss = f32[] constant(1)
  ROOT %tuple.9 = (f32[], f32[4], u8[10,4], f32[4], f32[]) tuple(%loss, %update.fusion, %state_1__0_.1, %copy.2, %loss)
}
"""


def test_instructions_are_classed_by_what_they_do(tmp_path: Path) -> None:
    instructions, computations, roots = op_classes.parse_hlo(HLO)
    assert roots == ["loss", "update.fusion", "state_1__0_.1", "copy.2", "loss"]
    counts, logs = op_classes.state_counts_from_hlo(HLO)
    assert (counts, logs) == ((1, 1, 1, 1), 1)
    classes = op_classes.classify(
        instructions, computations, roots, state_counts=counts, log_outputs=logs
    )
    assert classes["conv.1"] == "convolutions"
    assert classes["gather.fusion"] == "augmentation gather"
    assert classes["update.fusion"] == classes["momentum.fusion"] == "optimiser"
    assert classes["reduce.fusion"] == "batch norm and other reductions"
    assert classes["relu.fusion"] == "element-wise"
    # Two traced steps: 1 ms of convolution and 0.5 ms of ReLU each, on the GPU only.
    events = [
        {"ph": "M", "pid": 1, "name": "process_name", "args": {"name": "/device:GPU:0"}},
        {"ph": "M", "pid": 2, "name": "process_name", "args": {"name": "/host:CPU"}},
    ]
    for step in range(2):
        for op, duration in (("conv.1", 1000.0), ("relu.fusion", 500.0)):
            args = {"hlo_module": "jit_train_step", "hlo_op": op}
            events.append({"ph": "X", "pid": 1, "ts": step, "dur": duration, "args": args})
            events.append({"ph": "X", "pid": 2, "ts": step, "dur": 9e9, "args": args})
    with gzip.open(tmp_path / "trace.json.gz", "wt") as handle:
        json.dump({"traceEvents": events}, handle)
    with gzip.open(tmp_path / "train_step.hlo.txt.gz", "wt") as handle:
        handle.write(HLO)
    (tmp_path / "cost.json").write_text(
        json.dumps(
            {"flops_per_step": 3e12, "bytes_accessed_per_step": 6e9,
             "measured_seconds_per_step": 0.002, "batch": 8}
        )
    )  # fmt: skip
    result = op_classes.analyse(tmp_path, peak_tflops=1000.0, peak_tbps=5.0)
    assert result["steps_traced"] == 2
    assert result["milliseconds_per_step"]["convolutions"] == pytest.approx(1.0)
    assert result["milliseconds_per_step"]["element-wise"] == pytest.approx(0.5)
    assert result["busy_share"] == pytest.approx(0.75)
    assert result["achieved_tflops"] == pytest.approx(1500.0)
    assert result["bandwidth_utilisation"] == pytest.approx(0.6)
