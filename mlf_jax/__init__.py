"""mlf_jax: multi-level firing neurons and spiking DS-ResNets in JAX/Flax.

Feng et al., "Multi-Level Firing with Spiking DS-ResNet", IJCAI 2022.

``import mlf_jax`` loads the neurons (and the zoo of :mod:`mlf_jax.zoo`), surrogates, input
encoders, layers, models and analysis tools (JAX, Flax and NumPy only). The input pipelines
(``mlf_jax.data``: grain, data set readers) and the training utilities (``mlf_jax.train``:
Orbax checkpoints, data parallelism, metrics) load on first use, e.g. ``mlf_jax.train.sgd``
or ``import mlf_jax.data``, and so do the Flax NNX modules (``mlf_jax.nnx``).
"""

import importlib
from typing import TYPE_CHECKING, Any

from mlf_jax import analysis, encoders, models, neurons, nn, reparam, surrogate, zoo
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

if TYPE_CHECKING:  # for type checkers and editors; at run time see __getattr__
    from mlf_jax import data, nnx, plot, train

#: Sub-packages imported on first attribute access (they pull in heavier dependencies).
_LAZY = ("data", "nnx", "plot", "train")


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"mlf_jax.{name}")
        globals()[name] = module
        return module
    raise AttributeError(f"module 'mlf_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "analysis",
    "data",
    "encoders",
    "models",
    "neurons",
    "plot",
    "reparam",
    "surrogate",
    "zoo",
    "train",
    "nn",
    "nnx",
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
