"""The trainer's seams: another data source and another network plug into ``training.train``
without a change to the trainer, and the run folder still guards what was trained on."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import keras
import numpy as np
import pytest

from dlnotes import training
from dlnotes.training.datasets import DataFiles

CLASSES = 3


@dataclasses.dataclass(frozen=True)
class FirstClasses(training.TinyImageNet):
    """Tiny ImageNet restricted to its first ``classes`` classes: a data source of our own."""

    classes: int = CLASSES

    def files(self, root: Path, config: training.TrainConfig) -> DataFiles:
        every = super().files(root, config)
        train = every.train_labels < self.classes
        val = every.val_labels < self.classes
        return dataclasses.replace(
            every,
            train_paths=[p for p, keep in zip(every.train_paths, train, strict=True) if keep],
            train_labels=every.train_labels[train],
            val_paths=[p for p, keep in zip(every.val_paths, val, strict=True) if keep],
            val_labels=every.val_labels[val],
            class_ids=every.class_ids[: self.classes],
        )


def small_network(config: training.TrainConfig, num_classes: int, policy: str | None):
    """A network of our own: one convolution, global pooling, logits."""
    inputs = keras.Input((None, None, 3), name="images")
    features = keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv", dtype=policy)(
        inputs
    )
    pooled = keras.layers.GlobalAveragePooling2D(name="pool", dtype=policy)(features)
    logits = keras.layers.Dense(num_classes, name="logits", dtype=policy)(pooled)
    return keras.Model(inputs, logits, name="small_network")


@pytest.mark.slow
def test_another_data_source_and_network_train_through_the_same_trainer(
    tiny_imagenet: Path, tmp_path: Path
) -> None:
    config = training.TrainConfig.for_profile(
        "smoke", epochs=2, batch_size=30, max_train_per_class=30, mix="none"
    )
    run_dir = tmp_path / "run"
    metrics = training.train(
        config,
        out_dir=run_dir,
        data_dir=tiny_imagenet,
        source=FirstClasses(),
        backbone=small_network,
    )
    assert metrics["epochs_completed"] == 2
    assert len(json.loads((run_dir / "dataset.json").read_text())["class_ids"]) == CLASSES
    model = training.load_trained_model(run_dir, backbone=small_network)
    images = np.zeros((2, 64, 64, 3), dtype=np.uint8)
    assert model.predict(images, verbose=0).shape == (2, CLASSES)
    assert np.isfinite(metrics["val_top1"]) and 0.0 <= metrics["val_top1"] <= 1.0

    with pytest.raises(ValueError, match="other"):  # the folder remembers the three classes
        training.train(config, out_dir=run_dir, data_dir=tiny_imagenet)
