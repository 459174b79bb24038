"""``python -m dlnotes.train`` end to end on the real mini archive: learning, resuming, devices."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import decompression_bomb, mount_namespace, tiff_image
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


KILL_AT = Path(__file__).with_name("kill_at.py")


def killed_at(command: list[str], point: str) -> list[str]:
    """``command`` (from :func:`train_command`) through the test-only launcher that makes the
    trainer SIGKILL itself at ``point`` (``POINT:EPOCH``, see ``tests/kill_at.py``)."""
    assert command[1:3] == ["-m", "dlnotes.train"], command
    return [command[0], str(KILL_AT), point, *command[3:]]


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


def _damage(folder: Path, name: str) -> None:
    path = folder / name
    if name == "history.csv":  # cut: the last epoch's row is lost
        path.write_text("".join(path.read_text().splitlines(keepends=True)[:-1]))
    elif name == "backup":  # a file where the checkpoints' folder was
        shutil.rmtree(path)
        path.write_text("not a folder")
    elif name == "metrics.json":
        path.write_text("{not json")
    elif name.endswith(".h5") and name.startswith("garbage:"):
        target = folder / name.removeprefix("garbage:")
        target.write_bytes(bytes(target.stat().st_size))  # the same size, other bytes
    else:
        path.unlink()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("config.json", "config.json is missing (manifest.json lists it)"),
        ("dataset.json", "dataset.json is missing (manifest.json lists it)"),
        ("history.csv", "history.csv lacks the row(s) of epoch(s) 3 of the 3 finished"),
        ("best.weights.h5", "best.weights.h5 is missing (manifest.json lists it)"),
        ("garbage:best.weights.h5", "best.weights.h5 is damaged (its content differs from"),
        ("garbage:backup/latest.weights.h5", "latest.weights.h5 is damaged (its content differs"),
        ("backup", "backup is a file, not the folder of the run's checkpoints"),
        ("metrics.json", "metrics.json is damaged (not a JSON object): delete it"),
        ("manifest.json", "holds backup, best.weights.h5, history.csv, metrics.json but no "),
    ],
)
def test_a_damaged_run_folder_is_refused_naming_the_file_and_left_as_it_is(
    smoke_run, tiny_imagenet: Path, tmp_path: Path, capsys, damage: str, message: str
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(smoke_run[0], folder)
    _damage(folder, damage)
    before = folder_state(folder)
    code, error = _main(tiny_imagenet, folder, capsys, *TINY, "--epochs", "3")  # smoke_run's
    assert code == 1 and f"error: {folder}" in error and message in error, error
    assert "another --out-dir" in error or "delete it" in error
    assert folder_state(folder) == before  # nothing destroyed, nothing written
    if damage == "garbage:best.weights.h5":  # inference checks the weights it loads too
        with pytest.raises(training.RunFolderDamaged, match=r"best\.weights\.h5 is damaged"):
            training.load_trained_model(folder)


def run_killed(command: list[str], point: str) -> subprocess.CompletedProcess[str]:
    """Run the trainer through the test launcher that makes it SIGKILL itself at ``point``."""
    result = subprocess.run(killed_at(command, point), capture_output=True, text=True, timeout=900)
    assert result.returncode == -signal.SIGKILL, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def folder_state(folder: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of every file under ``folder``."""
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.slow
def test_kills_at_checkpoint_writes_a_second_trainer_and_other_data(
    tiny_imagenet: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "run"
    command = train_command(tiny_imagenet, out_dir, *TINY, "--epochs", "2")
    backup = out_dir / "backup"
    staged = backup / training.STAGED_WEIGHTS

    # 1. Killed while the first backup is written: the file is cut to what such a kill leaves.
    run_killed(command, "staged:0")
    staged.write_bytes(b"")
    assert not (backup / training.BACKUP_METADATA).exists()

    # 2. The same command starts again from the first epoch. A second trainer on the folder is
    # refused at once; the first goes on until it is killed while it rewrites the backup after
    # its second epoch (the file cut to 96 bytes, as in the issue).
    first = subprocess.Popen(
        killed_at(command, "staged:1"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first.stdout.readline()  # printed once the trainer holds the folder's lock
    second = run_train(tiny_imagenet, out_dir, *TINY, "--epochs", "2")
    stdout, stderr = first.communicate(timeout=900)
    assert second.returncode == 1, second.stdout[-3000:] + second.stderr[-3000:]
    assert f"{out_dir} is in use by another trainer" in second.stderr
    assert "Traceback" not in second.stderr
    assert first.returncode == -signal.SIGKILL, stdout[-3000:] + stderr[-3000:]
    assert "resuming" not in stdout
    staged.write_bytes(staged.read_bytes()[:96])
    assert json.loads((backup / training.BACKUP_METADATA).read_text())["epoch"] == 1

    # 3. Resumes after the last finished epoch; each epoch is logged exactly once.
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming after epoch 1 of 2" in resumed.stdout
    assert training.read_log(out_dir / "history.csv")["epoch"] == [0.0, 1.0]
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["epochs_completed"] == 2
    assert sorted(p.name for p in backup.iterdir()) == [
        training.BACKUP_WEIGHTS,
        training.BACKUP_METADATA,
    ]
    assert not list(out_dir.glob("*.partial"))

    # 4. The best checkpoint scores the best validation accuracy of the log (±1 image).

    model = training.load_trained_model(out_dir)
    val = data.read_split(tiny_imagenet, "val")
    predictions = np.argmax(model.predict(data.load_images(val.paths), verbose=0), axis=1)
    accuracy = float(np.mean(predictions == val.labels))
    assert accuracy == pytest.approx(metrics["best_val_top1"], abs=1.01 / len(val.paths))

    # 5. Other data (one validation image changed) is refused before anything is written.
    other = tmp_path / "other-data"
    shutil.copytree(tiny_imagenet, other)
    victim = Path(data.read_split(other, "val").paths[0])
    victim.write_bytes(victim.read_bytes() + b"\0")
    before = folder_state(out_dir)
    refused = run_train(other, out_dir, *TINY, "--epochs", "2")
    assert refused.returncode == 1
    assert "holds a run trained on other data" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert folder_state(out_dir) == before


# Runs inside a private mount namespace: the run folder lives on a 64 MiB tmpfs, which is filled
# up once the first epoch is committed, then emptied again.
DISK_FULL_DRIVER = """
import json, os, shutil, subprocess, sys, time
from pathlib import Path

mount, logs, command = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], check=True)
run_dir = mount / "run"
with open(logs / "first.out", "w") as out, open(logs / "first.err", "w") as err:
    first = subprocess.Popen(command, stdout=out, stderr=err)
    while first.poll() is None and not (run_dir / "backup" / "training_metadata.json").is_file():
        time.sleep(0.05)
    with open(mount / "filler", "wb") as filler:  # leave 128 KiB, less than a checkpoint
        os.posix_fallocate(filler.fileno(), 0, shutil.disk_usage(mount).free - (1 << 17))
    first.wait()
(mount / "filler").unlink()  # make room
second = subprocess.run(command, capture_output=True, text=True)
(logs / "result.json").write_text(json.dumps({
    "first": first.returncode,
    "second": [second.returncode, second.stdout, second.stderr],
    "history": (run_dir / "history.csv").read_text(),
}))
"""


@pytest.mark.slow
def test_a_full_disk_is_reported_and_the_run_resumes_once_there_is_room(
    tiny_imagenet: Path, tmp_path: Path
) -> None:
    mount = tmp_path / "disk"
    mount.mkdir()
    prefix = mount_namespace(mount)
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (needs root or unprivileged user namespaces)")
    command = train_command(tiny_imagenet, mount / "run", *TINY, "--epochs", "3")
    driver = subprocess.Popen(
        [
            *prefix,
            sys.executable,
            "-c",
            DISK_FULL_DRIVER,
            str(mount),
            str(tmp_path),
            json.dumps(command),
        ],
        start_new_session=True,
    )
    try:
        assert driver.wait(timeout=1200) == 0
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    result = json.loads((tmp_path / "result.json").read_text())
    first_error = (tmp_path / "first.err").read_text()
    assert result["first"] == 1, first_error[-3000:]  # an error, not a crash (-11: SIGSEGV)
    # The disk is filled during the second epoch (or, on a slow machine, the third).
    folder = re.escape(str(mount / "run"))
    assert re.search(rf"no room for the checkpoints of epoch [23] in {folder}:", first_error)
    assert "run the same command again" in first_error
    assert "Traceback" not in first_error and "Exception ignored" not in first_error
    returncode, stdout, stderr = result["second"]
    assert returncode == 0, stdout[-3000:] + stderr[-3000:]
    assert re.search(r"resuming after epoch [12] of 3", stdout)
    epochs = [line.split(",")[0] for line in result["history"].splitlines()[1:]]
    assert epochs == ["0", "1", "2"]


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
    assert json.loads((tmp_path / "devices.json").read_text()) == {
        "replicas": 2,
        "global_batch_size": 100,
    }
    # Resumed on one device, the global batch and so the schedule would change: refused.
    before = folder_state(tmp_path)
    one_device = run_train(tiny_imagenet, tmp_path, *TINY, "--epochs", "1")
    assert one_device.returncode == 1, one_device.stdout[-3000:] + one_device.stderr[-3000:]
    assert "global batch of 100 on 2 device(s); this command has 50 on 1" in one_device.stderr
    assert folder_state(tmp_path) == before


@pytest.mark.slow
def test_keras_data_parallel_on_two_jax_cpu_devices(tiny_imagenet: Path, tmp_path: Path) -> None:
    pytest.importorskip("jax")
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "DLNOTES_COMPILATION_CACHE": str(tmp_path / "compiled"),
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
    assert metrics["compilation_cache"] == str(tmp_path / "compiled")
    assert any((tmp_path / "compiled").iterdir())  # the steps were kept for the next run
    assert metrics["decode_cache"] in ("stored", "hit")


def test_user_errors_are_reported_and_leave_nothing_behind(
    tiny_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    def main(out_dir: Path, *extra: str) -> tuple[int, str]:
        arguments = ["--data-dir", str(tiny_imagenet), "--out-dir", str(out_dir)]
        code = training.main([*arguments, "--profile", "smoke", *extra])
        return code, capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_info:
        main(tmp_path / "run", "--levels", "4,x")
    assert exit_info.value.code == 2 and "comma-separated integers" in capsys.readouterr().err
    for extra, message in [
        (["--epochs", "0"], "invalid epochs: 0"),
        (["--batch-size", "0"], "invalid batch_size: 0"),
        ([*TINY[:-2], "--batch-size", "5000", "--epochs", "1"], "larger than the 300 training"),
        (["--data-dir", str(tmp_path / "nowhere")], "not a Tiny ImageNet root"),
    ]:
        code, error = main(tmp_path / "new" / "run", *extra)
        assert code == 1 and message in error, error
        assert not (tmp_path / "new").exists()  # so the corrected command is not refused
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    for out_dir, message in [(a_file, "is a file, not a folder"), (a_file / "run", "could not")]:
        code, error = main(out_dir, *TINY, "--epochs", "1")
        assert code == 1 and message in error, error
    assert a_file.read_text() == "mine"


def _main(root: Path, out_dir: Path, capsys: pytest.CaptureFixture[str], *extra: str):
    """The trainer in this process: (exit status, standard error)."""
    arguments = ["--data-dir", str(root), "--out-dir", str(out_dir), "--profile", "smoke"]
    code = training.main([*arguments, *extra])
    return code, capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--levels", "1,1,1,1,1,1,1,1"],
            "invalid levels: (1, 1, 1, 1, 1, 1, 1, 1) (must be 1 to 6",
        ),
        (["--width", "1000000000"], "invalid width: 1000000000 (must be a multiple of 4 from 4"),
        (["--levels", "64,64,64,64,64,64", "--width", "4096"], "invalid levels and width: "),
        (["--augment-padding", "100000"], "invalid augment_padding: 100000"),
        (["--augment-padding", "64"], "invalid augment_padding: 64 (must be a shift"),
        (["--epochs", "100000000000000000000"], "invalid epochs: 100000000000000000000"),
        (["--learning-rate", "inf"], "invalid learning_rate: inf (must be > 0, and finite)"),
        (["--learning-rate", "nan"], "invalid learning_rate: nan"),
        (["--weight-decay", "inf"], "invalid weight_decay: inf"),
        (["--mix", "mixup", "--mix-alpha", "inf"], "invalid mix_alpha: inf"),
        (["--warmup-epochs", "inf"], "invalid warmup_epochs: inf"),
        (["--seed", "-1"], "invalid seed: -1"),
        (["--steps-per-execution", "-3"], "--steps-per-execution must be an integer from 1"),
        (["--logical-cpus", "-1"], "--logical-cpus must be an integer from 0 to 64, got -1"),
        (["--decode-workers", "0"], "--decode-workers must be an integer from 1"),
    ],
)
def test_every_setting_is_checked_before_the_run_folder_is_touched(
    tiny_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra, message
) -> None:
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "notes.txt").write_text("mine")
    before = folder_state(existing)
    for out_dir in (tmp_path / "new" / "run", existing):
        code, error = _main(tiny_imagenet, out_dir, capsys, *TINY, "--epochs", "1", *extra)
        assert code == 1 and f"error: {message}" in error, error
    assert not (tmp_path / "new").exists()  # so the corrected command is not refused
    assert folder_state(existing) == before


@pytest.mark.parametrize(
    ("backend", "extra", "message"),
    [
        ("numpy", [], "KERAS_BACKEND='numpy' is not a Keras backend this command can use for "),
        ("jax", ["--logical-cpus", "2"], "--logical-cpus splits the CPU with TensorFlow"),
        ("jax", ["--tfrecords", "shards"], "--tfrecords reads shards with tf.data"),
    ],
)
def test_the_backend_is_checked_before_the_run_folder_is_touched(
    tiny_imagenet: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    extra: list[str],
    message: str,
) -> None:
    pytest.importorskip(backend)
    monkeypatch.setenv("KERAS_BACKEND", backend)
    code, error = _main(tiny_imagenet, tmp_path / "run", capsys, *TINY, *extra)
    assert code == 1 and message in error, error
    assert not (tmp_path / "run").exists()


def test_a_diverging_run_stops_with_an_error_and_commits_nothing(
    tiny_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "run"
    code, error = _main(
        tiny_imagenet, out_dir, capsys, *TINY, "--epochs", "1", "--learning-rate", "1e30"
    )
    assert code == 1, error
    assert re.search(r"error: the loss of epoch 1 is (nan|inf|-inf): training diverged", error)
    assert "keeps the 0 epoch(s) before it" in error and "another --out-dir" in error
    assert training.resumed_epoch(out_dir / "backup") == 0
    log = out_dir / "history.csv"
    assert not log.exists() or training.read_log(log) == {}  # the epoch was not logged
    for name in ("best.weights.h5", "metrics.json", "backup/latest.weights.h5"):
        assert not (out_dir / name).exists(), name


def test_the_trainer_names_a_bomb_image_and_an_undecodable_shard(
    tiny_imagenet: Path,
    tiny_imagenet_copy: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dlnotes.data import tfrecord

    victim = Path(data.read_split(tiny_imagenet_copy, "train").paths[0])
    victim.write_bytes(decompression_bomb())
    out_dir = tmp_path / "run"
    code, error = _main(tiny_imagenet_copy, out_dir, capsys, *TINY, "--epochs", "1")
    assert code == 1 and f"{victim}: refused as a possible decompression bomb" in error, error
    assert not out_dir.exists()

    # Shards written without the writer's checks (by an older version): a TIFF among the JPEGs.
    shards = tmp_path / "shards"
    shards.mkdir()
    for split in ("train", "val"):
        files, labels, class_ids = data.read_split(tiny_imagenet, split)
        path = shards / f"{split}-00000-of-00001.tfrecord"
        with tfrecord.tf.io.TFRecordWriter(str(path)) as writer:
            for index, file in enumerate(files):
                image = tiff_image() if index == 7 else Path(file).read_bytes()
                label = int(labels[index])
                writer.write(tfrecord.serialize_example(image, label, class_ids[label]))
    code, error = _main(tiny_imagenet, out_dir, capsys, *TINY, "--tfrecords", str(shards))
    assert code == 1, error
    assert f"the shard {shards / 'train-00000-of-00001.tfrecord'} holds a record that" in error
    assert "Unknown image file format" in error and "dlnotes-make-tfrecords" in error
    assert not out_dir.exists()


def test_a_run_folder_refuses_other_settings(
    tiny_imagenet: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:

    (tmp_path / "config.json").write_text(json.dumps({"epochs": 99}))
    before = folder_state(tmp_path)
    code = training.main(
        ["--data-dir", str(tiny_imagenet), "--out-dir", str(tmp_path), *TINY, "--epochs", "1"]
    )
    assert code == 1
    assert "holds a run with different settings" in capsys.readouterr().err
    assert folder_state(tmp_path) == before


@dataclasses.dataclass(frozen=True)
class WithANewSetting(training.TrainConfig):
    """``TrainConfig`` as it would be with a setting added after a run folder was written."""

    new_setting: bool = False


def test_a_run_folder_of_an_older_config_resumes_and_only_real_changes_are_refused(
    tiny_imagenet: Path, tmp_path: Path
) -> None:
    config = training.TrainConfig.for_profile("smoke", max_train_per_class=5)
    files = training.dataset_files(tiny_imagenet, config)
    (tmp_path / "config.json").write_text(json.dumps(training.config_record(config)))
    newer = WithANewSetting.for_profile("smoke", max_train_per_class=5)
    training.check_run_folder(tmp_path, newer, files)  # the new field at its default: resumes
    assert training.upgrade_record(
        json.loads((tmp_path / "config.json").read_text()), WithANewSetting
    ) == (training.config_record(newer))
    changed = r"holds a run with different settings \(new_setting\); use another --out-dir"
    with pytest.raises(ValueError, match=changed):
        training.check_run_folder(tmp_path, dataclasses.replace(newer, new_setting=True), files)
    with pytest.raises(ValueError, match=r"different settings \(epochs\)"):
        training.check_run_folder(tmp_path, dataclasses.replace(newer, epochs=3), files)
    # A setting the folder has and the command does not (removed or renamed) is a change too.
    (tmp_path / "config.json").write_text(
        json.dumps({**training.config_record(config), "old_setting": 1})
    )
    with pytest.raises(ValueError, match=r"different settings \(old_setting\)"):
        training.check_run_folder(tmp_path, config, files)
    # A field without a default (a recipe setting) missing from the folder is a change.
    (tmp_path / "config.json").write_text(
        json.dumps({k: v for k, v in training.config_record(config).items() if k != "width"})
    )
    with pytest.raises(ValueError, match=r"different settings \(width\)"):
        training.check_run_folder(tmp_path, config, files)


def test_a_run_folder_refuses_other_classes_and_files(tiny_imagenet: Path, tmp_path: Path) -> None:

    config = training.TrainConfig.for_profile("smoke", max_train_per_class=5)
    files = training.dataset_files(tiny_imagenet, config)
    training.check_run_folder(tmp_path, config, files)  # a new folder
    record = {"class_ids": files.class_ids, "fingerprint": files.fingerprint}
    (tmp_path / "dataset.json").write_text(json.dumps(record))
    training.check_run_folder(tmp_path, config, files)  # the same data
    moved = tmp_path / "moved"
    shutil.copytree(tiny_imagenet, moved)
    assert training.dataset_files(moved, config).fingerprint == files.fingerprint
    fewer = training.dataset_files(
        tiny_imagenet, dataclasses.replace(config, max_train_per_class=4)
    )
    with pytest.raises(ValueError, match="holds a run trained on other data"):
        training.check_run_folder(tmp_path, config, fewer)
    (tmp_path / "dataset.json").write_text(json.dumps({**record, "class_ids": ["n00000000"]}))
    other_classes = r"trained on other classes .*\(1 classes from \['n00000000'\]"
    with pytest.raises(ValueError, match=other_classes):
        training.check_run_folder(tmp_path, config, files)


def test_a_run_folder_refuses_another_number_of_devices(tmp_path: Path) -> None:
    training.check_devices(tmp_path, 2, 512)  # a new folder
    (tmp_path / "devices.json").write_text(json.dumps({"replicas": 2, "global_batch_size": 512}))
    training.check_devices(tmp_path, 2, 512)  # the same devices
    before = folder_state(tmp_path)
    with pytest.raises(ValueError, match=r"global batch of 512 on 2 device.*has 256 on 1"):
        training.check_devices(tmp_path, 1, 256)
    assert folder_state(tmp_path) == before


@pytest.mark.slow
def test_trained_model_reloads_for_inference(smoke_run, tiny_imagenet: Path) -> None:
    import numpy as np

    out_dir, metrics = smoke_run
    model = training.load_trained_model(out_dir)
    val = data.read_split(tiny_imagenet, "val")
    predictions = np.argmax(model.predict(data.load_images(val.paths), verbose=0), axis=1)
    assert np.mean(predictions == val.labels) == pytest.approx(metrics["best_val_top1"], abs=0.01)
    with pytest.raises(FileNotFoundError, match="not a finished training run"):
        training.load_trained_model(out_dir / "nowhere")
    with pytest.raises(ValueError, match="'best' or 'last'"):
        training.load_trained_model(out_dir, weights="first")


def test_dry_run_prints_the_resolved_configuration_and_writes_nothing(tmp_path: Path) -> None:
    out_dir = tmp_path / "run"
    result = run_train(Path("unused"), out_dir, "--profile", "full", "--width", "64", "--dry-run")
    assert result.returncode == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["width"] == 64 and printed["levels"] == [1, 2, 4, 2]
    assert printed["mix"] == "cutmix" and printed["profile"] == "full"
    assert not out_dir.exists()


def test_train_config_for_profile_and_validation() -> None:

    smoke = training.TrainConfig.for_profile("smoke", epochs=3)
    assert smoke.profile == "smoke" and smoke.epochs == 3 and smoke.seed == 0
    assert training.TrainConfig.for_profile("full").levels == (1, 2, 4, 2)
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\): \['depth'\]"):
        training.TrainConfig.for_profile("smoke", depth=3)
    for field, value in [("epochs", 0), ("batch_size", 0), ("width", 30), ("mix", "x")]:
        with pytest.raises(ValueError, match=f"invalid {field}: {value!r}"):
            training.TrainConfig.for_profile("smoke", **{field: value})


def test_learning_rates_follow_the_schedule_per_epoch() -> None:

    config = training.TrainConfig.for_profile("full")
    rates = training.learning_rates(config, 390)
    assert len(rates) == config.epochs
    peak = int(np.argmax(rates))
    assert rates[peak] == pytest.approx(config.learning_rate, rel=1e-3)
    assert peak == round(config.warmup_epochs) - 1
    assert rates[-1] == pytest.approx(0.01 * config.learning_rate, rel=1e-3)
    assert training.learning_rates(config, 390, replicas=2)[peak] == pytest.approx(2 * rates[peak])


@pytest.mark.slow
def test_the_trainer_reads_tfrecord_shards(tiny_imagenet: Path, tmp_path: Path) -> None:
    from dlnotes.data import tfrecord

    for split in ("train", "val"):
        files, labels, class_ids = data.read_split(tiny_imagenet, split)
        tfrecord.write_shards(
            files,
            labels,
            class_ids,
            tmp_path / "shards",
            prefix=split,
            num_shards=2,
            progress=False,
        )
    out_dir = tmp_path / "run"
    result = run_train(
        tiny_imagenet, out_dir, *TINY, "--epochs", "1", "--tfrecords", str(tmp_path / "shards")
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "decoding the TFRecord shards" in result.stdout
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert (metrics["train_images"], metrics["val_images"]) == (300, 500)
    missing = run_train(tiny_imagenet, tmp_path / "run2", *TINY, "--tfrecords", str(tmp_path))
    assert missing.returncode == 1 and "no 'train' shards" in missing.stderr
