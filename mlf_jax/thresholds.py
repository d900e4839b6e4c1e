"""The MLF neuron's thresholds by default, written once: every function, kernel, neuron model,
layer and ResNet that defaults its thresholds takes them from here."""

from __future__ import annotations

__all__ = ["DEFAULT_THRESHOLDS", "default_thresholds"]


def default_thresholds(levels: int = 3, v_th: float = 0.6, spacing: float = 1.0) -> tuple:
    """``V_th,k = v_th + (k - 1) * spacing`` for ``k = 1..levels``."""
    if not isinstance(levels, int) or levels < 1:
        raise ValueError(f"levels must be a positive integer, got {levels!r}")
    return tuple(float(v_th + k * spacing) for k in range(levels))


#: The paper's thresholds, ``default_thresholds()``: ``(0.6, 1.6, 2.6)``, K = 3 levels spaced
#: by the rectangular surrogate's width. The default of :func:`mlf_jax.mlf`,
#: :func:`mlf_jax.mlf_step`, the kernels and :class:`mlf_jax.zoo.MLF` (and so of every MLF
#: layer and ResNet).
DEFAULT_THRESHOLDS: tuple[float, ...] = default_thresholds()
