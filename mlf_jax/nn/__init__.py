"""Flax Linen modules: the MLF neuron layer, the zoo's neuron layer, tdBN and residual blocks."""

from mlf_jax.nn import conv
from mlf_jax.nn._layers import NEURON_LAYERS, is_neuron_layer
from mlf_jax.nn.blocks import SHORTCUTS, BasicBlock, conv1x1, conv3x3, kaiming_normal
from mlf_jax.nn.neuron import MLF, RECORD_COLLECTION
from mlf_jax.nn.normalization import TdBatchNorm
from mlf_jax.nn.zoo import Neuron

__all__ = [
    "MLF",
    "Neuron",
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
