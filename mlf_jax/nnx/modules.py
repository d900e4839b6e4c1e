"""The NNX modules: each one the library's Linen module of the same name, run through
``flax.nnx.bridge.ToNNX`` (one description of every neuron, block and topology)."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax
import jax.numpy as jnp
import numpy as np
from flax import linen, nnx
from flax.nnx import traversals
from flax.nnx.bridge import variables as bridge_variables

from mlf_jax import models, zoo
from mlf_jax import nn as mjnn
from mlf_jax.models.resnet import route_neuron_settings
from mlf_jax.zoo import NeuronModel

__all__ = [
    "Neuron",
    "MLF",
    "TdBatchNorm",
    "BasicBlock",
    "ResNet",
    "resnet",
    "cifar10_resnet20",
    "gesture_resnet20",
    "cifar10dvs_resnet14",
    "from_linen",
    "to_linen",
    "save",
    "load",
]

_FLAX = tuple(int(p) for p in flax.__version__.split(".")[:2])
if _FLAX < (0, 12):  # ToNNX keeps its own attributes apart from the variables since 0.12
    raise ImportError(
        f"mlf_jax.nnx needs flax >= 0.12 (its nnx.bridge.ToNNX); this is flax {flax.__version__}"
    )

#: The default neuron: the paper's MLF.
_PAPER_NEURON = zoo.MLF()

#: The sample image side used to create a ResNet's variables (their shapes do not depend
#: on the image size).
_SIDE = 8


def _linen_fields(module: linen.Module) -> dict[str, Any]:
    return {
        f.name: getattr(module, f.name)
        for f in dataclasses.fields(module)
        if f.name not in ("parent", "name")
    }


def _merge(variables: Mapping[str, Any]) -> dict[Any, Any]:
    """Linen ``{'params': {...}, 'batch_stats': {...}}`` as one tree without the collection
    level: the layout of ``nnx.state`` of a bridged module."""
    flat: dict[tuple, Any] = {}
    for collection, tree in variables.items():
        if collection == mjnn.RECORD_COLLECTION:
            continue
        for path, value in traversals.flatten_mapping(dict(tree)).items():
            if path in flat:
                raise ValueError(f"{'/'.join(map(str, path))} is in two collections")
            flat[path] = value
    return flat


class _Bridged(nnx.bridge.ToNNX):
    """A Linen module of the library as an NNX module: ``ToNNX`` whose variables are created
    when it is built (from a sample input), with NNX's train/eval mode."""

    def __init__(
        self,
        module: linen.Module,
        sample: Any,
        *,
        rngs: nnx.Rngs | None,
        variables: Mapping[str, Any] | None = None,
        use_running_average: bool = False,
        keep_rngs: bool = False,
    ):
        super().__init__(module, rngs=nnx.Rngs(0) if rngs is None else rngs)
        self.to_nnx__use_running_average = bool(use_running_average)
        nnx.bridge.lazy_init(self._create, sample)
        if not keep_rngs:  # the parameters are made: no rng state (nothing else draws)
            self.to_nnx__rngs = None
        if variables is not None:
            self._assign(variables)

    # NNX's mode attribute: Module.train() / eval() set it on every module that has it.
    @property
    def use_running_average(self) -> bool:
        """``True``: eval mode (tdBN with its running statistics); ``False``: train mode
        (each batch's statistics, and the running ones updated in place)."""
        return self.to_nnx__use_running_average

    @use_running_average.setter
    def use_running_average(self, value: bool) -> None:
        self.to_nnx__use_running_average = bool(value)

    def _call_kwargs(self, train: bool) -> dict[str, Any]:
        return {"train": train}

    def __call__(  # type: ignore[override]  # NNX's call, not ToNNX's apply arguments
        self, x: Any, *, use_running_average: bool | None = None
    ) -> Any:
        """The Linen module applied to ``x`` with this module's variables.

        ``use_running_average`` (default: the module's mode) overrides the mode for this
        call, as ``nnx.BatchNorm``'s does. In train mode the running statistics are updated.
        """
        eval_mode = self.use_running_average if use_running_average is None else use_running_average
        return self._apply(x, train=not eval_mode)

    def _create(self, sample: Any) -> Any:
        """Run by ``lazy_init`` when the module is built: ToNNX creates the variables."""
        return nnx.bridge.ToNNX.__call__(self, sample, **self._call_kwargs(False))

    def _apply(self, x: Any, train: bool) -> Any:
        """``apply`` of the Linen module; the updated statistics are written into the
        module's own ``nnx.BatchStat`` variables (``ToNNX.__call__`` would replace them by new
        ones, a change of the graph that ``nnx.cached_partial`` refuses)."""
        attrs = {k: v for k, v in vars(self).items() if not k.startswith(("to_nnx__", "_pytree__"))}
        variables = bridge_variables.nnx_attrs_to_linen_vars(attrs)
        rngs = self.to_nnx__rngs
        out = self.to_nnx__module.apply(
            variables,
            x,
            rngs={"encoder": rngs.encoder()} if rngs is not None else None,
            mutable=["batch_stats"] if train else False,
            **self._call_kwargs(train),
        )
        if not train:
            return out
        out, updates = out
        for path, value in traversals.flatten_mapping(updates.get("batch_stats", {})).items():
            node: Any = getattr(self, path[0])
            for key in path[1:]:
                node = node[key]
            node.set_value(value)
        return out

    @property
    def linen_module(self) -> linen.Module:
        """The Linen module this one runs (its description: fields, topology, names)."""
        return self.to_nnx__module

    def _assign(self, variables: Mapping[str, Any]) -> None:
        """Replaces the state by Linen ``variables`` of the same names and shapes."""
        state = nnx.state(self)
        want = {
            p: np.shape(v) for p, v in traversals.flatten_mapping(nnx.to_pure_dict(state)).items()
        }
        have = _merge(variables)
        for path in sorted(set(want) | set(have), key=str):
            if want.get(path) != (np.shape(have[path]) if path in have else None):
                shown = np.shape(have[path]) if path in have else "missing"
                raise ValueError(
                    f"variables: {'/'.join(map(str, path))} is {shown} but the model's is "
                    f"{want.get(path, 'absent')}"
                )
        nnx.replace_by_pure_dict(
            state, traversals.unflatten_mapping({p: jnp.asarray(v) for p, v in have.items()})
        )
        nnx.update(self, state)


def to_linen(module: nnx.Module) -> tuple[linen.Module, dict[str, Any]]:
    """``(linen_module, variables)``: the Linen module that an NNX module of this package
    runs, and its state as Linen variables (``{'params', 'batch_stats'}``, the collections it
    has), so that ``linen_module.apply(variables, x)`` computes what ``module.eval()(x)``
    does."""
    if not isinstance(module, _Bridged):
        raise TypeError(f"expected a module of mlf_jax.nnx, got {type(module).__name__}")
    variables = {}
    for collection, kind in (("params", nnx.Param), ("batch_stats", nnx.BatchStat)):
        tree = nnx.to_pure_dict(nnx.state(module, kind))
        if tree:
            variables[collection] = tree
    return module.linen_module, variables


class Neuron(_Bridged):
    """The spiking layer running a neuron model over time-major ``[T, B, ...]``
    (:class:`mlf_jax.nn.Neuron` in NNX): the parameters the layer learns (``learn``, by
    default ``model.learned``: e.g. ``tau_logit`` of :class:`mlf_jax.zoo.PLIF`,
    ``thresholds_raw`` of ``MLF(learn_thresholds=True)``) are ``nnx.Param``; the layer has
    no mode. ``rngs`` is optional (nothing is drawn).
    """

    def __init__(
        self,
        model: NeuronModel = _PAPER_NEURON,
        learn: Any = None,
        unroll: int | bool | None = None,
        param_dtype: Any = jnp.float32,
        *,
        rngs: nnx.Rngs | None = None,
        variables: Mapping[str, Any] | None = None,
    ):
        layer = mjnn.Neuron(model=model, learn=learn, unroll=unroll, param_dtype=param_dtype)
        super().__init__(layer, jnp.zeros((1, 1), jnp.float32), rngs=rngs, variables=variables)

    def _call_kwargs(self, train: bool) -> dict[str, Any]:
        return {}

    def __call__(  # type: ignore[override]
        self, x: Any, *, use_running_average: bool | None = None
    ) -> Any:
        """Spikes (or spike counts) of the input's shape ``[T, B, ...]``."""
        return self._apply(x, train=False)

    @property  # type: ignore[misc]
    def use_running_average(self) -> bool:  # a neuron layer has no mode
        raise AttributeError("use_running_average")

    @property
    def model(self) -> NeuronModel:
        """The neuron model the layer runs."""
        return self.to_nnx__module.model

    def model_params(self) -> dict[str, Any]:
        """All of the model's parameters, the learned ones as the layer holds them now."""
        return self.to_nnx__module.model_params(nnx.to_pure_dict(nnx.state(self, nnx.Param)))


def MLF(  # noqa: N802 - a layer preset, named as the class it stands for
    *,
    unroll: int | bool | None = None,
    param_dtype: Any = jnp.float32,
    rngs: nnx.Rngs | None = None,
    **settings: Any,
) -> Neuron:
    """The multi-level firing layer in NNX: :class:`Neuron` running
    ``mlf_jax.zoo.MLF(**settings)`` (as :func:`mlf_jax.nn.MLF` in Linen)."""
    return Neuron(model=zoo.MLF(**settings), unroll=unroll, param_dtype=param_dtype, rngs=rngs)


class TdBatchNorm(_Bridged):
    """tdBN (:class:`mlf_jax.nn.TdBatchNorm`) over ``num_features`` channels (the last
    axis); ``fields`` are the Linen module's (``v_th``, ``alpha``, ``momentum``,
    ``epsilon``, ``use_scale``, ``use_bias``, ``axis_name``, ``dtype``). ``scale`` and
    ``bias`` are ``nnx.Param``, the running ``mean`` and ``var`` ``nnx.BatchStat``. Its
    Linen module (:func:`to_linen`) takes ``use_running_average`` at each call."""

    def __init__(
        self,
        num_features: int,
        *,
        use_running_average: bool = False,
        rngs: nnx.Rngs | None = None,
        variables: Mapping[str, Any] | None = None,
        **fields: Any,
    ):
        fields.pop("use_running_average", None)  # the NNX mode, given at each call
        layer = mjnn.TdBatchNorm(use_running_average=None, **fields)  # type: ignore[arg-type]
        super().__init__(
            layer,
            jnp.zeros((1, num_features), jnp.float32),
            rngs=rngs,
            variables=variables,
            use_running_average=use_running_average,
        )

    def _call_kwargs(self, train: bool) -> dict[str, Any]:
        return {"use_running_average": not train}


def _neuron_factory(neuron: Any) -> Any:
    return (
        functools.partial(mjnn.Neuron, model=neuron) if isinstance(neuron, NeuronModel) else neuron
    )


class BasicBlock(_Bridged):
    """The spiking residual block (:class:`mlf_jax.nn.BasicBlock`: DS or standard
    shortcut) from ``in_features`` to ``features`` channels on time-major
    ``[T, B, H, W, C]``; ``fields`` are the Linen block's (``strides``, ``shortcut``,
    ``norm``, ``dtype``, ``conv_impl``), and ``neuron`` a neuron model (default the
    paper's MLF) or a factory of Linen layers."""

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        neuron: Any = _PAPER_NEURON,
        use_running_average: bool = False,
        rngs: nnx.Rngs | None = None,
        variables: Mapping[str, Any] | None = None,
        **fields: Any,
    ):
        block = mjnn.BasicBlock(features, neuron=_neuron_factory(neuron), **fields)
        sample = jnp.zeros((1, 1, _SIDE, _SIDE, in_features), jnp.float32)
        super().__init__(
            block, sample, rngs=rngs, variables=variables, use_running_average=use_running_average
        )


class ResNet(_Bridged):
    """A spiking ResNet (:class:`mlf_jax.models.ResNet`) in NNX.

    ``fields`` are the Linen ResNet's (``stage_sizes``, ``widths``, ``num_classes``,
    ``shortcut``, ``time_steps``, ``encoder``, ``neuron``, ...) and the MLF neuron's settings
    by name (:data:`mlf_jax.models.MLF_SETTINGS`). ``in_channels`` is required (an NNX
    module creates its parameters when it is built). ``variables`` (Linen
    ``{'params', 'batch_stats'}``) replace the initial ones. A ``'rate'`` encoder draws
    from the ``rngs`` stream ``'encoder'`` (else its default stream), kept in the model.

    Calling it gives the logits ``[B, num_classes]`` of ``[B, H, W, C]`` images or
    time-major ``[T, B, H, W, C]`` frames.
    """

    def __init__(
        self,
        *,
        rngs: nnx.Rngs | None = None,
        variables: Mapping[str, Any] | None = None,
        use_running_average: bool = False,
        **fields: Any,
    ):
        net = models.ResNet(**route_neuron_settings(dict(fields)))
        channels = net.in_channels
        if channels is None and variables is not None:
            channels = int(np.shape(variables["params"]["stem_conv"]["kernel"])[2])
        if channels is None:
            raise ValueError(
                "an NNX ResNet creates its parameters when it is built: give in_channels "
                "(e.g. in_channels=1 for grey images)"
            )
        sample = jnp.zeros((1, _SIDE, _SIDE, channels), jnp.float32)
        super().__init__(
            net,
            sample,
            rngs=rngs,
            variables=variables,
            use_running_average=use_running_average,
            keep_rngs=net.encoder == "rate",
        )
        if net.encoder == "rate":
            source = self.to_nnx__rngs
            assert source is not None
            self.to_nnx__rngs = nnx.Rngs(encoder=source.encoder())

    def neuron_model(self) -> NeuronModel | None:
        """The neuron model of every spiking layer (``None`` for a factory of layers)."""
        return self.to_nnx__module.neuron_model()


def resnet(depth: int, *, rngs: nnx.Rngs | None = None, **fields: Any) -> ResNet:
    """A three-stage :class:`ResNet` of depth ``6n + 2`` (as ``mlf_jax.models.resnet``):
    ``mj.nnx.resnet(8, widths=(16, 32, 64), in_channels=1, rngs=nnx.Rngs(0))``."""
    return ResNet(stage_sizes=models.stage_sizes_for_depth(depth), rngs=rngs, **fields)


def cifar10_resnet20(*, rngs: nnx.Rngs | None = None, **overrides: Any) -> ResNet:
    """DS-ResNet-20 for CIFAR10 (:func:`mlf_jax.models.cifar10_resnet20`) in NNX."""
    return from_linen(models.cifar10_resnet20(**overrides), rngs=rngs)


def gesture_resnet20(*, rngs: nnx.Rngs | None = None, **overrides: Any) -> ResNet:
    """DS-ResNet-20 for DVS128 Gesture (:func:`mlf_jax.models.gesture_resnet20`) in NNX."""
    return from_linen(models.gesture_resnet20(**overrides), rngs=rngs)


def cifar10dvs_resnet14(*, rngs: nnx.Rngs | None = None, **overrides: Any) -> ResNet:
    """DS-ResNet-14 for CIFAR10-DVS (:func:`mlf_jax.models.cifar10dvs_resnet14`) in NNX."""
    return from_linen(models.cifar10dvs_resnet14(**overrides), rngs=rngs)


def from_linen(
    module: linen.Module,
    variables: Mapping[str, Any] | None = None,
    *,
    rngs: nnx.Rngs | None = None,
    use_running_average: bool = False,
    in_features: int | None = None,
) -> Any:
    """The NNX module of this package for a Linen module of the library (a
    :class:`mlf_jax.models.ResNet`, :class:`mlf_jax.nn.Neuron`,
    :class:`mlf_jax.nn.TdBatchNorm` or :class:`mlf_jax.nn.BasicBlock`), with ``variables``
    (Linen's, e.g. trained) or new ones from ``rngs``.

    A ResNet's ``axis_name`` is dropped: data parallelism with ``jax.sharding`` takes tdBN's
    statistics over the global batch without one (as :func:`mlf_jax.models.load` drops it).
    ``in_features``: a block's or a tdBN's input channels, when no ``variables`` give them
    (a ResNet's come from its ``in_channels``).
    """
    fields = _linen_fields(module)
    if isinstance(module, models.ResNet):
        fields.pop("axis_name")
        if fields["in_channels"] is None and in_features is not None:
            fields["in_channels"] = in_features
        return ResNet(
            rngs=rngs, variables=variables, use_running_average=use_running_average, **fields
        )
    if isinstance(module, mjnn.Neuron):
        return Neuron(**fields, rngs=rngs, variables=variables)
    params = (variables or {}).get("params", {})
    if isinstance(module, mjnn.TdBatchNorm):
        stats = (variables or {}).get("batch_stats", {})
        n = in_features or (int(np.shape(stats["mean"])[0]) if "mean" in stats else None)
        if n is None:
            raise ValueError("give in_features (the channels) or the variables")
        fields.pop("use_running_average")
        return TdBatchNorm(
            n, rngs=rngs, variables=variables, use_running_average=use_running_average, **fields
        )
    if isinstance(module, mjnn.BasicBlock):
        n = in_features or (
            int(np.shape(params["conv1"]["kernel"])[2]) if "conv1" in params else None
        )
        if n is None:
            raise ValueError("give in_features (the input channels) or the variables")
        features = fields.pop("features")
        return BasicBlock(
            n,
            features,
            rngs=rngs,
            variables=variables,
            use_running_average=use_running_average,
            **fields,
        )
    raise TypeError(
        f"no NNX module for {type(module).__name__}: expected a ResNet, Neuron, TdBatchNorm or "
        "BasicBlock of mlf_jax (any other Linen module: flax.nnx.bridge.ToNNX)"
    )


def save(path: str | os.PathLike, model: ResNet, /, **info: Any) -> Path:
    """Writes an NNX :class:`ResNet` as :func:`mlf_jax.models.save` writes a Linen one (the
    weights file and its JSON sidecar, ``info`` in it): :func:`mlf_jax.models.load` and
    :func:`load` read it back."""
    if not isinstance(model, ResNet):
        raise TypeError(f"save writes a mlf_jax.nnx.ResNet, got {type(model).__name__}")
    net, variables = to_linen(model)
    assert isinstance(net, models.ResNet)
    return models.save(path, net, variables, **info)


def load(path: str | os.PathLike) -> tuple[ResNet, dict[str, Any]]:
    """``(model, info)`` from the files of :func:`mlf_jax.models.save` (or :func:`save`):
    the NNX :class:`ResNet` with the saved weights, in eval mode, and the sidecar's
    information (``mlf_jax.models.preprocess(images, info)`` prepares its input).

    Raises:
      mlf_jax.models.ModelFileError: as :func:`mlf_jax.models.load`.
    """
    net, variables, info = models.load(path)
    return from_linen(net, variables, use_running_average=True), info
