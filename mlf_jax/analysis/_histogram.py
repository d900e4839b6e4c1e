"""Membrane-potential histograms and the total surrogate derivative of an MLF unit.

Plotting a layer's potential distribution over :func:`surrogate_curve` (or the
intervals of :func:`mlf_jax.analysis.surrogate_windows`) shows how much of it falls
where a gradient flows (Fig. 2 of the paper).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mlf_jax.checks import check_thresholds
from mlf_jax.surrogate import Surrogate, get_surrogate

__all__ = ["potential_histogram", "surrogate_curve"]


def potential_histogram(
    values: jax.Array | np.ndarray,
    bins: int | Sequence[float] = 100,
    value_range: tuple[float, float] | None = None,
    *,
    density: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Histogram of potentials (any shape, flattened), as :func:`numpy.histogram`.

    Non-finite values are dropped; values outside ``value_range`` are not counted.
    Pass e.g. ``record.membrane`` (all levels) or ``record.membrane[:, 0]`` (level 1).

    Args:
      values: potentials, any shape.
      bins: number of equal-width bins, or the bin edges.
      value_range: ``(low, high)`` of the bins; default: the finite values' min and max.
      density: normalise so that the histogram integrates to 1 over the range.

    Returns:
      tuple: ``(counts, edges)``, numpy arrays of ``len(edges) - 1`` counts (float if
      ``density``) and the bin edges.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if value_range is not None:
        low, high = (float(r) for r in value_range)
        if not (np.isfinite(low) and np.isfinite(high) and low < high):
            raise ValueError(
                f"value_range must be finite (low, high) with low < high, got {value_range}"
            )
        value_range = (low, high)
    if isinstance(bins, int) and bins < 1:
        raise ValueError(f"bins must be a positive integer or a sequence of edges, got {bins}")
    return np.histogram(v, bins=bins, range=value_range, density=density)


def surrogate_curve(
    grid: jax.Array | np.ndarray | Sequence[float],
    thresholds: Sequence[float],
    surrogate: Surrogate | str,
) -> np.ndarray:
    """``sum_k g(u - th_k)`` on a grid of potentials ``u``: an MLF unit's total derivative.

    Treats all levels as sharing one potential ``u`` (true up to the first reset),
    which is the picture of Fig. 2 of the paper: with the rectangular surrogate of
    width ``a`` and thresholds spaced by ``a``, the curve is ``1/a`` on
    ``(th_1 - a/2, th_K + a/2)`` and 0 outside, except where two windows meet
    (``th_k + a/2``): each window is open (``|u - th_k| < a/2``, as in the authors' code
    and as training computes it), so the curve is 0 at a meeting point whose distance to
    both thresholds is exactly ``a/2`` once rounded (float32, thresholds 0.6, 1.6, 2.6: at
    1.1; rounding puts 2.1 inside the third window).

    Returns:
      numpy array shaped like ``grid``.
    """
    surrogate = get_surrogate(surrogate)
    th = check_thresholds(thresholds, increasing=False)
    u = jnp.asarray(grid)
    if not jnp.issubdtype(u.dtype, jnp.floating):
        u = u.astype(jnp.float32)
    total = sum(surrogate.grad(u - jnp.asarray(t, u.dtype)) for t in th)
    return np.asarray(total)
