"""Pseudo-labelling with a local SavedModel standing in for the TF Hub MobileNetV2."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from conftest import run_script

from dlnotes import data, hub

REPO = Path(__file__).resolve().parents[1]
SMALL_INPUT = 96  # keeps the tests fast; the real model takes 224


def test_mapping_table_has_1000_unique_ids_in_order() -> None:
    wnids = hub.imagenet_wnids()
    assert len(wnids) == 1000 == len(set(wnids))
    assert wnids == sorted(wnids)
    assert wnids[0] == "n01440764" and wnids[1] == "n01443537"  # tench, goldfish


def test_every_class_of_the_data_set_is_an_imagenet_class(tiny_imagenet: Path) -> None:
    class_ids = data.read_class_ids(tiny_imagenet)
    indices = hub.class_logit_indices(class_ids)
    wnids = hub.imagenet_wnids()
    assert [wnids[i - 1] for i in indices] == class_ids  # background offset 1
    assert list(hub.class_logit_indices(class_ids, background_offset=0)) == [i - 1 for i in indices]


def test_unknown_classes_are_named() -> None:
    with pytest.raises(ValueError, match=r"not in ImageNet-1k.*n99999999"):
        hub.class_logit_indices(["n01443537", "n99999999"])


def test_restricted_prediction_ignores_other_classes() -> None:
    logits = np.full((2, 1001), -5.0)
    logits[0, 500] = 50.0  # a class outside the dataset wins overall…
    logits[0, 2] = 1.0  # …but among the dataset's classes (indices 2 and 3) class 0 wins
    logits[1, 3] = 2.0
    labels, confidence = hub.restrict_predictions(logits, np.array([2, 3]))
    assert labels.tolist() == [0, 1]
    assert confidence[0] == pytest.approx(1 / (1 + np.exp(-6.0)))
    with pytest.raises(ValueError, match="class indices must lie"):
        hub.restrict_predictions(logits, np.array([1001]))
    with pytest.raises(ValueError, match=r"shape \(N, outputs\)"):
        hub.restrict_predictions(logits[0], np.array([2]))


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
        classifier, val.paths, hub.class_logit_indices(val.class_ids)
    )
    assert labels.shape == confidence.shape == (len(val.paths),)
    assert np.all((confidence > 0) & (confidence <= 1))
    assert np.mean(labels == val.labels) > 1.5 / len(val.class_ids)  # learned something


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


def test_cli_errors(tiny_imagenet: Path, tmp_path: Path) -> None:
    script = REPO / "data_scripts" / "pseudo_label.py"
    common = ("--data-dir", tiny_imagenet, "--model", tmp_path, "--out", tmp_path / "x.csv")
    missing = run_script(script, *common)
    assert missing.returncode == 1 and "not a SavedModel folder" in missing.stderr
    bad = run_script(script, *common, "--threshold", "2")
    assert bad.returncode == 1 and "--threshold must be in [0, 1]" in bad.stderr


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
