"""The console commands: a bad ``KERAS_BACKEND`` and Ctrl-C are one line, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from dlnotes import commands

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "data_scripts"


@pytest.mark.parametrize(
    ("command", "backend", "message"),
    [
        (["-m", "dlnotes.train"], "foo", "KERAS_BACKEND='foo' is not a Keras backend"),
        (["-m", "dlnotes.train"], "numpy", "one of tensorflow, jax, torch"),
        ([str(SCRIPTS / "make_tfrecords.py")], "foo", "KERAS_BACKEND='foo' is not a Keras backend"),
        ([str(SCRIPTS / "pseudo_label.py")], "Jax", "KERAS_BACKEND='Jax' is not a Keras backend"),
        ([str(SCRIPTS / "download_tiny_imagenet.py")], "openvino", "openvino package is not"),
    ],
)
def test_a_bad_keras_backend_is_one_line_before_anything_is_written(
    tiny_imagenet: Path, tmp_path: Path, command: list[str], backend: str, message: str
) -> None:
    out = tmp_path / "out"
    arguments = ["--data-dir", str(tiny_imagenet), "--out-dir", str(out)]
    if "dlnotes.train" in command:
        arguments += ["--profile", "smoke", "--levels", "1", "--width", "16", "--epochs", "1"]
    elif "make_tfrecords" in command[0]:
        arguments += ["--split", "val", "--num-shards", "1"]
    elif "pseudo_label" in command[0]:
        arguments = ["--data-dir", str(tiny_imagenet), "--out", str(out / "labels.csv")]
    else:
        arguments = ["--dest", str(out / "tiny-imagenet-200")]
    result = subprocess.run(
        [sys.executable, *command, *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "KERAS_BACKEND": backend},
        timeout=600,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.startswith("error: KERAS_BACKEND=") and message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not out.exists()


def test_ctrl_c_stops_the_trainer_with_one_line(tiny_imagenet: Path, tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    command = [sys.executable, "-m", "dlnotes.train", "--data-dir", str(tiny_imagenet)]
    command += ["--out-dir", str(out_dir), "--profile", "smoke", "--epochs", "5"]
    command += ["--levels", "1", "--width", "16", "--max-train-per-class", "30"]
    with subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A terminal's default, even where pytest itself was started with SIGINT ignored (nohup, a
        # background job): an ignored signal stays ignored across exec.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as trainer:
        try:
            assert trainer.stdout is not None
            for line in trainer.stdout:  # Keras prints this line when the first epoch starts
                if line.startswith("Epoch 1/5"):
                    break
            os.killpg(trainer.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
            _, stderr = trainer.communicate(timeout=600)
        finally:
            if trainer.poll() is None:
                os.killpg(trainer.pid, signal.SIGKILL)
    assert trainer.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == "interrupted: run the same command to resume"
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert (out_dir / "manifest.json").is_file()  # the run folder can be resumed


def test_a_ctrl_c_that_the_command_loses_is_repeated_until_it_stops_the_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TensorFlow clears a KeyboardInterrupt raised inside its C++ fast path; the launcher
    repeats SIGINT until one arrives, so the command still ends with status 130."""
    lost = []

    def main(argv: list[str] | None) -> int:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                time.sleep(0.01)
            except KeyboardInterrupt:
                if lost:
                    raise
                lost.append(time.monotonic())  # swallowed, as TensorFlow does
        return 0

    monkeypatch.setitem(sys.modules, "lossy_command", types.SimpleNamespace(main=main))
    threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT)).start()
    started = time.monotonic()
    status = commands._launch("lossy_command", [], installed=False, interrupted="again")
    assert lost and status == commands.INTERRUPTED
    assert time.monotonic() - started < 5  # repeated within about a second, not at the end
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
