"""Flax Linen modules: the neuron layer (any neuron model; the MLF preset), tdBN and residual
blocks."""

from mlf_jax.nn import conv
from mlf_jax.nn.blocks import SHORTCUTS, BasicBlock, conv1x1, conv3x3, kaiming_normal
from mlf_jax.nn.neuron import MLF, NEURON_LAYERS, RECORD_COLLECTION, Neuron, is_neuron_layer
from mlf_jax.nn.normalization import TdBatchNorm

__all__ = [
    "Neuron",
    "MLF",
    "TdBatchNorm",
    "BasicBlock",
    "SHORTCUTS",
    "RECORD_COLLECTION",
    "conv3x3",
    "conv1x1",
    "kaiming_normal",
    "conv",
    "NEURON_LAYERS",
    "is_neuron_layer",
]
