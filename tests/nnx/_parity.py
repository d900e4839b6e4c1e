"""Shared check: an NNX module of mlf_jax.nnx and its Linen module, with the same variables,
give the same outputs, gradients and running-statistics updates."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import mlf_jax.nnx as mjx


def assert_trees_close(got: Any, want: Any, rtol: float, atol: float) -> None:
    assert jax.tree.structure(got) == jax.tree.structure(want)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=rtol, atol=atol), got, want)


def _train_kwargs(net: nnx.Module) -> dict[str, Any]:
    if isinstance(net, mjx.Neuron):
        return {}
    if isinstance(net, mjx.TdBatchNorm):
        return {"use_running_average": False}
    return {"train": True}


def check_same_as_linen(
    net: nnx.Module, x: jax.Array, *, rtol: float = 1e-6, atol: float = 1e-7
) -> None:
    """``net`` (an NNX module of mlf_jax.nnx) against its Linen module on ``x``: the eval
    output, the train-mode output (through a scalar of it), the gradients of every parameter
    and the updated running statistics."""
    linen, variables = mjx.to_linen(net)

    net.eval()
    eval_kwargs = {"use_running_average": True} if isinstance(net, mjx.TdBatchNorm) else {}
    np.testing.assert_allclose(
        net(x), linen.apply(variables, x, **eval_kwargs), rtol=rtol, atol=atol
    )

    def nnx_loss(net):
        return jnp.sum(jnp.sin(net(x)))  # any scalar of the output

    def linen_loss(params):
        out, updates = linen.apply(
            {**variables, "params": params}, x, mutable=["batch_stats"], **_train_kwargs(net)
        )
        return jnp.sum(jnp.sin(out)), updates.get("batch_stats", {})

    net.train()
    loss, grads = nnx.value_and_grad(nnx_loss)(net)
    (ref_loss, ref_stats), ref_grads = jax.value_and_grad(linen_loss, has_aux=True)(
        variables.get("params", {})
    )
    np.testing.assert_allclose(loss, ref_loss, rtol=rtol, atol=atol)
    assert_trees_close(nnx.to_pure_dict(grads), ref_grads, rtol=rtol, atol=atol)
    assert_trees_close(nnx.to_pure_dict(nnx.state(net, nnx.BatchStat)), ref_stats, rtol, atol)
