"""mlf_jax: multi-level firing neurons and spiking DS-ResNets in JAX/Flax.

Feng et al., "Multi-Level Firing with Spiking DS-ResNet", IJCAI 2022.
"""

from mlf_jax import analysis, data, models, neurons, nn, surrogate, train
from mlf_jax.neurons import (
    LIFState,
    MLFState,
    default_thresholds,
    lif,
    lif_init,
    lif_step,
    mlf,
    mlf_init,
    mlf_step,
)
from mlf_jax.surrogate import (
    Surrogate,
    arctan,
    get_surrogate,
    heaviside,
    rectangular,
    sigmoid,
    spike,
    triangle,
)

__version__ = "0.1.0"

__all__ = [
    "analysis",
    "data",
    "models",
    "neurons",
    "surrogate",
    "train",
    "nn",
    "Surrogate",
    "rectangular",
    "triangle",
    "sigmoid",
    "arctan",
    "get_surrogate",
    "spike",
    "heaviside",
    "LIFState",
    "MLFState",
    "lif_init",
    "lif_step",
    "lif",
    "mlf_init",
    "mlf_step",
    "mlf",
    "default_thresholds",
]
