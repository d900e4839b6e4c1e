"""Recording the membrane potentials and spikes of every neuron layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from mlf_jax.analysis._cache import per_model
from mlf_jax.analysis._order import forward_order, join_path
from mlf_jax.nn import RECORD_COLLECTION, Neuron
from mlf_jax.zoo import NeuronModel

__all__ = ["LayerRecord", "collect", "record"]

_MEMBRANE, _SPIKES = "membrane", "spikes"


class LayerRecord(NamedTuple):
    """What one neuron layer recorded in one forward pass.

    Attributes:
      membrane: per-level membrane potentials ``[T, K, B, ...]``.
      spikes: spike counts ``[T, B, ...]`` (in ``0..K`` for MLF).
      model: the neuron model the layer ran, with its learned parameters as settings
        (:meth:`mlf_jax.zoo.NeuronModel.with_params`): its ``level_thresholds()`` and
        ``surrogate`` are the layer's own. Set by :func:`record`; ``None`` from
        :func:`collect`, which sees only the arrays.
    """

    membrane: jax.Array
    spikes: jax.Array
    model: NeuronModel | None = None


def _check_record(path: str, membrane: Any, spikes: Any) -> LayerRecord:
    membrane, spikes = jnp.asarray(membrane), jnp.asarray(spikes)
    if (
        membrane.ndim != spikes.ndim + 1
        or spikes.ndim < 1
        or membrane.shape[0] != spikes.shape[0]
        or membrane.shape[2:] != spikes.shape[1:]
    ):
        raise ValueError(
            f"layer {path!r}: membrane must be [T, K, B, ...] and spikes [T, B, ...], got "
            f"shapes {membrane.shape} and {spikes.shape}"
        )
    return LayerRecord(membrane, spikes)


def _sown(value: Any) -> tuple:
    """``sow`` stores a tuple of the values of successive calls; accept a bare array too."""
    return tuple(value) if isinstance(value, (tuple, list)) else (value,)


def collect(
    intermediates: Mapping[str, Any], *, order: Sequence[str] | None = None
) -> dict[str, LayerRecord]:
    """Neuron layers found in a (nested) ``'intermediates'`` collection.

    A layer is any sub-dict holding both ``'membrane'`` and ``'spikes'`` (what
    :class:`mlf_jax.nn.Neuron` sows). Works on the collection of any module: a
    whole ResNet, one block, or one MLF layer (whose key is then ``''``).

    Args:
      intermediates: ``mutated['intermediates']`` from
        ``module.apply(..., mutable=['intermediates'])``, or the ``mutated`` dict itself
        (its ``'intermediates'`` entry is used).
      order: module paths (``'/'``-joined) in the order they ran; layers are
        listed in this order (layers missing from it come last). Without it, the
        layers follow the ResNet naming scheme where every name at a level is known
        (see :func:`mlf_jax.analysis.forward_order`), and the dict's own order
        otherwise (Flax keeps call order; ``jax.tree.map`` and friends sort keys).

    Returns:
      dict: ``{path: LayerRecord}`` with ``'/'``-joined module paths. A layer called ``n > 1``
      times in the pass gives ``n`` entries, ``'path[0]'``, ..., ``'path[n-1]'``.

    Raises:
      ValueError: for a non-mapping input or inconsistent membrane/spike shapes.
    """
    if not isinstance(intermediates, Mapping):
        raise ValueError(
            f"intermediates must be a (nested) mapping, got {type(intermediates).__name__}"
        )
    if RECORD_COLLECTION in intermediates and isinstance(intermediates[RECORD_COLLECTION], Mapping):
        intermediates = intermediates[RECORD_COLLECTION]

    found: dict[tuple[str, ...], list[LayerRecord]] = {}

    def walk(node: Mapping[str, Any], path: tuple[str, ...]) -> None:
        if _MEMBRANE in node and _SPIKES in node:
            name = join_path(path)
            us, ss = _sown(node[_MEMBRANE]), _sown(node[_SPIKES])
            if len(us) != len(ss):
                raise ValueError(
                    f"layer {name!r} sowed {len(us)} membrane values but {len(ss)} spike values"
                )
            found[path] = [_check_record(name, u, s) for u, s in zip(us, ss, strict=True)]
        for key, child in node.items():
            if isinstance(child, Mapping):
                walk(child, (*path, str(key)))

    walk(intermediates, ())

    if order is None:
        paths = forward_order(found)
    else:
        rank = {name: i for i, name in enumerate(order)}
        paths = sorted(found, key=lambda p: rank.get(join_path(p), len(rank)))

    out: dict[str, LayerRecord] = {}
    for path in paths:
        records, name = found[path], join_path(path)
        if len(records) == 1:
            out[name] = records[0]
        else:
            out.update({f"{name}[{i}]": r for i, r in enumerate(records)})
    return out


def _completion_order(order: dict[str, None]):
    """Interceptor that notes each module path when one of its methods returns.

    A neuron layer sows just before its ``__call__`` returns, so the order in which
    calls *return* (post-order) is the order in which the layers produced their
    values, whatever the names and whatever the dict order of the collection.
    """

    def interceptor(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name != "setup":
            order.setdefault(join_path(context.module.path), None)
        return out

    return interceptor


def record(
    model: nn.Module, variables: Mapping[str, Any], x: jax.Array, *, train: bool = False
) -> tuple[jax.Array, dict[str, LayerRecord]]:
    """Runs ``model`` once and returns its output and every neuron layer's record.

    Calls ``model.apply(variables, x, train=train, mutable=[...])`` with the
    ``'intermediates'`` collection mutable (plus ``'batch_stats'`` when ``train``; the
    updated statistics are discarded), under ``jax.jit``, compiled once per model and
    mode. Any ``'intermediates'`` already in ``variables`` is ignored.

    Args:
      model: a Linen module whose ``__call__`` takes ``train`` (e.g. a
        :class:`mlf_jax.models.ResNet`).
      variables: its variables (``params``, ``batch_stats``).
      x: input, as the model takes it.
      train: batch statistics (``True``) or running statistics (``False``).

    Returns:
      tuple: ``(output, records)``, where ``records`` maps ``'/'``-joined module paths
      (``'stem_neuron'``, ``'stage1_block1/neuron1'``, ...) to :class:`LayerRecord`,
      in forward call order (in a projection block: ``neuron1``,
      ``shortcut_neuron``, ``neuron2``). The records of :class:`mlf_jax.nn.Neuron` layers
      hold the model each ran, with its learned thresholds and leak (``record.model``).
    """
    if not isinstance(variables, Mapping):
        raise ValueError(f"variables must be a mapping, got {type(variables).__name__}")
    variables = {k: v for k, v in variables.items() if k != RECORD_COLLECTION}
    run, order, layers = _recorder(model, bool(train))
    out, mutated = run(variables, x)
    records = collect(mutated.get(RECORD_COLLECTION, {}), order=list(order))
    models = {path: _layer_model(m, variables, path) for path, m in layers.items()}
    return out, {
        name: rec._replace(model=models.get(name.split("[")[0])) for name, rec in records.items()
    }


def _layer_model(model: NeuronModel, variables: Mapping[str, Any], path: str) -> NeuronModel:
    """``model`` with the learned parameters that ``variables`` hold for the layer at
    ``path`` (``'/'``-joined) as its settings."""
    params: Any = variables.get("params", {})
    for key in filter(None, path.split("/")):
        params = params.get(key, {}) if isinstance(params, Mapping) else {}
    learned = {k: v for k, v in params.items() if not isinstance(v, Mapping)}
    return model.with_params(learned)


def _neuron_models(layers: dict[str, NeuronModel]):
    """Interceptor that notes the neuron model of every :class:`mlf_jax.nn.Neuron` called."""

    def interceptor(next_fun, args, kwargs, context):
        if isinstance(context.module, Neuron) and context.method_name == "__call__":
            layers.setdefault(join_path(context.module.path), context.module.model)
        return next_fun(*args, **kwargs)

    return interceptor


@per_model
def _recorder(model: nn.Module, train: bool):
    """``(jitted apply with intermediates, call order, neuron models by layer path)``; the
    order and the models are filled when traced."""
    mutable = [RECORD_COLLECTION, "batch_stats"] if train else [RECORD_COLLECTION]
    order: dict[str, None] = {}
    layers: dict[str, NeuronModel] = {}

    def run(variables, x):
        order.clear()
        layers.clear()
        with (
            nn.intercept_methods(_completion_order(order)),
            nn.intercept_methods(_neuron_models(layers)),
        ):
            return model.apply(variables, x, train=train, mutable=mutable)

    return jax.jit(run), order, layers
