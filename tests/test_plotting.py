from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from dlnotes.book import plotting


def test_plot_history_draws_train_and_validation_curves() -> None:
    history = {"loss": [2.0, 1.0, 0.5], "val_loss": [2.1, 1.4, 1.2], "accuracy": [0.1, 0.5, 0.8]}
    fig = plotting.plot_history(history, ["loss", "accuracy"], title="t")
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["train", "validation"]
    assert [line.get_label() for line in acc_ax.get_lines()] == ["train"]
    np.testing.assert_allclose(loss_ax.get_lines()[1].get_ydata(), [2.1, 1.4, 1.2])
    plt.close(fig)


def test_plot_history_accepts_a_keras_history_like_object() -> None:
    class History:
        def __init__(self) -> None:
            self.history = {"loss": [1.0, 0.5]}

    fig = plotting.plot_history(History(), ["loss"])
    assert len(fig.axes) == 1
    plt.close(fig)


def test_plot_history_names_missing_metrics() -> None:
    with pytest.raises(ValueError, match=r"\['accuracy'\] not in history"):
        plotting.plot_history({"loss": [1.0]}, ["accuracy"])
    with pytest.raises(ValueError, match="at least one metric"):
        plotting.plot_history({"loss": [1.0]}, [])


def test_image_grid_shapes_and_titles() -> None:
    images = [np.zeros((8, 8)), np.ones((8, 8, 1)), np.full((8, 8, 3), 255, np.uint8)]
    fig = plotting.image_grid(images, ["a", "b", "c"], ncols=2)
    assert len(fig.axes) == 4  # 2 × 2 grid, the last cell empty
    assert [ax.get_title() for ax in fig.axes[:3]] == ["a", "b", "c"]
    plt.close(fig)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"images": []}, "at least one image"),
        ({"images": [np.zeros((2, 2))], "ncols": 0}, "ncols must be at least 1, got 0"),
        ({"images": [np.zeros((2, 2))], "titles": ["a", "b"]}, "2 titles for 1 images"),
    ],
)
def test_image_grid_rejects_bad_input(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        plotting.image_grid(**kwargs)


def test_plot_runs_draws_train_dashed_and_validation_solid() -> None:
    runs = {
        "a": {"accuracy": [0.1, 0.2], "val_accuracy": [0.1, 0.15], "loss": [2.0, 1.5]},
        "b": {"val_accuracy": [0.2, 0.3, 0.4]},
    }
    fig = plotting.plot_runs(runs, ["accuracy", "loss"], title="t")
    accuracy, loss = fig.axes
    styles = sorted((line.get_label(), line.get_linestyle()) for line in accuracy.get_lines())
    assert styles == [("a, train", "--"), ("a, validation", "-"), ("b, validation", "-")]
    assert [line.get_label() for line in loss.get_lines()] == ["a, train"]
    with pytest.raises(ValueError, match="no run has the metric 'top5'"):
        plotting.plot_runs(runs, ["top5"])
    with pytest.raises(ValueError, match="need at least one run and one metric"):
        plotting.plot_runs({}, ["loss"])


def test_confusion_matrix_plot_shows_counts_and_names() -> None:
    from dlnotes.theory import evaluation

    matrix = evaluation.confusion_matrix(np.array([0, 0, 1, 2]), np.array([0, 1, 1, 1]), 3)
    fig = plotting.plot_confusion_matrix(matrix, ["cat", "dog", "fox"], title="t")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["cat", "dog", "fox"]
    assert sorted(t.get_text() for t in ax.texts) == ["1", "1", "1", "1"]
    with pytest.raises(ValueError, match="got 2 names for 3 classes"):
        plotting.plot_confusion_matrix(matrix, ["cat", "dog"])
    plt.close("all")


def test_reliability_plot_has_a_bar_per_filled_bin() -> None:
    from dlnotes.theory import evaluation

    result = evaluation.reliability(np.array([0.15, 0.82, 0.85]), np.array([0, 1, 0], bool), 10)
    fig = plotting.plot_reliability(result)
    top, bottom = fig.axes
    assert len(top.patches) == 2 and len(bottom.patches) == 10
    assert "0.273" in top.get_title()  # the ECE: (0.15 + 2·|0.5 − 0.835|) / 3
    plt.close("all")
