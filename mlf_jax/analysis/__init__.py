"""Analysis of recorded intermediates : what the notebooks explore.

Pure functions over what a forward (and backward) pass records:

* recording: :func:`record` runs a model with the ``'intermediates'`` collection
  mutable and returns every neuron layer's :class:`LayerRecord` (per-level membrane
  potentials ``[T, K, B, ...]`` and spikes ``[T, B, ...]``) in forward call order;
  :func:`collect` does the same for an ``'intermediates'`` dict at hand.
* surrogate windows and dormant units: :func:`surrogate_windows`,
  :func:`surrogate_derivative`, :func:`dormant_mask`, :func:`dormant_fraction`,
  :func:`dormant_fractions`.
* distributions: :func:`potential_histogram`, :func:`surrogate_curve` (Fig. 2).
* firing: :func:`firing_rate`, :func:`firing_rates`, :func:`silent_fraction`.
* gradients: :func:`param_grad_norms`, :func:`first_layer_grad_norm`,
  :func:`activation_grad_norms` (through depth and time).
* identity mapping (Theorem 2): :func:`identity_probe`.

Typical use::

    logits, recs = mj.analysis.record(model, variables, x)
    mj.analysis.dormant_fractions(recs)  # each layer's own (learned) thresholds
    mj.analysis.firing_rates(recs)
"""

from mlf_jax.analysis._dormant import (
    dormant_fraction,
    dormant_fractions,
    dormant_mask,
    surrogate_derivative,
    surrogate_windows,
)
from mlf_jax.analysis._firing import firing_rate, firing_rates, silent_fraction
from mlf_jax.analysis._gradients import (
    activation_grad_norms,
    first_layer_grad_norm,
    param_grad_norms,
    softmax_cross_entropy,
)
from mlf_jax.analysis._histogram import potential_histogram, surrogate_curve
from mlf_jax.analysis._identity import identity_probe
from mlf_jax.analysis._order import forward_order
from mlf_jax.analysis._record import LayerRecord, collect, record

__all__ = [
    "LayerRecord",
    "record",
    "collect",
    "forward_order",
    "surrogate_windows",
    "surrogate_derivative",
    "dormant_mask",
    "dormant_fraction",
    "dormant_fractions",
    "potential_histogram",
    "surrogate_curve",
    "firing_rate",
    "firing_rates",
    "silent_fraction",
    "param_grad_norms",
    "first_layer_grad_norm",
    "activation_grad_norms",
    "softmax_cross_entropy",
    "identity_probe",
]
