"""Reading Tiny ImageNet splits where the files are, with clear errors for broken layouts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from conftest import ArchiveServer, md5, mini_archive
from dlnotes import data
from dlnotes.data import imagenet_classes, selection, synthetic
from dlnotes.runtime import profiles


def test_train_split_reads_every_class_in_wnids_order(tiny_imagenet: Path) -> None:
    paths, labels, class_ids = data.read_split(tiny_imagenet, "train")
    assert class_ids == data.read_class_ids(tiny_imagenet)
    assert len(paths) == len(labels)
    assert set(labels.tolist()) == set(range(len(class_ids)))
    for path, label in zip(paths, labels, strict=True):
        assert Path(path).parent.parent.name == class_ids[label]
        assert Path(path).suffix == ".JPEG"


def test_val_labels_come_from_the_annotations(tiny_imagenet: Path) -> None:
    paths, labels, class_ids = data.read_split(tiny_imagenet, "val")
    annotations = {}
    for line in (tiny_imagenet / "val" / "val_annotations.txt").read_text().splitlines():
        name, wnid = line.split("\t")[:2]
        annotations[name] = wnid
    assert len(paths) == len(annotations)
    for path, label in zip(paths, labels, strict=True):
        assert class_ids[label] == annotations[Path(path).name]


def test_test_split_is_unlabelled(tiny_imagenet: Path) -> None:
    paths, labels, _ = data.read_split(tiny_imagenet, "test")
    assert labels is None and paths


def test_mini_archive_counts(tiny_imagenet: Path, real_mini_archive: bool) -> None:
    if not real_mini_archive:
        pytest.skip("the real mini archive is absent (CI requires it)")
    class_ids = data.read_class_ids(tiny_imagenet)
    assert len(class_ids) == 10  # see shared/data/README.md
    assert len(data.read_split(tiny_imagenet, "train").paths) == 1000
    assert len(data.read_split(tiny_imagenet, "val").paths) == 500
    assert len(data.read_split(tiny_imagenet, "test").paths) == 100
    assert data.read_class_names(tiny_imagenet)[class_ids.index("n01443537")] == "goldfish"


def test_stray_files_and_box_files_are_ignored(tiny_imagenet_copy: Path) -> None:
    before = data.read_split(tiny_imagenet_copy, "train").paths
    first_class = data.read_class_ids(tiny_imagenet_copy)[0]
    images = tiny_imagenet_copy / "train" / first_class / "images"
    (images / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (images / "Thumbs.db").write_bytes(b"x")
    (images / "notes.txt").write_text("x")
    after = data.read_split(tiny_imagenet_copy, "train").paths
    assert after == before
    assert not any(p.endswith("_boxes.txt") for p in after)


def test_class_names_fall_back_to_ids(tiny_imagenet_copy: Path) -> None:
    (tiny_imagenet_copy / "words.txt").write_text("n00001740\tentity\n")
    class_ids = data.read_class_ids(tiny_imagenet_copy)
    assert data.read_class_names(tiny_imagenet_copy) == class_ids


def test_any_number_of_classes_works(tmp_path: Path) -> None:
    root = synthetic.write_tiny_imagenet(
        tmp_path, num_classes=3, train_per_class=2, val_per_class=1
    )
    paths, labels, class_ids = data.read_split(root, "train")
    assert len(class_ids) == 3 and len(paths) == 6
    np.testing.assert_array_equal(labels, [0, 0, 1, 1, 2, 2])


def test_wrong_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        FileNotFoundError,
        match=r"not a Tiny ImageNet root: .*wnids.txt is missing \(the folder does not exist\)",
    ):
        data.read_split(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match="DLNOTES_DATA_DIR"):
        data.read_split(tmp_path, "train")


def test_unknown_split(tiny_imagenet: Path) -> None:
    with pytest.raises(ValueError, match="unknown split 'validation'"):
        data.read_split(tiny_imagenet, "validation")


def test_missing_annotations_file(tiny_imagenet_copy: Path) -> None:
    (tiny_imagenet_copy / "val" / "val_annotations.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"val_annotations.txt is missing"):
        data.read_split(tiny_imagenet_copy, "val")


def test_annotation_with_unknown_class(tiny_imagenet_copy: Path) -> None:
    annotations = tiny_imagenet_copy / "val" / "val_annotations.txt"
    lines = annotations.read_text().splitlines()
    name = lines[1].split("\t")[0]
    lines[1] = f"{name}\tn99999999\t0\t0\t10\t10"
    annotations.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        ValueError, match=rf"val_annotations.txt:2: class 'n99999999' of {name} is not in wnids.txt"
    ):
        data.read_split(tiny_imagenet_copy, "val")


def test_annotation_naming_a_missing_image(tiny_imagenet_copy: Path) -> None:
    annotations = tiny_imagenet_copy / "val" / "val_annotations.txt"
    first = annotations.read_text().splitlines()[0].split("\t")[0]
    (tiny_imagenet_copy / "val" / "images" / first).unlink()
    with pytest.raises(
        FileNotFoundError, match=rf"val_annotations.txt:1: image not found: .*{first}"
    ):
        data.read_split(tiny_imagenet_copy, "val")


def test_malformed_annotation_line(tiny_imagenet_copy: Path) -> None:
    annotations = tiny_imagenet_copy / "val" / "val_annotations.txt"
    annotations.write_text("just-a-name\n")
    with pytest.raises(ValueError, match=r"val_annotations.txt:1: expected"):
        data.read_split(tiny_imagenet_copy, "val")


def test_missing_class_folder(tiny_imagenet_copy: Path) -> None:
    wnids = tiny_imagenet_copy / "wnids.txt"
    wnids.write_text(wnids.read_text() + "n12345678\n")
    with pytest.raises(FileNotFoundError, match=r"image folder not found: .*n12345678"):
        data.read_split(tiny_imagenet_copy, "train")


def test_bad_wnids_files(tiny_imagenet_copy: Path) -> None:
    wnids = tiny_imagenet_copy / "wnids.txt"
    first = wnids.read_text().split()[0]
    wnids.write_text(wnids.read_text() + first + "\n")
    with pytest.raises(ValueError, match=f"more than once: \\['{first}'\\]"):
        data.read_class_ids(tiny_imagenet_copy)
    wnids.write_text("\n")
    with pytest.raises(ValueError, match="lists no classes"):
        data.read_class_ids(tiny_imagenet_copy)
    (tiny_imagenet_copy / "words.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"words.txt"):
        data.read_class_names(tiny_imagenet_copy, ["n1"])


def _write_manifest(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", "wnid", "confidence"])
        writer.writeheader()
        writer.writerows(rows)


def test_labels_csv_makes_the_test_split_labelled(tiny_imagenet: Path, tmp_path: Path) -> None:
    test_paths = data.read_split(tiny_imagenet, "test").paths[:3]
    class_ids = data.read_class_ids(tiny_imagenet)
    manifest = tmp_path / "labels.csv"
    _write_manifest(
        manifest,
        [{"path": p, "wnid": class_ids[i], "confidence": "0.9"} for i, p in enumerate(test_paths)],
    )
    paths, labels, _ = data.read_split(tiny_imagenet, "test", labels_csv=manifest)
    assert paths == test_paths
    np.testing.assert_array_equal(labels, [0, 1, 2])


def test_labels_csv_errors(tiny_imagenet: Path, tmp_path: Path) -> None:
    manifest = tmp_path / "labels.csv"
    with pytest.raises(FileNotFoundError, match="label manifest not found"):
        data.read_labels_csv(manifest, ["n1"])
    manifest.write_text("file,label\nx,y\n")
    with pytest.raises(ValueError, match=r"header lacks column\(s\) \['path', 'wnid'\]"):
        data.read_labels_csv(manifest, ["n1"])
    _write_manifest(manifest, [{"path": "x.JPEG", "wnid": "n2", "confidence": "1"}])
    with pytest.raises(ValueError, match=r"labels.csv:2: class 'n2' is not in wnids.txt"):
        data.read_labels_csv(manifest, ["n1"])
    _write_manifest(manifest, [{"path": "missing.JPEG", "wnid": "n1", "confidence": "1"}])
    with pytest.raises(FileNotFoundError, match=r"labels.csv:2: image not found"):
        data.read_labels_csv(manifest, ["n1"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes must be at least 2, got 1"),
        ({"train_per_class": 0}, "train_per_class must be at least 1, got 0"),
        ({"test_images": -1}, "test_images must be non-negative, got -1"),
    ],
)
def test_synthetic_writer_rejects_bad_counts(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        synthetic.write_tiny_imagenet(tmp_path, **kwargs)


def test_synthetic_dataset_has_the_traps(tmp_path: Path) -> None:
    from PIL import Image

    root = synthetic.write_tiny_imagenet(tmp_path, num_classes=2, train_per_class=3)
    first_class = data.read_class_ids(root)[0]
    assert (root / "train" / first_class / "images" / ".DS_Store").exists()
    modes = set()
    for path in data.read_split(root, "train").paths:
        with Image.open(path) as image:
            modes.add(image.mode)
    assert modes == {"L", "RGB"}


def test_find_root_prefers_the_configured_dataset(tiny_imagenet: Path, capsys) -> None:
    assert data.find_root() == tiny_imagenet
    assert str(tiny_imagenet) in capsys.readouterr().out


@pytest.fixture
def empty_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No DLNOTES_DATA_DIR and an empty cache: the state of a fresh machine."""
    monkeypatch.delenv("DLNOTES_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "dlnotes"


def test_find_root_downloads_into_an_empty_cache_once(
    empty_cache: Path, server: ArchiveServer, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    archive = mini_archive().read_bytes() if mini_archive().is_file() else None
    if archive is None:
        pytest.skip("needs the real mini archive")
    server.files["/mirror/tiny.zip"] = archive
    monkeypatch.setenv("DLNOTES_DATA_URL", server.url("/mirror/tiny.zip"))
    monkeypatch.setenv("DLNOTES_DATA_MD5", md5(archive))
    root = data.find_root(profiles.Profile("smoke", "test"))
    assert root == empty_cache / "tiny-imagenet-200"
    assert "downloading it once from http://127.0.0.1" in capsys.readouterr().out
    subset = data.profile_subset(root, "smoke")
    assert len(data.read_split(root, "train", subset=subset).paths) == 1000
    assert data.find_root(profiles.Profile("full", "test")) == root  # present now: no download
    assert server.requests == ["/mirror/tiny.zip"]


def test_find_root_falls_back_to_a_synthetic_stand_in_only_when_the_download_fails(
    empty_cache: Path, server: ArchiveServer, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("DLNOTES_DATA_URL", server.url("/missing.zip"))
    monkeypatch.setenv("DLNOTES_DATA_MD5", "0" * 32)
    root = data.find_root(profiles.Profile("smoke", "test"))
    out = capsys.readouterr().out
    assert server.requests == ["/missing.zip"]  # it tried the download first
    assert "SYNTHETIC" in out and "WARNING, stand-in: synthetic images" in out
    assert "dlnotes-download" in out and "meaningless" in out
    class_ids = data.read_class_ids(root)
    assert len(class_ids) == 10 and set(class_ids) <= set(imagenet_classes.imagenet_wnids())
    assert len(data.read_split(root, "train").paths) == 1000
    assert data.find_root(profiles.Profile("smoke", "test"), announce=False) == root  # reused
    assert not list(empty_cache.glob(".*partial*"))
    assert not (empty_cache / "tiny-imagenet-200").exists()
    with pytest.raises(FileNotFoundError, match=r"download failed .*Run dlnotes-download"):
        data.find_root(profiles.Profile("full", "test"))


def test_pixel_stats_match_numpy_in_bounded_memory() -> None:
    images = np.random.default_rng(0).integers(0, 256, (50, 5, 4, 3), dtype=np.uint8)
    mean, std = data.pixel_stats(images, chunk=7)
    flat = images.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(mean, flat.mean(axis=0))
    np.testing.assert_allclose(std, flat.std(axis=0))
    with pytest.raises(ValueError, match=r"uint8 array, got float64 \(2, 2\)"):
        data.pixel_stats(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="chunk must be at least 1, got 0"):
        data.pixel_stats(images, chunk=0)


def test_load_images_in_several_processes_matches_one(tiny_imagenet: Path) -> None:
    paths = data.read_split(tiny_imagenet, "train").paths
    paths = (paths * (4200 // len(paths) + 1))[:4200]  # more than two chunks of 2,048
    serial = data.load_images(paths)
    parallel = data.load_images(paths, workers=2)
    np.testing.assert_array_equal(serial, parallel)
    with pytest.raises(ValueError, match="workers must be at least 1, got 0"):
        data.load_images(paths, workers=0)


DECODE_FOREVER = """
import sys
from dlnotes import data

paths = data.read_split(sys.argv[1], "train").paths * 200  # about a minute of decoding
print("decoding", flush=True)
data.load_images(paths, workers=2)
"""


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(child) for child in (task / "children").read_text().split()}
    return found


def _alive(pid: int) -> bool:
    """Running (not gone, not a zombie waiting for a parent that is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux's /proc")
def test_decoding_processes_die_with_a_killed_parent(tiny_imagenet: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    parent = subprocess.Popen(
        [sys.executable, "-c", DECODE_FOREVER, str(tiny_imagenet)],
        stdout=subprocess.PIPE,
        text=True,
    )
    children: set[int] = set()
    try:
        assert parent.stdout is not None and parent.stdout.readline() == "decoding\n"
        deadline = time.monotonic() + 60
        while len(children) < 3 and time.monotonic() < deadline:  # 2 workers, resource tracker
            children = _children(parent.pid)
            time.sleep(0.05)
        assert len(children) == 3, children
        time.sleep(0.5)  # the workers are decoding
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in children if _alive(pid)], "orphans of a killed parent"
    finally:  # orphans would hold the pipe open: they go first
        parent.kill()
        for pid in children:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        parent.communicate()


def test_find_root_rejects_a_mirror_without_checksum(
    empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DLNOTES_DATA_URL", "http://127.0.0.1:9/tiny.zip")
    monkeypatch.delenv("DLNOTES_DATA_MD5", raising=False)
    with pytest.raises(ValueError, match="set both DLNOTES_DATA_URL and DLNOTES_DATA_MD5"):
        data.find_root(profiles.Profile("smoke", "test"))


@pytest.fixture(scope="module")
def many_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic root with more classes and images than the smoke profile reads."""
    return synthetic.write_tiny_imagenet(
        tmp_path_factory.mktemp("many"),
        num_classes=23,
        train_per_class=3,
        val_per_class=2,
        test_images=5,
    )


def test_smoke_subset_spreads_over_the_sorted_classes_deterministically(
    many_classes: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(selection, "SMOKE_TRAIN_PER_CLASS", 2)
    monkeypatch.setattr(selection, "SMOKE_TEST_IMAGES", 4)
    subset = data.smoke_subset(many_classes)
    ordered = sorted(data.read_class_ids(many_classes))
    assert subset.classes == tuple(ordered[i * 23 // 10] for i in range(10))
    assert subset == data.profile_subset(many_classes, profiles.Profile("smoke", "test"))
    assert (subset.max_per_class, subset.max_test) == (2, 4)
    train = data.read_split(many_classes, "train", subset=subset)
    assert len(train.class_ids) == 10 and len(train.paths) == 20
    np.testing.assert_array_equal(np.bincount(train.labels), [2] * 10)
    assert data.profile_subset(many_classes, "full") == data.Subset()


def test_subset_reads_only_the_kept_classes_in_wnids_order(many_classes: Path) -> None:
    all_ids = data.read_class_ids(many_classes)
    subset = data.Subset(classes=(all_ids[5], all_ids[1]), max_per_class=2, max_test=3)
    train = data.read_split(many_classes, "train", subset=subset)
    assert train.class_ids == [all_ids[1], all_ids[5]]
    assert train.labels.tolist() == [0, 0, 1, 1]
    assert [Path(p).parent.parent.name for p in train.paths] == [all_ids[1]] * 2 + [all_ids[5]] * 2
    everything = data.read_split(many_classes, "train")
    first_two = [p for p in everything.paths if f"/{all_ids[1]}/" in p][:2]
    assert train.paths[:2] == first_two  # the first images in file-name order
    val = data.read_split(many_classes, "val", subset=subset)
    full_val = data.read_split(many_classes, "val")
    kept = [
        (p, full_val.class_ids[label])
        for p, label in zip(full_val.paths, full_val.labels, strict=True)
        if full_val.class_ids[label] in subset.classes
    ]
    assert val.paths == [p for p, _ in kept]  # every val image of the kept classes, none else
    assert [val.class_ids[label] for label in val.labels] == [wnid for _, wnid in kept]
    test = data.read_split(many_classes, "test", subset=subset)
    assert test.paths == data.read_split(many_classes, "test").paths[:3]


def test_small_roots_are_read_whole_in_smoke(tiny_imagenet: Path) -> None:
    subset = data.profile_subset(tiny_imagenet, "smoke")
    assert subset.classes is None
    assert data.read_split(tiny_imagenet, "val", subset=subset).paths == (
        data.read_split(tiny_imagenet, "val").paths
    )


def test_subset_describes_itself() -> None:
    assert data.Subset().describe() == "all classes, all images"
    assert (
        data.Subset(("n1", "n2"), 100, 7).describe()
        == "2 classes, ≤ 100 training images each, ≤ 7 test images"
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"classes": ()}, "at least one class"),
        ({"classes": ("n1", "n1")}, "more than once"),
        ({"max_per_class": 0}, "max_per_class must be a positive integer or None, got 0"),
        ({"max_test": 2.5}, "max_test must be a positive integer or None, got 2.5"),
    ],
)
def test_subset_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        data.Subset(**kwargs)


def test_subset_naming_an_unknown_class_is_an_error(tiny_imagenet: Path) -> None:
    with pytest.raises(ValueError, match=r"wnids.txt lacks: \['n99999999'\]"):
        data.read_split(tiny_imagenet, "train", subset=data.Subset(classes=("n99999999",)))
