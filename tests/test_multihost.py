"""Several processes train one run: who is who, each process's share of the data, the run folder,
and a process that dies — with real trainers on localhost (JAX on CPU: gloo collectives)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from test_train_cli import TINY, killed_at, train_command

from conftest import REPO_ROOT
from dlnotes import training
from dlnotes.data import device_data
from dlnotes.training import multihost

# The tiny network with three steps per epoch on four devices (a global batch of 100 of the 300
# images), CutMix on: partners come from the other end of the global batch, so from the other
# process's share. No flip-averaged evaluation: one model less to compile in every process.
RUN = [*TINY, "--batch-size", "25", "--epochs", "2", "--mix", "cutmix", "--test-time-flip", "off"]


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
    slurm_env = {
        "SLURM_NTASKS": "8",
        "SLURM_PROCID": "5",
        "SLURM_JOB_ID": "77",
        "SLURM_STEP_NODELIST": "node[01-02]",
        "SLURM_LOCALID": "1",
    }

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
    # Without --distribute data-parallel, SLURM's variables do not make a multi-process run; nor
    # do they without every variable JAX needs to find the coordinator.
    assert multihost.process_settings(_args(distribute="none"), slurm_env).count == 1
    batch_shell = {k: v for k, v in slurm_env.items() if k != "SLURM_STEP_NODELIST"}
    assert multihost.process_settings(_args(), batch_shell).count == 1


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
         "2 processes (--num-processes, --coordinator-address) need KERAS_BACKEND=jax, not "
         "tensorflow"),
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
    assert code == 1 and "need KERAS_BACKEND=jax, not tensorflow: on TensorFlow" in error
    assert "keras-team/keras/issues/20585" in error
    assert not out_dir.exists()


def test_the_cluster_examples_start_consistent_trainers(monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    monkeypatch.setenv("KERAS_BACKEND", "jax")
    cluster = REPO_ROOT / "benchmarks" / "cluster"

    # SLURM: one task per GPU, every task the same command.
    script = (cluster / "slurm.sbatch").read_text()
    option = {k: v for k, v in re.findall(r"^#SBATCH --([a-z-]+)=(\S+)", script, re.MULTILINE)}
    assert option["ntasks-per-node"] == option["gpus-per-node"] and "gpus-per-task" not in option
    words = shlex.split(script.split("\nsrun ", 1)[1].replace("\\\n", " ").splitlines()[0])
    assert words[:4] == ["--label", "python", "-m", "dlnotes.train"]
    tasks = int(option["nodes"]) * int(option["ntasks-per-node"])
    task = {
        "SLURM_NTASKS": str(tasks),
        "SLURM_PROCID": str(tasks - 1),
        "SLURM_JOB_ID": "1",
        "SLURM_STEP_NODELIST": "gpu[01-02]",
        "SLURM_LOCALID": "3",
    }
    settings = multihost.process_settings(training.parse_args(words[4:]), task)
    assert (settings.count, settings.index, settings.coordinator) == (tasks, tasks - 1, None)

    # Kubernetes: pod i of the Indexed Job is process i; pod 0 is reached through the Service.
    service, job = yaml.safe_load_all((cluster / "indexed-job.yaml").read_text())
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item for item in container["env"]}
    processes = int(env[multihost.NUM_PROCESSES_ENV]["value"])
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == processes
    index_field = env[multihost.PROCESS_ID_ENV]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index_field == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    address = env[multihost.JOB_ADDRESSES_ENV]["value"]
    host, port = address.rsplit(":", 1)
    assert (
        service["spec"]["clusterIP"] == "None" and pod["subdomain"] == service["metadata"]["name"]
    )
    assert host == f"{job['metadata']['name']}-0.{pod['subdomain']}"
    assert int(port) in [item["port"] for item in service["spec"]["ports"]]
    assert container["command"] == ["python", "-m", "dlnotes.train"]
    args = training.parse_args(container["args"])
    for index in range(processes):
        variables = {name: item.get("value", "") for name, item in env.items()}
        settings = multihost.process_settings(
            args, {**variables, "KERAS_DISTRIBUTION_PROCESS_ID": str(index)}
        )
        assert (settings.count, settings.index, settings.coordinator) == (processes, index, address)


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
        if kill_second_at and index:
            command = killed_at(command, kill_second_at)
        environment = _environment(
            tmp_path,
            2,
            KERAS_DISTRIBUTION_NUM_PROCESSES=str(len(out_dirs)),
            KERAS_DISTRIBUTION_PROCESS_ID=str(index),
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


@dataclasses.dataclass
class _Runs:
    """The same two-epoch run as one process with four CPU devices and as two processes with
    two each, both interrupted as their second epoch begins and started again."""

    one: Path  # the run folder of one process
    two: Path  # the run folder of two processes
    elsewhere: Path  # process 1's --out-dir, which it must never create
    private: Path  # the temporary folder of the private run folders
    killed: list[tuple[int, str, str]]  # one process, process 0, process 1: status, out, err
    ended_after: float  # seconds from process 1's death to the end of process 0
    left_behind: list[Path]  # private folders of the killed process 1
    resumed: list[tuple[int, str, str]]  # one process, process 0, process 1 started again


@pytest.fixture(scope="module")
def killed_and_resumed(tiny_imagenet: Path, tmp_path_factory: pytest.TempPathFactory) -> _Runs:
    tmp_path = tmp_path_factory.mktemp("multihost")
    one, two, elsewhere = tmp_path / "one", tmp_path / "two", tmp_path / "never-written"

    def one_process(kill_at: str = "") -> subprocess.Popen[str]:
        command = train_command(tiny_imagenet, one, *RUN, "--distribute", "data-parallel")
        return subprocess.Popen(
            killed_at(command, kill_at) if kill_at else command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(tmp_path, 4),
            start_new_session=True,
        )

    # Killed as the second epoch begins: the one process, and process 1 of the two (process 0
    # has committed the first epoch by then). All at once: the two processes wait for each other.
    single = one_process("begin:1")
    pair = _processes(tiny_imagenet, [two, elsewhere], tmp_path, kill_second_at="begin:1")
    try:
        stdout, stderr = pair[1].communicate(timeout=600)
    except subprocess.TimeoutExpired:
        _finish([*pair, single], 0)  # kills them all
        raise
    killed_second = (pair[1].returncode, stdout, stderr)
    died = time.monotonic()
    (first,) = _finish(pair[:1], 120)
    ended_after = time.monotonic() - died
    (killed_single,) = _finish([single], 600)
    left_behind = list((tmp_path / "tmp").glob("dlnotes-*-process-1-*"))

    # The same commands again.
    resumed = _finish([one_process(), *_processes(tiny_imagenet, [two, elsewhere], tmp_path)], 600)
    return _Runs(
        one,
        two,
        elsewhere,
        tmp_path / "tmp",
        [killed_single, first, killed_second],
        ended_after,
        left_behind,
        resumed,
    )


@pytest.mark.slow
def test_a_killed_process_ends_the_run_with_an_error_and_the_same_commands_resume(
    killed_and_resumed: _Runs,
) -> None:
    runs = killed_and_resumed
    (single, _, _), (code, stdout, stderr), (killed, out, err) = runs.killed
    assert single == killed == -signal.SIGKILL, out[-3000:] + err[-3000:]
    # Process 0 does not hang: either its collective fails at once (the peer's sockets close)
    # and it ends with one error line, or JAX ends it once the heartbeats stop (--process-timeout).
    assert code != 0 and runs.ended_after < 20 + 30, (code, runs.ended_after, stderr[-3000:])
    assert (
        "error: process 0 of 2 failed in JAX" in stderr
        or "JAX distributed service detected fatal errors" in stderr
    ), stdout[-2000:] + stderr[-3000:]
    assert runs.left_behind  # the killed process's private folder, until the next launch

    # Started again, every process resumes after the first epoch and finishes.
    for code, stdout, stderr in runs.resumed:
        assert code == 0, stdout[-3000:] + stderr[-3000:]
        assert "resuming after epoch 1 of 2" in stdout
        assert "batch 100 on 4 replica(s), 3 steps per epoch" in stdout
    assert (
        "process 1 of 2 (KERAS_DISTRIBUTION_NUM_PROCESSES, KERAS_DISTRIBUTION_PROCESS_ID"
        in (runs.resumed[2][1])
    )
    assert training.read_log(runs.two / "history.csv")["epoch"] == [0.0, 1.0]
    metrics = json.loads((runs.two / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2 and metrics["processes"] == 2
    # Process 1 ran on a private folder of its own, never on --out-dir; none is left.
    assert not runs.elsewhere.exists() and not list(runs.private.iterdir())


@pytest.mark.slow
def test_two_processes_with_two_devices_train_as_one_process_with_four(
    killed_and_resumed: _Runs,
) -> None:
    runs = killed_and_resumed
    for code, stdout, stderr in runs.resumed:
        assert code == 0, stdout[-3000:] + stderr[-3000:]
    history = [training.read_log(folder / "history.csv") for folder in (runs.one, runs.two)]
    assert history[0]["epoch"] == history[1]["epoch"] == [0.0, 1.0]
    for name, values in history[0].items():  # losses, accuracies, validation
        np.testing.assert_allclose(history[1][name], values, rtol=1e-4, atol=1e-5, err_msg=name)
    for name in ("best.weights.h5", "backup/latest.weights.h5"):  # weights and optimiser state
        expected, found = _weights(runs.one / name), _weights(runs.two / name)
        assert found.keys() == expected.keys() and len(found) > 20
        for key, value in expected.items():
            np.testing.assert_allclose(found[key], value, rtol=1e-4, atol=1e-6, err_msg=key)
    metrics = [json.loads((folder / "metrics.json").read_text()) for folder in (runs.one, runs.two)]
    assert (metrics[0]["processes"], metrics[1]["processes"]) == (1, 2)
    assert metrics[1]["replicas"] == 4 and metrics[1]["global_batch_size"] == 100
    for name in ("val_top1", "val_top5", "best_val_top1"):
        assert metrics[1][name] == pytest.approx(metrics[0][name], abs=1e-6), name
    # The same global batch on four devices, as one process or as two: either may resume it.
    assert (runs.one / "devices.json").read_text() == (runs.two / "devices.json").read_text()
