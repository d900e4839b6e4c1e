"""Fused implementations of the neuron dynamics (hand-written backward passes)."""

from mlf_jax.kernels.fused import mlf_fused

__all__ = ["mlf_fused"]
