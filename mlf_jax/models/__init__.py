"""Spiking ResNet models and the paper's presets."""

from mlf_jax.models._count import num_params
from mlf_jax.models._io import (
    RESERVED,
    SPEC_FORMAT,
    ModelFileError,
    check_variables,
    from_spec,
    load,
    preprocess,
    save,
    spec_of,
)
from mlf_jax.models.resnet import (
    MLF_SETTINGS,
    ResNet,
    check_neuron,
    cifar10_resnet20,
    cifar10dvs_resnet14,
    gesture_resnet20,
    resnet,
    stage_sizes_for_depth,
)

__all__ = [
    "ResNet",
    "resnet",
    "MLF_SETTINGS",
    "check_neuron",
    "stage_sizes_for_depth",
    "cifar10_resnet20",
    "gesture_resnet20",
    "cifar10dvs_resnet14",
    "num_params",
    "save",
    "load",
    "preprocess",
    "spec_of",
    "from_spec",
    "ModelFileError",
    "check_variables",
    "SPEC_FORMAT",
    "RESERVED",
]
