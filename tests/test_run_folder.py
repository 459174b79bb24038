"""The run folder's checkpoints, killed at every point of their commit (in-process, real images).

``RunBackup.reached``, the backup's documented extension point, stands in for ``kill -9`` here: it
is patched to raise where ``tests/kill_at.py`` SIGKILLs the process, and a staged file is cut to
what a kill in the middle of its write leaves. ``test_train_cli.py`` kills real trainer processes.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from dlnotes import runtime

runtime.import_quietly("tensorflow")
import keras  # noqa: E402

from dlnotes import data, training  # noqa: E402
from dlnotes.training import callbacks as training_callbacks  # noqa: E402
from dlnotes.training import manifest  # noqa: E402


class Killed(Exception):
    """Raised by the patched kill point."""


@pytest.fixture(scope="module")
def images(tiny_imagenet: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train = data.read_split(tiny_imagenet, "train")
    val = data.read_split(tiny_imagenet, "val")
    classes = len(train.class_ids)
    keep = np.concatenate([np.flatnonzero(train.labels == c)[:6] for c in range(classes)])
    keep_val = np.concatenate([np.flatnonzero(val.labels == c)[:4] for c in range(classes)])
    return (
        data.load_images([train.paths[i] for i in keep]),
        train.labels[keep],
        data.load_images([val.paths[i] for i in keep_val]),
        val.labels[keep_val],
    )


def _model(classes: int) -> keras.Model:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((64, 64, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(8, 3, strides=4, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(classes),
        ]
    )
    training.compile_classifier(model, training.make_optimizer("adam", 1e-2))
    return model


class BestProbe(keras.callbacks.Callback):
    """Records the best checkpoint's threshold when training starts (after the restore)."""

    def __init__(self, checkpoint: keras.callbacks.ModelCheckpoint) -> None:
        super().__init__()
        self.checkpoint = checkpoint
        self.at_start: float | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        self.at_start = self.checkpoint.best


def _train(out_dir: Path, images, epochs: int = 3, extra: tuple = ()) -> BestProbe:
    """What the trainer does in one process: recover, truncate the log, fit with the callbacks."""
    x, y, x_val, y_val = images
    model = _model(int(y.max()) + 1)
    first = training.resumed_epoch(out_dir / "backup")
    training.truncate_log(out_dir / "history.csv", first)
    callbacks = training.training_callbacks(out_dir, tensorboard=False)
    checkpoint = next(c for c in callbacks if isinstance(c, keras.callbacks.ModelCheckpoint))
    probe = BestProbe(checkpoint)
    try:
        model.fit(
            x,
            y,
            batch_size=20,
            epochs=epochs,
            validation_data=(x_val, y_val),
            callbacks=[*extra, *callbacks, probe],
            shuffle=False,
            verbose=0,
        )
    finally:  # as the operating system does for a killed process
        for callback in callbacks:
            if isinstance(callback, keras.callbacks.CSVLogger) and callback.csv_file:
                callback.csv_file.close()
    return probe


def _metadata(out_dir: Path) -> dict:
    path = out_dir / "backup" / training.BACKUP_METADATA
    return json.loads(path.read_text()) if path.is_file() else {}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("point", "epoch", "staged_bytes", "resumes_at"),
    [
        ("staged", 0, 0, 0),  # killed while the first backup is written
        ("staged", 1, 96, 1),  # killed while the backup after epoch 2 is written
        ("committed", 0, None, 1),  # committed, nothing moved into place yet
        ("committed", 1, None, 2),
        ("rolling", 0, None, 1),  # the backup moved into place, the best checkpoint not yet
        ("rolling", 1, None, 2),
    ],
)
def test_a_kill_anywhere_in_the_commit_loses_at_most_the_epoch_in_progress(
    images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point, epoch, staged_bytes, resumes_at
) -> None:
    def reached(self: training.RunBackup, name: str, at: int) -> None:
        if (name, at) == (point, epoch):
            raise Killed

    with monkeypatch.context() as patch:
        patch.setattr(training.RunBackup, "reached", reached)
        with pytest.raises(Killed):
            _train(tmp_path, images)
    backup = tmp_path / "backup"
    if staged_bytes is not None:  # what a kill in the middle of writing the file leaves
        staged = backup / training.STAGED_WEIGHTS
        staged.write_bytes(staged.read_bytes()[:staged_bytes])

    assert training.resumed_epoch(backup) == resumes_at
    assert training.resumed_epoch(backup) == resumes_at  # recovering twice changes nothing
    committed_best = _metadata(tmp_path).get("best")
    assert sorted(p.name for p in backup.iterdir()) == (
        [training.BACKUP_WEIGHTS, training.BACKUP_METADATA] if resumes_at else []
    )
    _check_manifest(tmp_path, resumes_at)  # the manifest was committed with the backup
    probe = _train(tmp_path, images)

    assert probe.at_start == committed_best  # the best threshold survived the resume
    history = training.read_log(tmp_path / "history.csv")
    assert history["epoch"] == [0.0, 1.0, 2.0]  # each epoch exactly once
    metadata = _metadata(tmp_path)
    assert metadata["epoch"] == 3
    _check_manifest(tmp_path, 3)
    assert metadata["best"] == pytest.approx(max(history["val_accuracy"]), abs=1e-7)
    model = _model(int(images[1].max()) + 1)
    model.optimizer.build(model.trainable_variables)
    model.load_weights(tmp_path / "best.weights.h5")
    scores = model.evaluate(images[2], images[3], batch_size=20, return_dict=True, verbose=0)
    assert scores["accuracy"] == pytest.approx(metadata["best"], abs=1e-6)


def _check_manifest(out_dir: Path, epochs: int) -> None:
    """The manifest describes the committed state: its epochs and checkpoint files."""
    path = out_dir / training.MANIFEST
    if not epochs:
        assert not path.exists()
        return
    assert json.loads(path.read_text())["epochs"] == epochs
    manifest.check_listed_files(out_dir, list(manifest.CHECKPOINT_FILES))


def test_a_diverged_epoch_is_neither_logged_nor_committed(images, tmp_path: Path) -> None:
    _train(tmp_path, images, epochs=1)
    kept = folder_files(tmp_path)
    # The second epoch diverges: a learning rate of 1e30 makes the loss NaN or infinite.
    diverge = keras.callbacks.LearningRateScheduler(lambda epoch, rate: 1e30 if epoch else rate)
    with pytest.raises(training.TrainingDiverged, match=r"the loss of epoch 2 is (nan|inf)"):
        _train(tmp_path, images, epochs=3, extra=(diverge,))
    assert folder_files(tmp_path) == kept  # the first epoch's log, checkpoints and manifest
    assert training.resumed_epoch(tmp_path / "backup") == 1
    assert training.read_log(tmp_path / "history.csv")["epoch"] == [0.0]
    _check_manifest(tmp_path, 1)


def folder_files(folder: Path) -> dict[str, bytes]:
    """The content of every file under ``folder`` (TensorBoard's logs aside)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and "tensorboard" not in p.parts
    }


def test_truncate_log_keeps_each_finished_epoch_once(tmp_path: Path) -> None:
    log = tmp_path / "history.csv"
    header = ["epoch", "accuracy", "val_accuracy"]
    with log.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([[0, 0.1, 0.1], [1, 0.2, 0.2]])
        writer.writerow(header)  # a second writer's header (before runs were locked)
        writer.writerows([[0, 0.1, 0.1], [1, 0.2, 0.2], [2, 0.3, 0.3]])
        handle.write("3,0.4")  # a row cut short by a kill
    assert training.truncate_log(log, 3) == 3
    assert training.read_log(log) == {
        "epoch": [0.0, 1.0, 2.0],
        "accuracy": [0.1, 0.2, 0.3],
        "val_accuracy": [0.1, 0.2, 0.3],
    }
    log.write_text("not,a,log\n1,2,3\n")
    with pytest.raises(ValueError, match=f"{log} is not a training log"):
        training.truncate_log(log, 1)


def test_damaged_metadata_is_named(tmp_path: Path) -> None:
    (tmp_path / training.BACKUP_METADATA).write_text('{"epo')
    with pytest.raises(ValueError, match=f"{tmp_path / training.BACKUP_METADATA} is damaged"):
        training.resumed_epoch(tmp_path)


def test_an_unloadable_backup_is_named(images, tmp_path: Path) -> None:
    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / training.BACKUP_METADATA).write_text(json.dumps({"epoch": 1, "batch": 0}))
    (backup / training.BACKUP_WEIGHTS).write_bytes(b"\0" * 96)  # what an older version could leave
    with pytest.raises(ValueError, match=r"the backup .*latest\.weights\.h5 cannot be loaded"):
        _train(tmp_path, images, epochs=2)


def test_run_backup_checks_its_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="both best_checkpoint and best_path"):
        training.RunBackup(tmp_path, best_path=tmp_path / "best.weights.h5")
    elsewhere = keras.callbacks.ModelCheckpoint(
        str(tmp_path / "x.weights.h5"), save_best_only=True, save_weights_only=True
    )
    with pytest.raises(ValueError, match="must write to"):
        training.RunBackup(tmp_path, best_checkpoint=elsewhere, best_path=tmp_path / "b.weights.h5")


def test_free_space_check_stops_before_the_checkpoints(
    images, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _model(10)
    model.optimizer.build(model.trainable_variables)
    check = training.FreeSpaceCheck(tmp_path)
    check.set_model(model)
    estimate = check.checkpoint_bytes()
    model.save_weights(tmp_path / "x.weights.h5")
    assert (tmp_path / "x.weights.h5").stat().st_size <= estimate  # an upper estimate
    check.on_epoch_end(0)  # plenty of room here
    usage = type("Usage", (), {"free": estimate})
    monkeypatch.setattr(training_callbacks.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(OSError, match=f"no room for the checkpoints of epoch 1 in {tmp_path}"):
        check.on_epoch_end(0)


def test_record_run_writes_the_records_and_their_manifest_once(tmp_path: Path) -> None:
    config = training.TrainConfig.for_profile("smoke")
    rng = np.random.default_rng(0)
    dataset = training.Dataset(
        train_images=rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8),
        train_labels=np.array([0, 1, 0, 1]),
        val_images=rng.integers(0, 256, (2, 64, 64, 3), dtype=np.uint8),
        val_labels=np.array([0, 1]),
        class_ids=["n0", "n1"],
        mean=[1.0, 2.0, 3.0],
        std=[4.0, 5.0, 6.0],
        decode_seconds=0.0,
        fingerprint="abc",
    )
    training.record_run(tmp_path, config, dataset, tmp_path, replicas=1, global_batch=2)
    records = {name: (tmp_path / name).read_text() for name in training.manifest.RECORD_FILES}
    assert json.loads(records["config.json"])["batch_size"] == config.batch_size
    assert json.loads(records["devices.json"]) == {"replicas": 1, "global_batch_size": 2}
    assert json.loads(records["dataset.json"])["fingerprint"] == "abc"
    training.check_run_folder_files(tmp_path, finished=0)  # the manifest lists them
    other = training.TrainConfig.for_profile("smoke", epochs=config.epochs + 1)
    training.record_run(tmp_path, other, dataset, tmp_path, replicas=2, global_batch=4)
    assert {name: (tmp_path / name).read_text() for name in records} == records  # written once
