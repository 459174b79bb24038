"""Pseudo-labelling with a local SavedModel standing in for the TF Hub MobileNetV2."""

from __future__ import annotations

import csv
import hashlib
import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from conftest import ArchiveServer, decompression_bomb, pretrained_dir, run_script, tiff_image
from dlnotes import data, runtime
from dlnotes.data import imagenet_classes, synthetic
from dlnotes.models import hub
from dlnotes.models.hub import cli
from dlnotes.runtime import paths

REPO = Path(__file__).resolve().parents[1]
SMALL_INPUT = 96  # keeps the tests fast; the real model takes 224


def test_mapping_table_has_1000_unique_ids_in_order() -> None:
    wnids = imagenet_classes.imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids))
    assert wnids == sorted(wnids)
    assert wnids[0] == "n01440764" and wnids[1] == "n01443537"  # tench, goldfish


def test_every_class_of_the_data_set_is_an_imagenet_class(tiny_imagenet: Path) -> None:
    class_ids = data.read_class_ids(tiny_imagenet)
    indices = imagenet_classes.class_logit_indices(class_ids)
    wnids = imagenet_classes.imagenet_wnids()
    assert [wnids[i - 1] for i in indices] == class_ids  # background offset 1
    assert list(imagenet_classes.class_logit_indices(class_ids, background_offset=0)) == [
        i - 1 for i in indices
    ]


def test_unknown_classes_are_named() -> None:
    with pytest.raises(ValueError, match=r"not in ImageNet-1k.*n99999999"):
        imagenet_classes.class_logit_indices(["n01443537", "n99999999"])


def test_restricted_prediction_ignores_other_classes() -> None:
    logits = np.full((2, 1001), -5.0)
    logits[0, 500] = 50.0  # a class outside the dataset wins overall…
    logits[0, 2] = 1.0  # …but among the dataset's classes (indices 2 and 3) class 0 wins
    logits[1, 3] = 2.0
    labels, confidence = imagenet_classes.restrict_predictions(logits, np.array([2, 3]))
    assert labels.tolist() == [0, 1]
    assert confidence[0] == pytest.approx(1 / (1 + np.exp(-6.0)))
    with pytest.raises(ValueError, match="class indices must lie"):
        imagenet_classes.restrict_predictions(logits, np.array([1001]))
    with pytest.raises(ValueError, match=r"shape \(N, outputs\)"):
        imagenet_classes.restrict_predictions(logits[0], np.array([2]))


def test_threshold_curve() -> None:
    accuracy, coverage = hub.threshold_curve(
        np.array([True, False, True, True]), np.array([0.9, 0.2, 0.6, 0.4]), [0.0, 0.5, 0.95]
    )
    np.testing.assert_allclose(coverage, [1.0, 0.5, 0.0])
    np.testing.assert_allclose(accuracy[:2], [0.75, 1.0])
    assert np.isnan(accuracy[2])


@pytest.fixture(scope="module")
def standin(tiny_imagenet: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    train = data.read_split(tiny_imagenet, "train")
    folder = tmp_path_factory.mktemp("hub") / "standin"
    return hub.export_standin_classifier(
        folder,
        data.load_images(train.paths),
        train.labels,
        train.class_ids,
        epochs=6,
        input_size=SMALL_INPUT,
    )


def test_standin_loads_and_predicts_through_the_same_loader(
    standin: Path, tiny_imagenet: Path
) -> None:
    classifier = hub.load_classifier(str(standin), input_size=SMALL_INPUT)
    logits = classifier(np.zeros((2, SMALL_INPUT, SMALL_INPUT, 3), "float32")).numpy()
    assert logits.shape == (2, 1001)
    val = data.read_split(tiny_imagenet, "val")
    labels, confidence = hub.predict_split(
        classifier, val.paths, imagenet_classes.class_logit_indices(val.class_ids)
    )
    assert labels.shape == confidence.shape == (len(val.paths),)
    assert np.all((confidence > 0) & (confidence <= 1))
    assert np.mean(labels == val.labels) > 1.5 / len(val.class_ids)  # learned something


@pytest.mark.slow
def test_cli_writes_a_manifest_that_read_split_accepts(
    standin: Path, tiny_imagenet: Path, tmp_path: Path
) -> None:
    out = tmp_path / "labels.csv"
    before = sorted(p.name for p in (tiny_imagenet / "test" / "images").iterdir())
    result = run_script(
        REPO / "data_scripts" / "pseudo_label.py",
        *("--data-dir", tiny_imagenet, "--split", "test", "--model", standin, "--out", out),
        *("--threshold", "0.15", "--batch-size", "32", "--input-size", SMALL_INPUT),
    )
    assert result.returncode == 0, result.stderr
    with out.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert rows and all(float(r["confidence"]) >= 0.15 for r in rows)
    assert f"wrote {len(rows)} rows" in result.stdout
    paths, labels, class_ids = data.read_split(tiny_imagenet, "test", labels_csv=out)
    assert len(paths) == len(rows) and labels.max() < len(class_ids)
    assert (
        sorted(p.name for p in (tiny_imagenet / "test" / "images").iterdir()) == before
    )  # nothing moved


@pytest.mark.slow
def test_cli_errors(tiny_imagenet: Path, tmp_path: Path) -> None:
    script = REPO / "data_scripts" / "pseudo_label.py"
    common = ("--data-dir", tiny_imagenet, "--model", tmp_path, "--out", tmp_path / "x.csv")
    missing = run_script(script, *common)
    assert missing.returncode == 1 and "not a SavedModel folder" in missing.stderr
    bad = run_script(script, *common, "--threshold", "2")
    assert bad.returncode == 1 and "--threshold must be in [0, 1]" in bad.stderr


@pytest.mark.slow
def test_cli_names_truncated_and_empty_images(
    standin: Path, tiny_imagenet_copy: Path, tmp_path: Path
) -> None:
    test_images = sorted((tiny_imagenet_copy / "test" / "images").iterdir())
    truncated, empty = test_images[3], test_images[-1]
    truncated.write_bytes(truncated.read_bytes()[:300])
    empty.write_bytes(b"")
    out = tmp_path / "labels.csv"
    result = run_script(
        REPO / "data_scripts" / "pseudo_label.py",
        *("--data-dir", tiny_imagenet_copy, "--split", "test", "--model", standin, "--out", out),
        *("--input-size", SMALL_INPUT),
    )
    assert result.returncode == 1
    assert "2 unreadable image file(s)" in result.stderr
    assert str(truncated) in result.stderr and str(empty) in result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()


def test_cli_names_a_tiff_named_jpeg_and_a_bomb_and_a_wrong_input_size(
    standin: Path, tiny_imagenet_copy: Path, tmp_path: Path, capsys
) -> None:
    test_images = sorted((tiny_imagenet_copy / "test" / "images").iterdir())
    tiff, bomb = test_images[5], test_images[9]
    tiff.write_bytes(tiff_image())
    bomb.write_bytes(decompression_bomb())
    out = tmp_path / "labels.csv"
    arguments = ["--data-dir", str(tiny_imagenet_copy), "--model", str(standin), "--out", str(out)]
    code = cli.main([*arguments, "--input-size", str(SMALL_INPUT)])
    error = capsys.readouterr().err
    assert code == 1 and "2 unreadable image file(s)" in error, error
    assert f"{tiff}: holds a TIFF image, not JPEG as its name says" in error
    assert f"{bomb}: refused as a possible decompression bomb" in error
    for path in (tiff, bomb):
        path.unlink()
    code = cli.main([*arguments, "--input-size", "64"])
    error = capsys.readouterr().err
    assert code == 1, error
    assert f"the model {standin} takes images of 96×96 pixels, not 64×64" in error
    assert "--input-size 96" in error
    assert not out.exists()
    # A model whose signature could not be read fails at its first batch, with the same advice.
    module = hub.load_classifier(str(standin), input_size=SMALL_INPUT).module
    unchecked = hub.Classifier(str(standin), 64, module)
    with pytest.raises(ValueError, match=r"does not take images of 64×64 pixels .*--input-size"):
        hub.predict_logits(unchecked, [str(p) for p in test_images[:3]])


def test_manifest_writer_checks_its_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        hub.write_manifest(
            tmp_path / "x.csv", ["a"], np.array([0]), np.array([0.5]), ["n1"], threshold=1.5
        )
    with pytest.raises(ValueError, match="got 1 paths, 2 labels"):
        hub.write_manifest(tmp_path / "x.csv", ["a"], np.array([0, 1]), np.array([0.5]), ["n1"])
    assert not list(tmp_path.iterdir())


def test_standin_export_refuses_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileExistsError, match="exists already"):
        hub.export_standin_classifier(
            tmp_path, np.zeros((1, 8, 8, 3), "uint8"), np.array([0]), ["n01443537"]
        )


def test_an_export_appears_whole_and_clears_what_a_killed_export_left(tmp_path: Path) -> None:
    abandoned = tmp_path / ".standin.partial-killed"  # a staging folder whose process died
    (abandoned / "model").mkdir(parents=True)
    folder = hub.export_standin_classifier(
        tmp_path / "standin",
        np.zeros((2, 8, 8, 3), "uint8"),
        np.array([0, 1]),
        ["n01440764", "n01443537"],
        epochs=1,
        input_size=32,
    )
    assert (folder / "saved_model.pb").is_file()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["standin"]


@pytest.fixture(scope="module")
def offline_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """An empty dlnotes cache for this module, with the real pretrained weights configured."""
    if pretrained_dir() is None:
        pytest.skip("needs the real MobileNetV2 weights (../shared/models)")
    cache = tmp_path_factory.mktemp("xdg-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        patch.setenv("DLNOTES_PRETRAINED_DIR", str(pretrained_dir()))
        yield cache / "dlnotes"


@pytest.fixture(scope="module")
def offline_model(offline_cache: Path) -> Path:
    return hub.cached_hub_convention_classifier(paths.pretrained_file(paths.MOBILENET_V2_WEIGHTS))


def test_offline_classifier_is_called_like_the_hub_one(offline_model: Path) -> None:
    keras = runtime.import_quietly("keras")
    classifier = hub.load_classifier(str(offline_model))
    images = np.random.default_rng(0).uniform(0, 1, (3, 224, 224, 3)).astype("float32")
    logits = np.asarray(classifier(images))
    assert logits.shape == (3, 1001) and logits.dtype == np.float32
    network = keras.applications.MobileNetV2(
        weights=str(paths.pretrained_file(paths.MOBILENET_V2_WEIGHTS)), classifier_activation=None
    )
    expected = network.predict(
        keras.applications.mobilenet_v2.preprocess_input(images * 255.0), verbose=0
    )
    np.testing.assert_allclose(logits[:, 1:], expected, atol=1e-3)  # ImageNet class k at k + 1
    np.testing.assert_array_equal(logits[:, 0], logits[:, 1:].min(axis=1))  # background never wins


def test_offline_classifier_is_exported_once_per_weights_file(
    offline_model: Path, offline_cache: Path
) -> None:
    weights = paths.pretrained_file(paths.MOBILENET_V2_WEIGHTS)
    assert offline_model.parent == offline_cache / "models"
    assert hashlib.sha256(weights.read_bytes()).hexdigest()[:16] in offline_model.name
    stamp = (offline_model / "saved_model.pb").stat().st_mtime_ns
    assert hub.cached_hub_convention_classifier(weights) == offline_model
    assert (offline_model / "saved_model.pb").stat().st_mtime_ns == stamp
    assert not list(offline_model.parent.glob(".*partial*"))
    with pytest.raises(FileExistsError, match="exists already"):
        hub.export_hub_convention_classifier(weights, offline_model)


def test_pretrained_classifier_labels_real_images(offline_model: Path, tiny_imagenet: Path) -> None:
    classifier = hub.load_pretrained_classifier()
    assert "mobilenet_v2_1.0_224.weights.h5" in classifier.description
    val = data.read_split(tiny_imagenet, "val")
    if len(val.class_ids) != 10:
        pytest.skip("accuracy is checked on the real mini archive")
    keep = np.concatenate([np.flatnonzero(val.labels == c)[:10] for c in range(10)])
    labels, _ = hub.predict_split(
        classifier,
        [val.paths[i] for i in keep],
        imagenet_classes.class_logit_indices(val.class_ids),
    )
    assert np.mean(labels == val.labels[keep]) >= 0.5  # 72 % on all 500 (chance: 10 %)


def test_pretrained_classifier_loads_a_hub_handle(
    offline_model: Path, server: ArchiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(offline_model.rglob("*")):
            archive.add(path, arcname=str(path.relative_to(offline_model)), recursive=False)
    server.files["/models/mobilenet-v2/4?tf-hub-format=compressed"] = buffer.getvalue()
    monkeypatch.delenv("DLNOTES_PRETRAINED_DIR")
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    handle = server.url("/models/mobilenet-v2/4")
    online = hub.load_pretrained_classifier(handle)
    assert online.source == handle
    images = np.random.default_rng(1).uniform(0, 1, (2, 224, 224, 3)).astype("float32")
    offline = hub.load_classifier(str(offline_model))
    np.testing.assert_allclose(np.asarray(online(images)), np.asarray(offline(images)), atol=1e-5)


def test_no_pretrained_classifier_is_a_clear_error(
    server: ArchiveServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DLNOTES_PRETRAINED_DIR", raising=False)
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    with pytest.raises(paths.PretrainedUnavailable, match="DLNOTES_PRETRAINED_DIR is not set"):
        hub.load_pretrained_classifier(server.url("/no/such/model"))
    monkeypatch.setenv("DLNOTES_PRETRAINED_DIR", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"holds no mobilenet_v2_1\.0_224\.weights\.h5"):
        hub.load_pretrained_classifier()


def test_toy_classifier_says_it_is_a_stand_in(tmp_path: Path, capsys) -> None:
    root = synthetic.write_tiny_imagenet(tmp_path / "data", num_classes=3, train_per_class=4)
    classifier = hub.toy_classifier(tmp_path / "toy", root, reason="no network", epochs=1)
    out = capsys.readouterr().out
    assert "WARNING, stand-in: a small classifier trained here" in out and "no network" in out
    assert "DLNOTES_PRETRAINED_DIR" in out
    assert "stand-in" in classifier.description
    assert np.asarray(classifier(np.zeros((1, 224, 224, 3), "float32"))).shape == (1, 1001)
