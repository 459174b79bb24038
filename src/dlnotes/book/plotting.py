"""Plots shared by several chapters: learning curves, image grids and error analysis."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from dlnotes.theory import evaluation


def plot_history(
    history: Mapping[str, Sequence[float]] | Any,
    metrics: Sequence[str] = ("loss", "accuracy"),
    *,
    title: str | None = None,
) -> Figure:
    """Plot training curves, one panel per metric, with the ``val_`` curve beside each.

    Args:
        history: A ``keras.callbacks.History`` (its ``.history`` is used) or a mapping from
            metric name to per-epoch values, e.g. a CSV log read with ``csv.DictReader``.
        metrics: Metric names to plot; each must be present in ``history``.
        title: Optional figure title.

    Returns:
        The figure.

    Raises:
        ValueError: If ``metrics`` is empty or names a metric that is not in ``history``.
    """
    values = getattr(history, "history", history)
    if not metrics:
        raise ValueError("metrics must name at least one metric, got an empty sequence")
    missing = [m for m in metrics if m not in values]
    if missing:
        raise ValueError(f"metrics {missing} not in history (has {sorted(values)})")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        train = np.asarray(values[metric], dtype=float)
        epochs = np.arange(1, len(train) + 1)
        ax.plot(epochs, train, marker="o", markersize=3, label="train")
        if f"val_{metric}" in values:
            val = np.asarray(values[f"val_{metric}"], dtype=float)
            ax.plot(np.arange(1, len(val) + 1), val, marker="o", markersize=3, label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def image_grid(
    images: Sequence[Any] | np.ndarray,
    titles: Sequence[str] | None = None,
    *,
    ncols: int = 8,
    cmap: str | None = None,
    size: float = 1.6,
) -> Figure:
    """Show images in a grid with optional titles.

    Args:
        images: Images as arrays of shape (H, W), (H, W, 1) or (H, W, 3); uint8 in [0, 255] or
            floats in [0, 1].
        titles: One title per image, or None.
        ncols: Number of columns (at least 1).
        cmap: Colour map for single-channel images (default ``"gray"``).
        size: Size of one cell in inches.

    Returns:
        The figure.

    Raises:
        ValueError: If there are no images, ``ncols`` < 1, or the titles do not match the images.
    """
    images = list(images)
    if not images:
        raise ValueError("image_grid needs at least one image, got none")
    if ncols < 1:
        raise ValueError(f"ncols must be at least 1, got {ncols}")
    if titles is not None and len(titles) != len(images):
        raise ValueError(f"got {len(titles)} titles for {len(images)} images")
    ncols = min(ncols, len(images))
    nrows = -(-len(images) // ncols)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False
    )
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= len(images):
            continue
        image = np.asarray(images[index])
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        ax.imshow(image, cmap=(cmap or "gray") if image.ndim == 2 else None)
        if titles is not None:
            ax.set_title(titles[index], fontsize=8)
    fig.tight_layout()
    return fig


def plot_runs(
    runs: Mapping[str, Mapping[str, Sequence[float]]],
    metrics: Sequence[str] = ("accuracy", "loss"),
    *,
    title: str | None = None,
) -> Figure:
    """Compare several runs: one panel per metric, each run's training curve dashed and its
    validation curve solid in the same colour.

    Args:
        runs: ``{label: per-epoch log}``, e.g. histories read with
            :func:`dlnotes.training.read_log`. A metric a run lacks is skipped for that run.
        metrics: Metric names (the ``val_`` curve is drawn when present).
        title: Optional figure title.

    Returns:
        The figure.

    Raises:
        ValueError: If ``runs`` or ``metrics`` is empty, or no run has a requested metric.
    """
    if not runs or not metrics:
        raise ValueError(
            f"need at least one run and one metric, got {len(runs)} and {len(metrics)}"
        )
    for metric in metrics:
        if not any(metric in history or f"val_{metric}" in history for history in runs.values()):
            raise ValueError(f"no run has the metric {metric!r}")
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, metric in zip(axes[0], metrics, strict=True):
        for index, (label, history) in enumerate(runs.items()):
            for key, style, part in ((metric, "--", "train"), (f"val_{metric}", "-", "validation")):
                if key in history:
                    values = np.asarray(history[key], dtype=float)
                    ax.plot(
                        np.arange(1, len(values) + 1),
                        values,
                        style,
                        color=colours[index % len(colours)],
                        label=f"{label}, {part}",
                    )
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_confusion_matrix(
    matrix: np.ndarray, names: Sequence[str], *, title: str | None = None
) -> Figure:
    """Draw a confusion matrix, each row normalised by its class's examples, with the counts.

    Args:
        matrix: Square counts, row = true class (:func:`dlnotes.theory.evaluation.
            confusion_matrix`).
        names: One class name per row.
        title: Optional title.

    Returns:
        The figure.

    Raises:
        ValueError: If ``matrix`` is not square or ``names`` does not name every class.
    """
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise ValueError(f"matrix must be square, got shape {counts.shape}")
    if len(names) != counts.shape[0]:
        raise ValueError(f"got {len(names)} names for {counts.shape[0]} classes")
    totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    size = 1.2 + 0.45 * len(names)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        if count:
            ax.text(
                column,
                row,
                str(count),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if shares[row, column] > 0.5 else "black",
            )
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, names, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_reliability(
    result: evaluation.Reliability, *, title: str | None = None, label: str = "model"
) -> Figure:
    """Draw a reliability diagram: accuracy against confidence per bin, and the bins' sizes.

    Args:
        result: From :func:`dlnotes.theory.evaluation.reliability`.
        title: Optional title.
        label: Name of the predictions in the legend.

    Returns:
        The figure.
    """
    centres = (result.edges[:-1] + result.edges[1:]) / 2
    width = np.diff(result.edges)
    filled = result.counts > 0
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(5, 5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    top.bar(
        centres[filled],
        result.accuracy[filled],
        width=width[filled] * 0.9,
        color="C0",
        alpha=0.8,
        label=f"{label}: accuracy per bin",
    )
    top.plot(
        result.confidence[filled],
        result.accuracy[filled],
        "o",
        color="C1",
        ms=4,
        label="(mean confidence, accuracy)",
    )
    top.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    top.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1.02))
    top.legend(fontsize=8, loc="upper left")
    top.grid(alpha=0.3)
    top.set_title(title or f"expected calibration error {result.ece:.3f}")
    bottom.bar(centres, result.counts, width=width * 0.9, color="0.6")
    bottom.set(xlabel="confidence", ylabel="predictions")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    return fig
