"""Spike function with surrogate gradients.

The forward pass of a spiking neuron is the Heaviside step ``H(z) = 1[z > 0]``
(strict ``>``), whose derivative is zero almost everywhere. Surrogate-gradient
training replaces ``dH/dz`` in the backward pass by a smooth-ish bump ``g(z)`` (the
formulas of every family: the method page, section
[Surrogate gradients][surrogate-gradients]). Each surrogate family here is a small frozen
(hashable) dataclass with

* ``grad(z)``: the surrogate derivative ``g(z)`` used in the backward pass, and
* ``relaxation(z)``: a smooth relaxation ``S(z)`` of ``H`` with ``S' = g``
  (useful for plots and for checking ``grad`` by finite differences).

``spike(z, surrogate)`` is built on :func:`jax.custom_vjp`: exact ``H`` forward,
``g`` backward. The paper (Feng et al., IJCAI 2022; STBP) uses the rectangular
window ``g(z) = (1/a) 1[|z| < a/2]``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp

__all__ = [
    "Surrogate",
    "rectangular",
    "triangle",
    "sigmoid",
    "arctan",
    "get_surrogate",
    "SURROGATE_FAMILIES",
    "spike",
    "heaviside",
    "DEFAULT_SURROGATE",
]

Array = jax.Array


def _check_positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise TypeError(f"{name} must be a Python float, got {type(value).__name__}")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


class Surrogate:
    """Base class of surrogate families: ``grad`` and ``relaxation`` of the step ``H``.

    A new family subclasses it (a frozen dataclass, so that it is hashable: it is a static
    argument of :func:`spike`'s ``custom_vjp`` and of the kernels) and implements
    :meth:`grad`; :meth:`relaxation` is for plots and analysis, :meth:`support` for the
    dormant-unit tools when ``grad`` vanishes outside an interval. For example::

        @dataclasses.dataclass(frozen=True)
        class RaisedCosine(mj.surrogate.Surrogate):
            width: float = 1.0

            def grad(self, z):
                bump = (1 + jnp.cos(2 * jnp.pi * z / self.width)) / self.width
                return jnp.where(jnp.abs(z) < self.width / 2, bump, 0.0)

            def relaxation(self, z):
                zc = jnp.clip(z / self.width, -0.5, 0.5)
                return zc + 0.5 + jnp.sin(2 * jnp.pi * zc) / (2 * jnp.pi)

            def support(self):
                return (-self.width / 2, self.width / 2)
    """

    def grad(self, z: Array) -> Array:  # pragma: no cover - abstract
        """The surrogate derivative ``g(z)`` that replaces ``dH/dz`` in the backward pass.

        Args:
          z: membrane potential minus threshold, any shape, floating dtype.

        Returns:
          ``g(z)``, elementwise, with the shape of ``z``; non-negative, and integrating to 1
          over the real line for a relaxation that goes from 0 to 1. Evaluated inside
          :func:`spike`'s backward pass and inside the fused and Pallas kernels, so it must
          be traceable JAX code (no Python branching on ``z``).
        """
        raise NotImplementedError

    def relaxation(self, z: Array) -> Array:  # pragma: no cover - abstract
        """The smooth step ``sigma(z)`` whose derivative is :meth:`grad`, from 0 to 1.

        Not used by training (the forward pass is the exact step); plotted and used by the
        analysis tools to show what the surrogate stands for.

        Args:
          z: membrane potential minus threshold, any shape.

        Returns:
          ``sigma(z)``, elementwise, in ``[0, 1]``.
        """
        raise NotImplementedError

    def support(self) -> tuple[float, float]:
        """Interval outside which ``grad`` is exactly zero (``(-inf, inf)`` if none)."""
        return (-math.inf, math.inf)


@dataclasses.dataclass(frozen=True)
class rectangular(Surrogate):  # noqa: N801 - public API name (a family, called like a function)
    """Rectangular window (STBP, the paper's choice): ``g(z) = (1/w) 1[|z| < w/2]``.

    Relaxation: the hard sigmoid ``clip(z / w + 1/2, 0, 1)``.
    """

    width: float = 1.0

    def __post_init__(self):
        _check_positive("rectangular width", self.width)

    def grad(self, z: Array) -> Array:
        inside = jnp.abs(z) < self.width / 2
        return jnp.where(inside, 1.0 / self.width, 0.0).astype(jnp.result_type(z, float))

    def relaxation(self, z: Array) -> Array:
        return jnp.clip(z / self.width + 0.5, 0.0, 1.0)

    def support(self) -> tuple[float, float]:
        return (-self.width / 2, self.width / 2)


@dataclasses.dataclass(frozen=True)
class triangle(Surrogate):  # noqa: N801
    """Triangular window of half-width ``w``: ``g(z) = max(0, 1 - |z|/w) / w``.

    Relaxation: piecewise quadratic, ``1/2 + z/w - sign(z) z^2 / (2 w^2)`` on ``|z| < w``.
    """

    width: float = 1.0

    def __post_init__(self):
        _check_positive("triangle width", self.width)

    def grad(self, z: Array) -> Array:
        return jnp.maximum(0.0, 1.0 - jnp.abs(z) / self.width) / self.width

    def relaxation(self, z: Array) -> Array:
        w = self.width
        zc = jnp.clip(z, -w, w)
        return 0.5 + zc / w - jnp.sign(zc) * zc**2 / (2 * w**2)

    def support(self) -> tuple[float, float]:
        return (-self.width, self.width)


@dataclasses.dataclass(frozen=True)
class sigmoid(Surrogate):  # noqa: N801
    """Logistic: ``S(z) = sigma(alpha z)``, ``g(z) = alpha sigma(alpha z) (1 - sigma(alpha z))``."""

    alpha: float = 4.0

    def __post_init__(self):
        _check_positive("sigmoid alpha", self.alpha)

    def grad(self, z: Array) -> Array:
        s = jax.nn.sigmoid(self.alpha * z)
        return self.alpha * s * (1.0 - s)

    def relaxation(self, z: Array) -> Array:
        return jax.nn.sigmoid(self.alpha * z)


@dataclasses.dataclass(frozen=True)
class arctan(Surrogate):  # noqa: N801
    """Arctangent: ``S(z) = 1/2 + arctan(pi alpha z / 2) / pi``.

    ``g(z) = (alpha / 2) / (1 + (pi alpha z / 2)^2)``.
    """

    alpha: float = 2.0

    def __post_init__(self):
        _check_positive("arctan alpha", self.alpha)

    def grad(self, z: Array) -> Array:
        return (self.alpha / 2) / (1.0 + (math.pi / 2 * self.alpha * z) ** 2)

    def relaxation(self, z: Array) -> Array:
        return 0.5 + jnp.arctan(math.pi / 2 * self.alpha * z) / math.pi


_FAMILIES: dict[str, type[Surrogate]] = {
    "rectangular": rectangular,
    "triangle": triangle,
    "sigmoid": sigmoid,
    "arctan": arctan,
}

#: Family names accepted by :func:`get_surrogate`.
SURROGATE_FAMILIES: tuple[str, ...] = tuple(sorted(_FAMILIES))


#: The paper's surrogate, the neurons' default: the rectangular window of width 1.
DEFAULT_SURROGATE = rectangular(1.0)


def get_surrogate(spec: Surrogate | str, *args: Any, **kwargs: Any) -> Surrogate:
    """Returns a surrogate from an instance or a family name (``'rectangular'``, ...).

    With a name, ``args``/``kwargs`` go to the family: ``get_surrogate('sigmoid', 4.0)``.

    Raises:
      ValueError: for an unknown family name (the message lists the known ones).
      TypeError: for anything that is neither a name nor a :class:`Surrogate`.
    """
    if isinstance(spec, Surrogate):
        if args or kwargs:
            raise TypeError("surrogate parameters are only accepted with a family name")
        return spec
    if isinstance(spec, str):
        try:
            family = _FAMILIES[spec]
        except KeyError:
            raise ValueError(
                f"unknown surrogate {spec!r}; expected one of {sorted(_FAMILIES)}"
            ) from None
        return family(*args, **kwargs)
    raise TypeError(
        "surrogate must be a mlf_jax surrogate (e.g. mj.rectangular(1.0)) or one of "
        f"{sorted(_FAMILIES)}, got {type(spec).__name__}"
    )


def heaviside(z: Array) -> Array:
    """``H(z) = 1[z > 0]`` in the dtype of ``z`` (floating); no gradient defined.

    NaN maps to NaN, not to 0: a plain ``z > 0`` would turn a NaN membrane
    potential into "no spike" and hide it from everything downstream.
    """
    z = jnp.asarray(z)
    dtype = z.dtype if jnp.issubdtype(z.dtype, jnp.floating) else jnp.float32
    return jnp.where(z > 0, 1.0, jnp.where(jnp.isnan(z), jnp.nan, 0.0)).astype(dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _spike(z: Array, surrogate: Surrogate) -> Array:
    return heaviside(z)


def _spike_fwd(z, surrogate):
    return heaviside(z), z


def _spike_bwd(surrogate, z, g):
    return ((g * surrogate.grad(z)).astype(z.dtype),)


_spike.defvjp(_spike_fwd, _spike_bwd)


def spike(z: Array, surrogate: Surrogate | str = rectangular(1.0)) -> Array:
    """Heaviside step ``1[z > 0]`` forward, ``surrogate.grad(z)`` backward.

    Args:
      z: membrane potential minus threshold, any shape, floating dtype.
      surrogate: a surrogate instance (``mj.rectangular(1.0)``, ``mj.sigmoid(4.0)``,
        ...) or a family name.

    Returns:
      Spikes in ``{0, 1}`` with the dtype and shape of ``z``.
    """
    surrogate = get_surrogate(surrogate)
    z = jnp.asarray(z)
    if not jnp.issubdtype(z.dtype, jnp.floating):
        raise TypeError(f"spike expects a floating input, got dtype {z.dtype}")
    return _spike(z, surrogate)
