"""Pretrained ImageNet classifiers from TF Hub (or a local SavedModel), and their predictions
restricted to a dataset's own classes — the tools of pseudo-labelling.

One module per job; everything a chapter uses is importable from here
(``from dlnotes.models import hub``):

* :mod:`~dlnotes.models.hub.loading`: :class:`Classifier` and :func:`load_classifier` (a TF Hub
  handle or a SavedModel folder, called as a function);
* :mod:`~dlnotes.models.hub.export`: SavedModels written here — Keras' MobileNetV2 with TF Hub's
  calling convention (exported once into the cache) and a small stand-in trained on the dataset;
* :mod:`~dlnotes.models.hub.pretrained`: which classifier a chapter gets —
  :func:`load_pretrained_classifier` (offline or online) or the :func:`toy_classifier` stand-in;
* :mod:`~dlnotes.models.hub.inference`: :func:`predict_logits` and :func:`predict_split` over
  image files;
* :mod:`~dlnotes.models.hub.labels`: what becomes of the predictions — the CSV manifest of
  pseudo-labels and the accuracy/coverage curve of a confidence threshold;
* :mod:`~dlnotes.models.hub.cli`: the ``dlnotes-pseudo-label`` command.
"""

from __future__ import annotations

from dlnotes.models.hub.export import (
    cached_hub_convention_classifier,
    export_hub_convention_classifier,
    export_standin_classifier,
)
from dlnotes.models.hub.inference import predict_logits, predict_split
from dlnotes.models.hub.labels import threshold_curve, write_manifest
from dlnotes.models.hub.loading import (
    MOBILENET_V2_HANDLE,
    MOBILENET_V2_INPUT_SIZE,
    SOURCE_NOTES_HANDLE,
    Classifier,
    load_classifier,
    signature_input_size,
)
from dlnotes.models.hub.pretrained import load_pretrained_classifier, toy_classifier

__all__ = [
    "MOBILENET_V2_HANDLE",
    "MOBILENET_V2_INPUT_SIZE",
    "SOURCE_NOTES_HANDLE",
    "Classifier",
    "cached_hub_convention_classifier",
    "export_hub_convention_classifier",
    "export_standin_classifier",
    "load_classifier",
    "load_pretrained_classifier",
    "predict_logits",
    "predict_split",
    "signature_input_size",
    "threshold_curve",
    "toy_classifier",
    "write_manifest",
]
