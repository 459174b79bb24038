"""tf.data pipelines and TFRecord shards on the real mini archive."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    decompression_bomb,
    mount_namespace,
    run_script,
    shift_flip_candidates,
    tiff_image,
)
from dlnotes import data
from dlnotes.data import pipeline, tfrecord

tf = pipeline.tf
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def train_split(tiny_imagenet: Path) -> data.SplitFiles:
    return data.read_split(tiny_imagenet, "train")


@pytest.fixture(scope="module")
def stats(train_split: data.SplitFiles) -> pipeline.ChannelStats:
    return pipeline.channel_stats(train_split.paths, max_images=200)


def test_grayscale_jpegs_decode_to_three_channels(train_split: data.SplitFiles) -> None:
    from PIL import Image

    gray = None
    for path in train_split.paths:
        with Image.open(path) as image:
            if image.mode == "L":
                gray = path
                break
    assert gray is not None, "the data set should contain a grayscale JPEG"
    image = pipeline.load_image(tf.constant(gray))
    assert image.shape == (64, 64, 3) and image.dtype == tf.uint8
    np.testing.assert_array_equal(image[..., 0], image[..., 2])


def test_channel_stats_match_numpy(train_split: data.SplitFiles) -> None:
    sample = train_split.paths[:30]
    stats = pipeline.channel_stats(sample, max_images=None)
    pixels = np.concatenate(
        [
            pipeline.load_image(tf.constant(p)).numpy().reshape(-1, 3).astype(np.float64)
            for p in sample
        ]
    )
    np.testing.assert_allclose(stats.mean, pixels.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(stats.std, pixels.std(axis=0), rtol=1e-9)
    with pytest.raises(ValueError, match="at least one image path"):
        pipeline.channel_stats([])


@pytest.mark.parametrize("cache", [False, True, "file"])
def test_train_dataset_batches(train_split, stats, cache, tmp_path: Path) -> None:
    cache_arg = str(tmp_path / "cache") if cache == "file" else cache
    dataset = pipeline.train_dataset(
        train_split.paths, train_split.labels, stats, batch_size=32, cache=cache_arg, seed=0
    )
    batches = list(dataset)
    assert len(batches) == len(train_split.paths) // 32
    images, labels = batches[0]
    assert images.shape == (32, 64, 64, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32
    assert abs(float(tf.reduce_mean(images))) < 0.5  # normalised
    if cache == "file":
        assert list(tmp_path.glob("cache*"))
        assert len(list(dataset)) == len(batches)  # second epoch from the file cache


def test_train_dataset_reshuffles_each_epoch(train_split, stats) -> None:
    dataset = pipeline.train_dataset(
        train_split.paths,
        train_split.labels,
        stats,
        batch_size=64,
        augment=False,
        drop_remainder=False,
        seed=1,
    )
    first = np.concatenate([y.numpy() for _, y in dataset])
    second = np.concatenate([y.numpy() for _, y in dataset])
    assert not np.array_equal(first, second)
    assert sorted(first) == sorted(second)


def test_augmentation_is_a_reflect_padded_crop_and_flip() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 16, 16, 3)).astype(np.uint8)
    tf.random.set_seed(0)
    outputs = pipeline.random_crop_flip(tf.constant(images), padding=3).numpy()
    assert outputs.shape == images.shape and outputs.dtype == np.uint8
    for image, output in zip(images, outputs, strict=True):
        assert any(np.array_equal(output, c) for c in shift_flip_candidates(image, 3))
    assert any(not np.array_equal(o, i) for o, i in zip(outputs, images, strict=True))


def test_augmentation_without_padding_only_flips() -> None:
    images = np.random.default_rng(1).integers(0, 256, size=(8, 8, 8, 3)).astype(np.uint8)
    outputs = pipeline.random_crop_flip(tf.constant(images), padding=0).numpy()
    for image, output in zip(images, outputs, strict=True):
        assert np.array_equal(output, image) or np.array_equal(output, image[:, ::-1])


def test_augmentation_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="batch"):
        pipeline.random_crop_flip(tf.zeros((8, 8, 3), tf.uint8))
    with pytest.raises(ValueError, match=r"padding must be in \[0, 8\), got 8"):
        pipeline.random_crop_flip(tf.zeros((1, 8, 8, 3), tf.uint8), padding=8)


def test_eval_dataset_is_deterministic_and_complete(tiny_imagenet: Path, stats) -> None:
    val = data.read_split(tiny_imagenet, "val")
    dataset = pipeline.eval_dataset(val.paths, val.labels, stats, batch_size=64)
    labels = np.concatenate([y.numpy() for _, y in dataset])
    np.testing.assert_array_equal(labels, val.labels)
    first = next(iter(dataset))[0].numpy()
    np.testing.assert_array_equal(first, next(iter(dataset))[0].numpy())
    test = data.read_split(tiny_imagenet, "test")
    images = np.concatenate([x.numpy() for x in pipeline.eval_dataset(test.paths, None, stats)])
    assert images.shape == (len(test.paths), 64, 64, 3)


def test_denormalize_inverts_normalize(stats) -> None:
    image = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3)).astype(np.uint8)
    restored = pipeline.denormalize(pipeline.normalize(image, stats).numpy(), stats)
    np.testing.assert_allclose(restored, image, atol=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"paths": []}, "at least one image path"),
        ({"labels": [0]}, "got 1 labels for"),
        ({"batch_size": 0}, "batch_size must be at least 1, got 0"),
    ],
)
def test_pipeline_rejects_bad_arguments(train_split, stats, kwargs, message) -> None:
    arguments = {"paths": train_split.paths, "labels": train_split.labels, **kwargs}
    with pytest.raises(ValueError, match=message):
        pipeline.train_dataset(
            arguments["paths"], arguments["labels"], stats, batch_size=kwargs.get("batch_size", 8)
        )


def _truncate_first_image(root: Path) -> str:
    victim = data.read_split(root, "train").paths[0]
    blob = Path(victim).read_bytes()
    Path(victim).write_bytes(blob[: len(blob) // 3])
    return victim


def test_verify_images_names_a_truncated_jpeg(tiny_imagenet_copy: Path) -> None:
    victim = _truncate_first_image(tiny_imagenet_copy)
    paths = data.read_split(tiny_imagenet_copy, "train").paths[:5]
    # The message names the file; the reason after it is Pillow's wording, not ours.
    with pytest.raises(
        ValueError, match=rf"1 unreadable image file\(s\):\n  {re.escape(victim)}: "
    ):
        data.verify_images(paths)
    with pytest.raises(ValueError, match="unreadable image"):
        data.verify_images([str(tiny_imagenet_copy / "wnids.txt")])


def test_shards_round_trip_every_record(tiny_imagenet: Path, tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        files, labels, class_ids = data.read_split(tiny_imagenet, split)
        shards = tfrecord.write_shards(
            files,
            labels,
            class_ids,
            tmp_path,
            prefix=split,
            num_shards=3,
            compression="GZIP",
            progress=False,
        )
        assert [s.name for s in shards] == [
            f"{split}-{i:05d}-of-00003.tfrecord.gz" for i in range(3)
        ]
        assert tfrecord.shard_files(tmp_path, split) == shards
        records = [
            (r["image"].numpy(), int(r["label"]), r["wnid"].numpy().decode())
            for r in tfrecord.read_shards(shards, compression="GZIP")
        ]
        expected = [
            (
                Path(path).read_bytes(),
                -1 if labels is None else int(labels[i]),
                "" if labels is None else class_ids[labels[i]],
            )
            for i, path in enumerate(files)
        ]
        # interleave reads the shards round-robin: compare the records as multisets
        assert sorted(records) == sorted(expected)


def test_shards_are_much_smaller_than_float32(tiny_imagenet: Path, tmp_path: Path) -> None:
    files, labels, class_ids = data.read_split(tiny_imagenet, "val")
    shards = tfrecord.write_shards(
        files, labels, class_ids, tmp_path, prefix="val", num_shards=2, progress=False
    )
    size = sum(s.stat().st_size for s in shards)
    assert size < len(files) * 64 * 64 * 3 * 4 / 10


def test_a_truncated_jpeg_stops_the_writer_before_any_shard(
    tiny_imagenet_copy: Path, tmp_path: Path
) -> None:
    victim = _truncate_first_image(tiny_imagenet_copy)
    files, labels, class_ids = data.read_split(tiny_imagenet_copy, "train")
    out_dir = tmp_path / "shards"
    with pytest.raises(ValueError, match=victim):
        tfrecord.write_shards(
            files, labels, class_ids, out_dir, prefix="train", num_shards=2, progress=False
        )
    assert not out_dir.exists() or list(out_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_shards": 0}, "num_shards must be between 1 and"),
        ({"compression": "LZ4"}, "compression must be one of"),
        ({"labels": [0]}, "got 1 labels"),
    ],
)
def test_writer_rejects_bad_arguments(tiny_imagenet: Path, tmp_path: Path, kwargs, message) -> None:
    files, labels, class_ids = data.read_split(tiny_imagenet, "val")
    arguments = {"labels": labels, "num_shards": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        tfrecord.write_shards(
            files, class_ids=class_ids, out_dir=tmp_path, prefix="val", progress=False, **arguments
        )


def test_reader_rejects_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        tfrecord.read_shards([tmp_path / "nope.tfrecord"])
    with pytest.raises(ValueError, match="no TFRecord files"):
        tfrecord.read_shards([])


@pytest.mark.slow
def test_make_tfrecords_script(tiny_imagenet: Path, tmp_path: Path) -> None:
    script = REPO / "data_scripts" / "make_tfrecords.py"
    arguments = ("--out-dir", tmp_path, "--split", "val", "--num-shards", "2")
    result = run_script(script, "--data-dir", tiny_imagenet, *arguments, "--compression", "GZIP")
    assert result.returncode == 0, result.stderr
    assert "val images into 2 shard(s)" in result.stdout
    assert len(tfrecord.shard_files(tmp_path, "val")) == 2
    bad = run_script(script, "--data-dir", tmp_path / "missing", *arguments)
    assert bad.returncode == 1 and "not a Tiny ImageNet root" in bad.stderr
    assert "Traceback" not in bad.stderr

    # What an older run with another count and a killed run leave behind, next to another split.
    (tmp_path / "val-00003-of-00016.tfrecord").write_bytes(b"old")
    (tmp_path / "val-00001-of-00004.tfrecord.partial").write_bytes(b"half")
    (tmp_path / "train-00000-of-00001.tfrecord").write_bytes(b"another split")
    with pytest.raises(ValueError, match=r"more than one set of 'val' shards"):
        tfrecord.shard_files(tmp_path, "val")
    again = run_script(script, "--data-dir", tiny_imagenet, *arguments[:-1], "3")
    assert again.returncode == 0, again.stderr
    shards = tfrecord.shard_files(tmp_path, "val")
    assert (
        sorted(p.name for p in tmp_path.glob("val*"))
        == [s.name for s in shards]
        == [f"val-{i:05d}-of-00003.tfrecord" for i in range(3)]
    )
    records = sum(1 for _ in tfrecord.read_shards(shards))
    assert records == len(data.read_split(tiny_imagenet, "val").paths)
    assert (tmp_path / "train-00000-of-00001.tfrecord").read_bytes() == b"another split"


def test_a_second_writer_into_the_same_folder_is_refused_and_the_first_is_unharmed(
    tiny_imagenet: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    arguments = ["--data-dir", str(tiny_imagenet), "--out-dir", str(tmp_path), "--split", "val"]
    second: list[tuple[int, str]] = []
    serialize = tfrecord.serialize_example

    def first_record_then_a_second_writer(*args):  # runs while the first writer writes
        if not second:
            second.append((-1, ""))  # the second writer's own records go straight through
            second[0] = (tfrecord.main([*arguments, "--num-shards", "1"]), capsys.readouterr().err)
        return serialize(*args)

    monkeypatch.setattr(tfrecord, "serialize_example", first_record_then_a_second_writer)
    assert tfrecord.main([*arguments, "--num-shards", "2"]) == 0
    code, error = second[0]
    assert code == 1, error
    assert f"error: {tmp_path} is in use by another writer of TFRecord shards" in error
    shards = tfrecord.shard_files(tmp_path, "val")
    assert [s.name for s in shards] == [f"val-0000{i}-of-00002.tfrecord" for i in range(2)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [s.name for s in shards]
    records = sum(1 for _ in tfrecord.read_shards(shards))
    assert records == len(data.read_split(tiny_imagenet, "val").paths)


def test_a_tiff_named_jpeg_and_a_decompression_bomb_are_named(
    tiny_imagenet_copy: Path, tmp_path: Path, capsys
) -> None:
    paths = data.read_split(tiny_imagenet_copy, "val").paths
    tiff, bomb, png_bomb = Path(paths[3]), Path(paths[8]), tmp_path / "tiny.png"
    tiff.write_bytes(tiff_image())
    bomb.write_bytes(decompression_bomb())
    with pytest.raises(ValueError) as raised:
        data.verify_images([*paths[:10], str(png_bomb)])
    message = str(raised.value)
    assert message.startswith("3 unreadable image file(s):")
    assert f"{tiff}: holds a TIFF image, not JPEG as its name says" in message
    assert f"{bomb}: refused as a possible decompression bomb" in message
    assert f"{png_bomb}: [Errno 2]" in message  # missing
    png_bomb.write_bytes(decompression_bomb(5000, 4000))  # below Pillow's own limit
    with pytest.raises(ValueError, match="declares 5,000 × 4,000 pixels, more than the 16,777,216"):
        data.verify_images([png_bomb], decode=False)
    with pytest.raises(ValueError, match=f"{re.escape(str(bomb))}: refused as a possible"):
        data.load_images([bomb])
    out_dir = tmp_path / "shards"
    arguments = ["--data-dir", str(tiny_imagenet_copy), "--out-dir", str(out_dir)]
    code = tfrecord.main([*arguments, "--split", "val", "--num-shards", "2"])
    error = capsys.readouterr().err
    assert code == 1 and "2 unreadable image file(s)" in error and "Traceback" not in error
    assert str(tiff) in error and str(bomb) in error
    assert not out_dir.exists()


# Runs inside a private mount namespace: the shards' folder is a tmpfs too small for them.
FULL_DISK_DRIVER = """
import json, subprocess, sys
from pathlib import Path

mount, command = Path(sys.argv[1]), json.loads(sys.argv[2])
subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], check=True)
(mount / "val-00000-of-00001.tfrecord").write_bytes(b"an earlier set")
result = subprocess.run(command, capture_output=True, text=True)
print(json.dumps({
    "returncode": result.returncode,
    "stderr": result.stderr,
    "files": {p.name: p.read_bytes().decode(errors="replace") for p in mount.iterdir()},
}))
"""


def test_a_full_disk_is_an_error_naming_the_shard(tiny_imagenet: Path, tmp_path: Path) -> None:
    import json
    import subprocess
    import sys

    mount = tmp_path / "disk"
    mount.mkdir()
    prefix = mount_namespace(mount)
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (needs root or unprivileged user namespaces)")
    script = REPO / "data_scripts" / "make_tfrecords.py"
    command = [sys.executable, str(script), "--data-dir", str(tiny_imagenet)]
    command += ["--out-dir", str(mount), "--split", "val", "--num-shards", "2"]
    driver = subprocess.run(
        [*prefix, sys.executable, "-c", FULL_DISK_DRIVER, str(mount), json.dumps(command)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert driver.returncode == 0, driver.stderr[-3000:]
    result = json.loads(driver.stdout)
    error = result["stderr"]
    assert result["returncode"] == 1, error[-3000:]
    assert f"error: could not write the shard {mount}/val-0000" in error
    assert "No space left on device" in error and "make room" in error
    assert "Traceback" not in error
    assert result["files"] == {"val-00000-of-00001.tfrecord": "an earlier set"}  # unchanged


def test_shard_files_refuses_an_incomplete_set(tiny_imagenet: Path, tmp_path: Path) -> None:
    files, labels, class_ids = data.read_split(tiny_imagenet, "val")
    shards = tfrecord.write_shards(
        files[:20], labels[:20], class_ids, tmp_path, prefix="val", num_shards=4, progress=False
    )
    shards[2].unlink()  # e.g. a run killed while it moved the new set into place
    with pytest.raises(ValueError, match="holds 3 of the 4 'val' shards"):
        tfrecord.shard_files(tmp_path, "val")
    assert tfrecord.shard_files(tmp_path / "missing", "val") == []
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        tfrecord.write_shards(files[:2], labels[:2], class_ids, a_file, prefix="v", num_shards=1)


@pytest.mark.slow
def test_pipeline_benchmark_prints_five_rates(tiny_imagenet: Path) -> None:
    import json

    from dlnotes.data import throughput

    committed = throughput.reference_results()
    result = run_script(
        REPO / "benchmarks" / "pipeline.py",
        *("--data-dir", tiny_imagenet, "--runs", "1", "--repeat", "2", "--batch-size", "64"),
    )
    assert result.returncode == 0, result.stderr
    results = json.loads(result.stdout.strip().splitlines()[-1])
    throughput.check_results(results)
    assert len(results["runs"]) == 1 and list(results["runs"][0]) == list(throughput.LOADERS)
    assert "× ImageDataGenerator" in result.stdout
    assert throughput.reference_results() == committed  # written only with --write


def test_images_per_second_rejects_bad_arguments() -> None:
    from dlnotes.data import throughput

    with pytest.raises(ValueError, match="passes must be at least 1, got 0"):
        throughput.images_per_second(lambda: [], passes=0)
    with pytest.raises(ValueError, match="at least two batches"):
        throughput.images_per_second(lambda: [np.zeros((2, 1))])
    assert throughput.images_per_second(lambda: [np.zeros((2, 1))] * 3) > 0


def test_committed_benchmark_results_are_complete() -> None:
    from dlnotes.data import throughput

    results = throughput.reference_results()
    assert len(results["runs"]) >= 3
    assert all(list(run) == list(throughput.LOADERS) for run in results["runs"])
    assert "2-core CPU" in results["machine"]
    assert set(throughput.LOADER_NAMES) == set(throughput.LOADERS)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("machine"), "lack 'machine'"),
        (lambda r: r.update(runs=[]), "non-empty list of runs"),
        (lambda r: r["runs"][0].pop("pipeline_cache"), "run 1: pipeline_cache must be a positive"),
        (lambda r: r["runs"][0].update(pipeline_files=-1.0), "got -1.0"),
    ],
)
def test_benchmark_results_are_checked(change, message: str) -> None:
    import copy

    from dlnotes.data import throughput

    results = copy.deepcopy(throughput.reference_results())
    change(results)
    with pytest.raises(ValueError, match=message):
        throughput.check_results(results)


def test_shard_arrays_decode_the_classes_asked_for(tiny_imagenet: Path, tmp_path: Path) -> None:
    files, labels, class_ids = data.read_split(tiny_imagenet, "train")
    tfrecord.write_shards(
        files, labels, class_ids, tmp_path, prefix="train", num_shards=3, progress=False
    )
    wanted = [class_ids[4], class_ids[1]]
    images, kept = tfrecord.shard_arrays(tmp_path, "train", wanted, per_class=7)
    assert images.shape == (14, 64, 64, 3) and images.dtype == np.uint8
    assert sorted(np.bincount(kept).tolist()) == [7, 7]
    # Same images as the files, up to the decoders' rounding (TensorFlow's and Pillow's).
    first = [p for p, label in zip(files, labels, strict=True) if label == 4][:7]
    np.testing.assert_allclose(
        images[kept == 0].astype(float), data.load_images(first).astype(float), atol=12
    )
    with pytest.raises(FileNotFoundError, match="no 'val' shards"):
        tfrecord.shard_arrays(tmp_path, "val", wanted)
