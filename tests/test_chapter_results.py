"""What the executed chapters show: real results on real data, checked where a reader sees them.

The chapters run once per test run (conftest.py); these tests read their executed notebooks, so
the numbers checked here are the ones on the pages.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import pytest

pytestmark = pytest.mark.slow


def _printed(notebook: Path) -> str:
    nb = nbformat.read(notebook, as_version=4)
    return "".join(
        output.get("text", "")
        for cell in nb.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream"
    )


def _percent(text: str, label: str) -> float:
    match = re.search(re.escape(label) + r"\s*([\d.]+)%", text)
    assert match, f"{label!r} not printed"
    return float(match.group(1)) / 100


def test_the_training_chapter_learns_far_above_chance(executed_notebooks: dict[str, Path]) -> None:
    text = _printed(executed_notebooks["11_training.ipynb"])
    metrics = json.loads(next(line for line in text.splitlines() if line.startswith('{"val_top1"')))
    assert metrics["profile"] == "smoke" and metrics["epochs_completed"] > 0
    chance = 1 / metrics["num_classes"]
    assert metrics["val_top1_single_view"] >= 3 * chance, metrics
    assert metrics["val_top5"] > metrics["val_top1"]
    assert "→ ok: True" in text  # the initial-loss sanity check passes, in training mode
    assert "accuracy on the one batch it was trained on: 100%" in text


def test_transfer_learning_beats_training_from_scratch(executed_notebooks: dict[str, Path]) -> None:
    text = _printed(executed_notebooks["12_transfer_learning.ipynb"])
    assert "backbone weights: random initialisation" not in text
    tuned = _percent(text, "final validation accuracy, pretrained backbone, fine-tuned:")
    probe = _percent(text, "final validation accuracy, linear probe on pretrained features:")
    scratch = _percent(text, "final validation accuracy, same network trained from scratch:")
    assert tuned > 0.6 and probe > 0.6
    assert tuned > scratch + 0.3
    # The scratch baseline is evaluated with fresh batch-norm statistics: it has learned something
    # (not the exact chance level that stale moving averages give), and statistics from a subset
    # of the training images agree with those from all of them.
    assert scratch > 0.15, scratch
    subset, everything = map(
        float,
        re.search(
            r"statistics from \d+ training images: ([\d.]+)%; from all \d+: ([\d.]+)%", text
        ).groups(),  # type: ignore[union-attr]
    )
    assert abs(subset - everything) < 6, (subset, everything)
    assert "fine-tuned vs linear probe:" in text and "z = " in text  # the paired test is printed


def test_pseudo_labels_restricted_to_the_dataset_are_mostly_right(
    executed_notebooks: dict[str, Path],
) -> None:
    text = _printed(executed_notebooks["13_pseudo_labelling.ipynb"])
    assert _percent(text, "restricted to our classes, right:") > 0.6


CHECKS_PRINTED_TRUE = {
    "02_linear_classifiers.ipynb": [
        "mean within 4 standard errors of x: True",
        "variance within 4 standard errors of r/(1 − r)·x²: True",
        "at inference the output is the input: True",
    ],
    "03_computational_graphs.ipynb": [
        "forward mode's cost grows more with n than reverse mode's: True",
    ],
    "08_residual_backprop.ipynb": [
        "He keeps every stack's gradient within a factor 10 of its output size: True",
    ],
    "11_training.ipynb": [
        "within the safe range (3 to 50 times below): True",
        "→ agree: True",
    ],
    "12_transfer_learning.ipynb": [
        "→ agree: True",
        "; on average: True",
    ],
}


@pytest.mark.parametrize("notebook", sorted(CHECKS_PRINTED_TRUE))
def test_the_checks_the_prose_relies_on_hold(
    executed_notebooks: dict[str, Path], notebook: str
) -> None:
    # Each of these lines is a claim of the chapter's prose, checked on the page.
    text = _printed(executed_notebooks[notebook])
    for check in CHECKS_PRINTED_TRUE[notebook]:
        assert check in text, f"{notebook}: {check!r} not printed"
    assert "FAILED" not in text  # gradcheck.check_gradient prints FAILED before it raises


def test_the_calibration_bins_give_back_the_accuracy(executed_notebooks: dict[str, Path]) -> None:
    text = _printed(executed_notebooks["13_pseudo_labelling.ipynb"])
    bins, direct = re.search(r"from the bins ([\d.]+)%, directly ([\d.]+)%", text).groups()  # type: ignore[union-attr]
    assert bins == direct
