"""Flax NNX modules: the neuron layer, tdBN, the residual blocks and the spiking ResNets.

Each class here is a Flax NNX module (``flax.nnx.bridge.ToNNX``) around the library's Linen
module of the same name: the Linen module is the one description of the layer, block or
network (its dynamics, topology and parameter names), and the NNX module holds its state as
``nnx.Param`` (weights, learned thresholds and leak) and ``nnx.BatchStat`` (tdBN's running
statistics), under the Linen names without the collection level. The numbers, the
gradients and the statistics' updates are those of the Linen module (tested); weights move
between the two APIs one to one (:func:`to_linen`, :class:`ResNet`'s ``variables``), and
:func:`save` / :func:`load` read and write the files of :func:`mlf_jax.models.save`.

Train and eval modes are NNX's: ``model.train()`` normalises with each batch's statistics
and updates the running ones (in place, also under ``nnx.jit``), ``model.eval()`` uses the
running ones. A model built here starts in train mode (as ``nnx.BatchNorm``); one loaded
with :func:`load` in eval mode. See the guide, *Flax NNX*.

Needs Flax 0.12 or later (its ``ToNNX``); ``import mlf_jax`` does not load this package:
``import mlf_jax.nnx`` or ``mlf_jax.nnx`` on first use.
"""

from mlf_jax.nnx.modules import (
    MLF,
    BasicBlock,
    Neuron,
    ResNet,
    TdBatchNorm,
    cifar10_resnet20,
    cifar10dvs_resnet14,
    from_linen,
    gesture_resnet20,
    load,
    resnet,
    save,
    to_linen,
)
from mlf_jax.nnx.step import train_step

__all__ = [
    "Neuron",
    "MLF",
    "TdBatchNorm",
    "BasicBlock",
    "ResNet",
    "resnet",
    "cifar10_resnet20",
    "gesture_resnet20",
    "cifar10dvs_resnet14",
    "from_linen",
    "to_linen",
    "save",
    "load",
    "train_step",
]
