"""NIR, the Neuromorphic Intermediate Representation: a trained spiking ResNet of ours out to
``nir.NIRGraph`` (:func:`to_nir`), and a NIR graph back into a runnable model
(:func:`from_nir`). See the guide, *Export to NIR*.

Needs the ``nir`` extra (``pip install 'mlf_jax[nir]'``); ``import mlf_jax`` does not load
this package.
"""

try:
    import nir as _nir  # noqa: F401 - the extra's one requirement, checked here
except ModuleNotFoundError as _error:
    from mlf_jax.extras import missing_extra

    raise missing_extra("mlf_jax.nir", "nir", _error) from _error

from mlf_jax.nir.export import READOUTS, NIRExportError, neuron_nodes, tdbn_fold, to_nir
from mlf_jax.nir.importer import GraphSpec, NIRImportError, NIRModel, NodeSpec, from_nir
from mlf_jax.nir.timing import DEFAULT_DT, if_from_nir, if_to_nir, leak_from_nir, leak_to_nir

__all__ = [
    "to_nir",
    "from_nir",
    "NIRModel",
    "GraphSpec",
    "NodeSpec",
    "NIRExportError",
    "NIRImportError",
    "READOUTS",
    "tdbn_fold",
    "neuron_nodes",
    "DEFAULT_DT",
    "leak_to_nir",
    "leak_from_nir",
    "if_to_nir",
    "if_from_nir",
]
