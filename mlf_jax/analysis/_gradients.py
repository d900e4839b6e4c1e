"""Gradient norms per module (parameters) and per neuron layer and time step (activations)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mlf_jax.analysis._cache import per_model
from mlf_jax.analysis._order import forward_order, join_path
from mlf_jax.losses import cross_entropy
from mlf_jax.nn import RECORD_COLLECTION, is_neuron_layer

__all__ = [
    "param_grad_norms",
    "first_layer_grad_norm",
    "activation_grad_norms",
    "softmax_cross_entropy",
]

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def _params_tree(grads: Mapping[str, Any]) -> Mapping[str, Any]:
    if not isinstance(grads, Mapping):
        raise ValueError(f"grads must be a (nested) mapping of arrays, got {type(grads).__name__}")
    if set(grads) == {"params"} and isinstance(grads["params"], Mapping):
        return grads["params"]  # gradient with respect to the whole variables dict
    return grads


def _leaves_by_module(tree: Mapping[str, Any]) -> dict[tuple[str, ...], list[Any]]:
    """Leaves grouped by their parent path, in the mapping's own order."""
    groups: dict[tuple[str, ...], list[Any]] = {}

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        for key, child in node.items():
            if isinstance(child, Mapping):
                walk(child, (*path, str(key)))
            elif child is not None:
                groups.setdefault(path, []).append(child)

    walk(tree, ())
    return groups


def _l2(leaves: list[Any]) -> float:
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(x, np.float64))) for x in leaves)))


def param_grad_norms(grads: Mapping[str, Any]) -> dict[str, float]:
    """L2 norm of the gradient of each module's parameters (kernel, scale, bias, ...).

    Args:
      grads: gradient pytree with the structure of ``variables['params']`` (or of
        ``{'params': ...}``), e.g. from ``jax.grad``.

    Returns:
      dict: ``{module path: norm}`` with ``'/'``-joined paths (``'stem_conv'``,
      ``'stage1_block1/conv1'``, ..., ``'head'``), in forward order. ``jax.grad``
      returns dicts with sorted keys; the order is restored from the ResNet naming
      scheme where every name at a level is known, and is the mapping's own order
      elsewhere (Flax's ``init`` keeps call order).
    """
    groups = _leaves_by_module(_params_tree(grads))
    return {join_path(path): _l2(groups[path]) for path in forward_order(groups)}


def first_layer_grad_norm(grads: Mapping[str, Any], layer: str = "stem_conv") -> float:
    """L2 norm of the gradient of the first convolution's kernel (``grads[layer]['kernel']``)."""
    tree = _params_tree(grads)
    try:
        kernel = tree[layer]["kernel"]
    except (KeyError, TypeError):
        raise ValueError(
            f"no '{layer}/kernel' in the gradients; top-level modules: {list(tree)}"
        ) from None
    return _l2([kernel])


#: The old name of :func:`mlf_jax.losses.cross_entropy` here (a batch mean, unlike optax's
#: per-example function of this name); kept for code that uses it.
softmax_cross_entropy = cross_entropy


def _apply(model: nn.Module, variables: Mapping[str, Any], x: jax.Array, train: bool):
    """The model's output, discarding updated batch statistics in training mode."""
    if train:
        return model.apply(variables, x, train=True, mutable=["batch_stats"])[0]
    return model.apply(variables, x, train=False)


def _is_neuron_call(context) -> bool:
    return is_neuron_layer(context.module) and context.method_name == "__call__"


def activation_grad_norms(
    model: nn.Module,
    variables: Mapping[str, Any],
    x: jax.Array,
    labels: jax.Array,
    *,
    train: bool = False,
    loss_fn: LossFn | None = None,
) -> dict[str, np.ndarray]:
    """Gradient of the loss with respect to each neuron layer's output, per time step.

    "Gradient norms through depth and time": for every neuron layer
    (:func:`mlf_jax.nn.is_neuron_layer`), the L2 norm over batch and units of
    ``dL/d(spikes[t])``, for each t.
    The gradients are the ones training uses (surrogate gradients through all
    later layers). Implemented by adding a zero perturbation to the output of each
    neuron layer's call (a Flax method interceptor, so the model needs no change) and
    differentiating the loss with respect to the perturbations; jitted, compiled
    once per model, mode and ``loss_fn``.

    Args:
      model: a Linen module whose ``__call__`` takes ``train`` (e.g. a ResNet).
      variables: its variables.
      x: input, as the model takes it.
      labels: targets passed to ``loss_fn``.
      train: batch statistics (``True``; updates discarded) or running statistics.
      loss_fn: ``loss_fn(output, labels) -> scalar``; default
        :func:`mlf_jax.losses.cross_entropy` (integer labels, mean over the batch).

    Returns:
      dict: ``{layer path: norms}`` with numpy ``[T]`` norms, layers in forward call order
      (the keys of :func:`mlf_jax.analysis.record`).

    Raises:
      ValueError: if the model has no neuron layer or calls one layer more than once.
    """
    if not isinstance(variables, Mapping):
        raise ValueError(f"variables must be a mapping, got {type(variables).__name__}")
    loss_fn = cross_entropy if loss_fn is None else loss_fn
    variables = {k: v for k, v in variables.items() if k != RECORD_COLLECTION}
    run, order = _activation_grad_fn(model, bool(train), loss_fn)
    norms = run(variables, x, labels)
    return {path: np.asarray(norms[path]) for path in order}  # call order, not sorted keys


@per_model
def _activation_grad_fn(model: nn.Module, train: bool, loss_fn: LossFn):
    """``(jitted per-layer, per-step norms, layer call order)``; the order is filled when traced."""
    order: list[str] = []

    def neuron_shapes(variables, x) -> dict[str, jax.ShapeDtypeStruct]:
        shapes: dict[str, jax.ShapeDtypeStruct] = {}

        def note_shape(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if _is_neuron_call(context):
                path = join_path(context.module.path)
                if path in shapes:
                    raise ValueError(
                        f"neuron layer {path!r} is called more than once; not supported"
                    )
                shapes[path] = jax.ShapeDtypeStruct(out.shape, out.dtype)
            return out

        def forward(variables, x):
            with nn.intercept_methods(note_shape):
                return _apply(model, variables, x, train)

        jax.eval_shape(forward, variables, x)
        if not shapes:
            raise ValueError("the model has no neuron layer (mlf_jax.nn.Neuron)")
        for path, s in shapes.items():
            if len(s.shape) < 2:
                raise ValueError(f"neuron layer {path!r} output {s.shape} is not [T, B, ...]")
        return shapes

    def loss_of(eps, variables, x, labels) -> jax.Array:
        def perturb(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if _is_neuron_call(context):
                out = out + eps[join_path(context.module.path)]
            return out

        with nn.intercept_methods(perturb):
            out = _apply(model, variables, x, train)
        return loss_fn(out, labels)

    def run(variables, x, labels) -> dict[str, jax.Array]:
        shapes = neuron_shapes(variables, x)
        order[:] = list(shapes)
        eps = {path: jnp.zeros(s.shape, s.dtype) for path, s in shapes.items()}
        grads = jax.grad(loss_of)(eps, variables, x, labels)
        return {
            path: jnp.sqrt(jnp.sum(jnp.square(g.astype(jnp.float32)), axis=tuple(range(1, g.ndim))))
            for path, g in grads.items()
        }

    return jax.jit(run), order
