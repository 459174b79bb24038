"""Several processes train one run: who is who, each process's share of the data, the run folder,
and a process that dies — with real trainers on localhost (JAX on CPU: gloo collectives)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from test_train_cli import TINY, folder_state, train_command

from dlnotes import training
from dlnotes.data import device_data
from dlnotes.training import multihost

# The tiny network with three steps per epoch on four devices (a global batch of 100 of the 300
# images), CutMix on: partners come from the other end of the global batch, so from the other
# process's share.
RUN = [*TINY, "--batch-size", "25", "--epochs", "2", "--mix", "cutmix"]


def _args(**values: object) -> argparse.Namespace:
    defaults: dict[str, object] = {
        "distribute": "data-parallel",
        "coordinator_address": None,
        "num_processes": None,
        "process_id": None,
        "process_timeout": None,
    }
    return argparse.Namespace(**{**defaults, **values})


# -- each process's share of every batch ---------------------------------------------------------


def _epochs(batches: device_data.IndexBatches, epochs: int) -> list[list[tuple]]:
    """Every item of ``epochs`` epochs, as Keras reads them (``on_epoch_end`` in between)."""
    read = []
    for _ in range(epochs):
        read.append([batches[i] for i in range(len(batches))])
        batches.on_epoch_end()
    return read


@pytest.mark.parametrize(("count", "images", "batch"), [(2, 300, 100), (3, 300, 60), (2, 310, 100)])
def test_the_processes_share_every_global_batch_and_use_each_image_once_per_epoch(
    count: int, images: int, batch: int
) -> None:
    labels = np.random.default_rng(0).integers(0, 10, images)
    options = {"shuffle": True, "seed": 3, "mix_mode": "cutmix", "mixing_inputs": True}
    whole = _epochs(device_data.IndexBatches(labels, 10, batch, **options), 2)
    shares = [
        _epochs(
            device_data.IndexBatches(
                labels, 10, batch, process_index=p, process_count=count, **options
            ),
            2,
        )
        for p in range(count)
    ]
    for epoch, batches in enumerate(whole):
        used = []
        for step, (inputs, targets) in enumerate(batches):
            parts = [shares[p][epoch][step] for p in range(count)]
            assert all(len(part[1]) == batch // count for part in parts)
            for name, value in inputs.items():  # index, partner, box, mix_weight
                joined = np.concatenate([part[0][name] for part in parts])
                np.testing.assert_array_equal(joined, value)
            np.testing.assert_array_equal(np.concatenate([part[1] for part in parts]), targets)
            used.extend(np.concatenate([part[0]["index"] for part in parts]).tolist())
        # Each image at most once; all of them when the batch divides the images (else the
        # remainder, fewer than a batch, waits for another epoch — as with one process).
        assert len(used) == len(set(used)) == images - images % batch
    blended = [shares[p][0][0][1].max(axis=1) for p in range(count)]
    assert all(np.any(top < 1) for top in blended)  # CutMix did mix in every share


def test_the_processes_share_the_padded_evaluation_batches() -> None:
    labels = np.arange(250) % 10
    whole = device_data.IndexBatches(labels, 10, 100, shuffle=False)
    shares = [
        device_data.IndexBatches(labels, 10, 100, shuffle=False, process_index=p, process_count=2)
        for p in range(2)
    ]
    total = 0.0
    for step in range(len(whole)):
        inputs, _, weights = whole[step]
        parts = [share[step] for share in shares]
        np.testing.assert_array_equal(
            np.concatenate([part[0]["index"] for part in parts]), inputs["index"]
        )
        np.testing.assert_array_equal(np.concatenate([part[2] for part in parts]), weights)
        total += sum(float(part[2].sum()) for part in parts)
    assert total == 250  # every validation image weighs once, the padding not at all


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"process_count": 3}, "a batch of 100 cannot be shared evenly by 3 process(es)"),
        ({"process_count": 0}, "cannot be shared evenly by 0 process(es)"),
        ({"process_count": 2, "process_index": 2}, "process_index must be from 0 to 1, got 2"),
    ],
)
def test_index_batches_refuse_a_share_that_does_not_fit(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        device_data.IndexBatches(np.zeros(300, dtype=int), 10, 100, shuffle=True, **options)


# -- who is who ----------------------------------------------------------------------------------


def test_process_settings_come_from_the_flags_then_keras_variables_then_slurm(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    keras_env = {
        "KERAS_DISTRIBUTION_JOB_ADDRESSES": "node0:1234,node1:1234",
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "2",
        "KERAS_DISTRIBUTION_PROCESS_ID": "1",
    }
    slurm_env = {"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_JOB_ID": "77"}

    one = multihost.process_settings(_args(), {})
    assert (one.count, one.index, one.coordinator) == (1, 0, None)

    from_keras = multihost.process_settings(_args(), keras_env)
    assert (from_keras.count, from_keras.index, from_keras.coordinator) == (2, 1, "node0:1234")
    assert "KERAS_DISTRIBUTION_PROCESS_ID" in from_keras.source

    flags = _args(coordinator_address="head:9", num_processes=3, process_id=2, process_timeout=7)
    from_flags = multihost.process_settings(flags, {**keras_env, **slurm_env})
    assert (from_flags.count, from_flags.index, from_flags.coordinator) == (3, 2, "head:9")
    assert from_flags.timeout == 7

    mixed = multihost.process_settings(_args(process_id=0), keras_env)  # the id from its flag
    assert (mixed.count, mixed.index) == (2, 0)

    # SLURM: number and id from the job; JAX derives the coordinator from the job's nodes.
    from_slurm = multihost.process_settings(_args(), slurm_env)
    assert (from_slurm.count, from_slurm.index, from_slurm.coordinator) == (8, 5, None)
    assert from_slurm.timeout == multihost.DEFAULT_TIMEOUT
    # Without --distribute data-parallel, SLURM's variables do not make a multi-process run.
    assert multihost.process_settings(_args(distribute="none"), slurm_env).count == 1


@pytest.mark.parametrize(
    ("values", "environ", "backend", "message"),
    [
        ({"num_processes": 0}, {}, "jax",
         "--num-processes must be an integer from 1 to 65,536, got 0"),
        ({"num_processes": 2, "process_id": 2, "coordinator_address": "h:1"}, {}, "jax",
         "--process-id must be a process id from 0 to 1 (for 2 process(es)), got 2"),
        ({}, {"KERAS_DISTRIBUTION_NUM_PROCESSES": "two"}, "jax",
         "KERAS_DISTRIBUTION_NUM_PROCESSES must be an integer, got 'two'"),
        ({}, {"KERAS_DISTRIBUTION_NUM_PROCESSES": "2", "KERAS_DISTRIBUTION_PROCESS_ID": "-1"},
         "jax", "KERAS_DISTRIBUTION_PROCESS_ID must be an integer from 0, got -1"),
        ({"num_processes": 2, "coordinator_address": "nohost"}, {}, "jax",
         "--coordinator-address must be HOST:PORT (a port from 1 to 65,535), got 'nohost'"),
        ({"num_processes": 2, "coordinator_address": "h:70000"}, {}, "jax", "got 'h:70000'"),
        ({"num_processes": 2}, {}, "jax", "2 processes need the coordinator's address"),
        ({}, {"KERAS_DISTRIBUTION_NUM_PROCESSES": "3",
              "KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:1"}, "jax",
         "KERAS_DISTRIBUTION_JOB_ADDRESSES lists 2 addresses for 3 process(es)"),
        ({"num_processes": 2, "coordinator_address": "h:1", "distribute": "none"}, {}, "jax",
         "2 processes (--num-processes, --coordinator-address) train one run together only "
         "with --distribute data-parallel"),
        ({"num_processes": 2, "coordinator_address": "h:1"}, {}, "tensorflow",
         "2 processes need KERAS_BACKEND=jax, not tensorflow"),
        ({"process_timeout": 0}, {}, "jax", "--process-timeout must be a number of seconds from 1"),
    ],
)  # fmt: skip
def test_process_settings_are_checked_naming_the_flag_or_variable(
    monkeypatch: pytest.MonkeyPatch, values: dict, environ: dict, backend: str, message: str
) -> None:
    monkeypatch.setenv("KERAS_BACKEND", backend)
    with pytest.raises(ValueError) as raised:
        multihost.process_settings(_args(**values), environ)
    assert message in str(raised.value)


def test_several_processes_on_tensorflow_are_refused_before_the_run_folder_is_touched(
    tiny_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "run"
    arguments = ["--data-dir", str(tiny_imagenet), "--out-dir", str(out_dir), *TINY]
    multi = ["--distribute", "data-parallel", "--num-processes", "2", "--process-id", "1"]
    code = training.main([*arguments, *multi, "--coordinator-address", "localhost:1"])
    error = capsys.readouterr().err
    assert code == 1 and "error: 2 processes need KERAS_BACKEND=jax, not tensorflow" in error
    assert "keras-team/keras/issues/20585" in error
    assert not out_dir.exists()


# -- what the processes tell each other ----------------------------------------------------------


class _Peers(multihost.ProcessGroup):
    """Process ``index`` of a group whose other processes answer with ``answers`` (no JAX)."""

    def __init__(self, index: int, answers: dict[int, dict], weights: bytes = b"") -> None:
        super().__init__(multihost.ProcessSettings(count=3, index=index, coordinator="h:1"))
        self.answers = answers
        self.weights = weights
        self.sent: list[dict] = []

    def _broadcast(self, data: np.ndarray) -> np.ndarray:
        assert len(data) == len(self.weights)
        return np.frombuffer(self.weights, dtype=np.uint8)

    def _gather(self, text: str) -> list[str]:
        self.sent.append(json.loads(text))
        mine = {self.index: json.loads(text)}
        return [json.dumps({**self.answers, **mine}[p]) for p in range(self.count)]


def _ready(epoch: int = 0, **identity: str) -> dict:
    import hashlib

    values = {"settings": "s", "data": "d", **identity}
    digest = {k: hashlib.sha256(v.encode()).hexdigest() for k, v in values.items()}
    return {"first_epoch": epoch, "identity": digest}


def test_settle_starts_every_process_where_process_zero_says(tmp_path: Path) -> None:
    metadata = json.dumps({"epoch": 4, "best": 0.5})
    zero = {**_ready(4), "metadata": metadata, "weights_bytes": 3}
    other = _Peers(2, {0: zero, 1: _ready()}, weights=b"abc")
    assert other.settle(0, {"settings": "s", "data": "d"}, tmp_path / "backup") == 4
    # Its private folder now holds process 0's committed backup: its RunBackup restores it.
    assert (tmp_path / "backup" / training.BACKUP_WEIGHTS).read_bytes() == b"abc"
    assert (tmp_path / "backup" / training.BACKUP_METADATA).read_text() == metadata
    assert training.resumed_epoch(tmp_path / "backup") == 4

    with pytest.raises(ValueError, match="process 1 has other data than process 0: start every"):
        _Peers(0, {1: _ready(data="other"), 2: _ready()}).settle(
            0, {"settings": "s", "data": "d"}, tmp_path
        )
    with pytest.raises(ValueError, match="process 2 has other data and settings than process 0"):
        _Peers(1, {0: _ready(), 2: _ready(settings="x", data="y")}).settle(
            0, {"settings": "s", "data": "d"}, tmp_path
        )


def test_an_error_before_training_ends_every_process(tmp_path: Path) -> None:
    failed = {"error": "OSError", "message": "/runs/a is in use by another trainer"}
    waiting = _Peers(1, {0: failed, 2: _ready()})
    with pytest.raises(OSError, match=r"^process 0: /runs/a is in use by another trainer$"):
        waiting.settle(0, {"settings": "s", "data": "d"}, tmp_path)

    failing = _Peers(0, {1: _ready(), 2: _ready()})
    with pytest.raises(ValueError, match=r"^my own error$"), failing.failures_shared():
        raise ValueError("my own error")
    assert failing.sent == [{"error": "ValueError", "message": "my own error"}]
    # The meeting happened: the error is not sent twice, and settle no longer waits.
    with pytest.raises(KeyError), failing.failures_shared():
        raise KeyError("not a user error")
    assert len(failing.sent) == 1


def test_a_failed_collective_becomes_one_error_line() -> None:
    import jax

    group = _Peers(1, {})
    with pytest.raises(multihost.LostContact) as raised, group.failures_shared():
        raise jax.errors.JaxRuntimeError("UNKNOWN: Gloo AllGather failed: Connection reset\nmore")
    assert str(raised.value).startswith(
        "process 1 of 3 failed in JAX (UNKNOWN: Gloo AllGather failed: Connection reset); if "
        "another process died, run the same commands again"
    )
    single = multihost.ProcessGroup(multihost.ProcessSettings())
    with pytest.raises(jax.errors.JaxRuntimeError), single.failures_shared():
        raise jax.errors.JaxRuntimeError("one process: left as it is")


# -- real processes on localhost -----------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return int(probe.getsockname()[1])


def _environment(tmp_path: Path, devices: int, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}",
        "TMPDIR": str(tmp_path / "tmp"),  # where the other processes keep their private folder
        **extra,
    }


def _processes(
    root: Path, out_dirs: list[Path], tmp_path: Path, *extra: str, kill_second_at: str = ""
) -> list[subprocess.Popen[str]]:
    """Start a run of ``len(out_dirs)`` processes with two CPU devices each."""
    (tmp_path / "tmp").mkdir(exist_ok=True)
    port = _free_port()
    started = []
    for index, out_dir in enumerate(out_dirs):
        command = train_command(root, out_dir, *RUN, "--distribute", "data-parallel", *extra)
        command += ["--coordinator-address", f"localhost:{port}", "--process-timeout", "20"]
        hook = {training.KILL_POINT_ENV: kill_second_at} if kill_second_at and index else {}
        environment = _environment(
            tmp_path,
            2,
            KERAS_DISTRIBUTION_NUM_PROCESSES=str(len(out_dirs)),
            KERAS_DISTRIBUTION_PROCESS_ID=str(index),
            **hook,
        )
        started.append(
            subprocess.Popen(
                command,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=environment,
                start_new_session=True,
            )
        )
    return started


def _finish(processes: list[subprocess.Popen[str]], timeout: float) -> list[tuple[int, str, str]]:
    """Wait for every process (killing all after ``timeout`` s): (status, stdout, stderr)."""
    deadline = time.monotonic() + timeout
    results = []
    try:
        for process in processes:
            stdout, stderr = process.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((process.returncode, stdout, stderr))
    finally:
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.communicate()
    return results


def _weights(path: Path) -> dict[str, np.ndarray]:
    import h5py

    arrays: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as handle:
        handle.visititems(
            lambda name, item: (
                arrays.__setitem__(name, item[()]) if isinstance(item, h5py.Dataset) else None
            )
        )
    return arrays


@pytest.mark.slow
def test_two_processes_with_two_devices_train_as_one_process_with_four(
    tiny_imagenet: Path, tmp_path: Path
) -> None:
    one = tmp_path / "one-process"
    single = subprocess.run(
        train_command(tiny_imagenet, one, *RUN, "--distribute", "data-parallel"),
        capture_output=True,
        text=True,
        timeout=600,
        env=_environment(tmp_path, 4),
    )
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]

    two, elsewhere = tmp_path / "two-processes", tmp_path / "never-written"
    results = _finish(_processes(tiny_imagenet, [two, elsewhere], tmp_path), 600)
    for code, stdout, stderr in results:
        assert code == 0, stdout[-3000:] + stderr[-3000:]
        assert "batch 100 on 4 replica(s), 3 steps per epoch" in stdout
    assert (
        "process 1 of 2 (KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID"
        in (results[1][1])
    )
    # Process 1 ran on a private folder of its own (deleted at the end), never on --out-dir.
    assert not elsewhere.exists() and not list((tmp_path / "tmp").iterdir())

    history = [training.read_log(folder / "history.csv") for folder in (one, two)]
    assert history[0]["epoch"] == history[1]["epoch"] == [0.0, 1.0]
    for name, values in history[0].items():
        np.testing.assert_allclose(history[1][name], values, rtol=1e-4, atol=1e-5, err_msg=name)
    for name in ("best.weights.h5", "backup/latest.weights.h5"):
        expected, found = _weights(one / name), _weights(two / name)
        assert found.keys() == expected.keys() and len(found) > 20
        for key, value in expected.items():
            np.testing.assert_allclose(found[key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (one, two)]
    assert (metrics[0]["processes"], metrics[1]["processes"]) == (1, 2)
    assert metrics[1]["replicas"] == 4 and metrics[1]["global_batch_size"] == 100
    assert metrics[1]["val_top1"] == pytest.approx(metrics[0]["val_top1"], abs=1e-6)
    # The same global batch on four devices, as one process or as two: either may resume it.
    assert (one / "devices.json").read_text() == (two / "devices.json").read_text()


@pytest.mark.slow
def test_a_killed_process_ends_the_run_with_an_error_and_the_same_commands_resume(
    tiny_imagenet: Path, tmp_path: Path
) -> None:
    out_dir, other = tmp_path / "run", tmp_path / "never-written"
    # Process 1 is killed as the second epoch begins; process 0 has committed the first.
    killed = _processes(tiny_imagenet, [out_dir, other], tmp_path, kill_second_at="begin:1")
    stdout, stderr = killed[1].communicate(timeout=600)
    assert killed[1].returncode == -signal.SIGKILL, stdout[-3000:] + stderr[-3000:]
    died = time.monotonic()
    ((code, stdout, stderr),) = _finish(killed[:1], 120)
    ended = time.monotonic() - died
    # Process 0 does not hang: either its collective fails at once (the peer's sockets close)
    # and it ends with one error line, or JAX ends it once the heartbeats stop (--process-timeout).
    assert code != 0 and ended < 20 + 30, (code, ended, stdout[-2000:], stderr[-3000:])
    assert (
        "error: process 0 of 2 failed in JAX" in stderr
        or "JAX distributed service detected fatal errors" in stderr
    ), stderr[-3000:]
    assert training.resumed_epoch(out_dir / "backup") == 1
    assert list((tmp_path / "tmp").glob("dlnotes-process-1-*"))  # left by the killed process
    before = folder_state(out_dir)

    # The same commands again: every process resumes after the first epoch.
    results = _finish(_processes(tiny_imagenet, [out_dir, other], tmp_path), 600)
    for code, stdout, stderr in results:
        assert code == 0, stdout[-3000:] + stderr[-3000:]
        assert "resuming after epoch 1 of 2" in stdout
    assert training.read_log(out_dir / "history.csv")["epoch"] == [0.0, 1.0]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and metrics["processes"] == 2
    assert folder_state(out_dir) != before
    assert not other.exists() and not list((tmp_path / "tmp").iterdir())  # cleaned up
