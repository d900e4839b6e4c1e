"""Kernels of the neuron dynamics: a fused scan with a hand-written backward pass
(:func:`mlf_fused`) and Pallas kernels (:func:`mlf_pallas`, compiled for GPU and TPU)."""

from mlf_jax.kernels.fused import mlf_fused
from mlf_jax.kernels.pallas_mlf import mlf_pallas

__all__ = ["mlf_fused", "mlf_pallas"]
