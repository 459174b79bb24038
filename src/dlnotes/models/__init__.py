"""The models layer: the course's ResNet, what is built around it, and how to read a built model.

Importing it imports Keras. :mod:`~dlnotes.models.transfer` (MobileNetV2) and
:mod:`~dlnotes.models.hub` (pretrained classifiers and pseudo-labels, TensorFlow) are imported
by name.
"""

from __future__ import annotations

from dlnotes.models.inspection import (
    Block,
    activation_floats,
    block_table,
    forward_flops,
    inbound_layers,
    layer_costs,
    model_receptive_fields,
)
from dlnotes.models.resnet import (
    bottleneck_block,
    build_resnet,
    conv_unit,
    preactivation,
    projection_block,
    resnet_full_width,
    resnet_half_width,
)
from dlnotes.models.wrapping import (
    TrainingModels,
    build_training_models,
    with_preprocessing,
)

__all__ = [
    "Block",
    "TrainingModels",
    "activation_floats",
    "block_table",
    "bottleneck_block",
    "build_resnet",
    "build_training_models",
    "conv_unit",
    "forward_flops",
    "inbound_layers",
    "layer_costs",
    "model_receptive_fields",
    "preactivation",
    "projection_block",
    "resnet_full_width",
    "resnet_half_width",
    "with_preprocessing",
]
