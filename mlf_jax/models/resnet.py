"""Spiking ResNets: the DS-ResNet of Feng et al. (2022) and the spiking ResNet baseline."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from mlf_jax import encoders, zoo
from mlf_jax.nn.blocks import BasicBlock, check_shortcut, conv3x3, kaiming_normal
from mlf_jax.nn.neuron import Neuron
from mlf_jax.nn.normalization import TdBatchNorm
from mlf_jax.zoo import NeuronModel

__all__ = [
    "ResNet",
    "resnet",
    "MLF_SETTINGS",
    "check_neuron",
    "stage_sizes_for_depth",
    "cifar10_resnet20",
    "gesture_resnet20",
    "cifar10dvs_resnet14",
]


def stage_sizes_for_depth(depth: int, stages: int = 3) -> tuple[int, ...]:
    """``depth = 2 * stages * n + 2`` -> ``(n,) * stages`` (6n + 2 for three stages)."""
    per = 2 * stages
    if not isinstance(depth, int) or depth < per + 2 or (depth - 2) % per:
        raise ValueError(
            f"depth must be {per}n + 2 with n >= 1 for {stages} stages "
            f"(e.g. {per + 2}, {2 * per + 2}, {3 * per + 2}), got {depth!r}"
        )
    return ((depth - 2) // per,) * stages


#: The MLF neuron's settings that ``mj.models.resnet`` and the presets take by name, as the
#: shorthand of ``neuron=mlf_jax.zoo.MLF(...)`` (the names of configs and sidecars): each
#: ResNet keyword and the :class:`mlf_jax.zoo.MLF` field it sets.
MLF_SETTINGS: dict[str, str] = {
    ("neuron_impl" if f.name == "impl" else f.name): f.name for f in dataclasses.fields(zoo.MLF)
}


def check_neuron(neuron: Any) -> None:
    """``neuron`` is a neuron model instance, a factory of layers or ``None`` (the default
    MLF neuron); else a ``TypeError`` naming what was given and what is accepted."""
    if neuron is None or isinstance(neuron, NeuronModel):
        return
    accepted = (
        "a neuron model (e.g. neuron=mj.zoo.PLIF()) or a factory of spiking layers called as "
        "neuron(name=...) (e.g. functools.partial(mj.nn.Neuron, model=mj.zoo.PLIF()))"
    )
    if isinstance(neuron, type) and issubclass(neuron, NeuronModel):
        raise TypeError(
            f"neuron={neuron.__name__} is a neuron model class: pass an instance, "
            f"neuron={neuron.__module__.replace('mlf_jax', 'mj')}.{neuron.__name__}()"
        )
    if isinstance(neuron, nn.Module):
        raise TypeError(
            f"neuron={type(neuron).__name__}(...) is a built layer, not a factory; pass {accepted}"
        )
    if not callable(neuron):
        raise TypeError(f"neuron={neuron!r} ({type(neuron).__name__}) is not {accepted}")


def route_neuron_settings(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the MLF settings given by name (:data:`MLF_SETTINGS`) made into
    ``neuron=zoo.MLF(...)`` (on top of a given ``zoo.MLF``); refused with another neuron,
    which would ignore them."""
    if "neuron" in kwargs:
        check_neuron(kwargs["neuron"])
        if kwargs["neuron"] is None:  # the default neuron
            del kwargs["neuron"]
    settings = {MLF_SETTINGS[k]: kwargs.pop(k) for k in list(kwargs) if k in MLF_SETTINGS}
    if not settings:
        return kwargs
    neuron = kwargs.get("neuron", zoo.MLF())
    if type(neuron) is not zoo.MLF:
        given = ", ".join(k for k, v in MLF_SETTINGS.items() if v in settings)
        what = type(neuron).__name__ if isinstance(neuron, NeuronModel) else "a layer factory"
        raise ValueError(
            f"{given}: settings of the MLF neuron, which neuron={what} would ignore; set "
            "them on the neuron you pass instead"
        )
    kwargs["neuron"] = dataclasses.replace(neuron, **settings)
    return kwargs


class ResNet(nn.Module):
    """Spiking ResNet of depth ``6n + 2`` with MLF neurons and tdBN, as in the authors' code.

    Stem conv3x3 -> tdBN -> MLF; stages of :class:`BasicBlock` (stride 2 at the
    start of every stage but the first); global average pooling; a dense layer
    applied at each time step; logits averaged over time.

    Attributes:
      stage_sizes: blocks per stage (``(3, 3, 3)`` is ResNet-20).
      widths: channels per stage.
      num_classes: output classes.
      shortcut: ``'ds'`` (DS-ResNet, add after the neuron) or ``'standard'``.
      time_steps: T. Static input ``[B, H, W, C]`` becomes T steps by ``encoder``;
        time-major input ``[T, B, H, W, C]`` must have this T.
      encoder: how static input becomes a sequence (:mod:`mlf_jax.encoders`):
        ``'direct'`` (default: repeated T times, the paper's direct encoding), ``'rate'``
        (Bernoulli spikes with probability ``clip(x, 0, 1)`` per step) or ``'latency'``
        (one spike per pixel, brighter earlier: at step ``floor((1 - c) (T - 1) + 1/2)``,
        ``c = clip(x, 0, 1)``). Time-major
        input is a sequence already and needs ``'direct'``. ``'rate'`` draws its key from
        the Flax rng stream ``'encoder'`` (``apply(..., rngs={'encoder': key})``;
        :func:`mlf_jax.train.train_step` passes one, new at every step): required when
        ``train=True``; in eval without one it uses ``jax.random.key(0)``, so evaluation
        is deterministic.
      input_norm: tdBN without affine parameters on the input (event data).
      in_channels: expected input channels (checked when set).
      neuron: the spiking layers' neuron: a neuron model (:class:`mlf_jax.zoo.NeuronModel`;
        default :class:`mlf_jax.zoo.MLF` with the paper's settings; ``None`` is that
        default too), run in a
        :class:`mlf_jax.nn.Neuron` layer at every position, or a factory of spiking layers,
        called as ``neuron(name=...)`` and the module it returns as ``layer(x)`` with
        time-major ``x`` ``[T, B, ...]``, returning the same shape (e.g.
        ``functools.partial(MyNeuron, beta=0.5)``). ``mj.models.resnet`` and the presets also
        take the MLF neuron's settings by name (:data:`MLF_SETTINGS`).
      unroll: the neuron layers' ``lax.scan`` unroll (``None``: by T, see
        :func:`mlf_jax.neurons.auto_unroll`).
      v_th: threshold used by tdBN (default: the neuron's first threshold, as its model
        starts; for a factory of layers, that of the default MLF neuron).
      bn_momentum: tdBN running-average momentum (Flax convention: 0.9 is PyTorch's 0.1).
      bn_epsilon: tdBN's epsilon, added to the standard deviation.
      axis_name: device axis for cross-device tdBN statistics (data parallelism).
      dtype: compute dtype of convolutions and the dense layer; parameters,
        normalisation and neuron state stay float32.
      remat: rematerialise each residual block in the backward pass
        (``nn.remat``): activations inside blocks are recomputed instead of
        stored, trading compute for memory in deep nets. XLA:CPU removes the
        optimisation barriers and merges the recomputation back into the forward
        pass, so on CPU this saves nothing; it is meant for GPU/TPU (see the
        benchmarks guide, section [Remat][bench-remat]).
      conv_impl: how convolutions are computed: ``'auto'`` (default: on CPU XLA's
        convolution with its kernel gradient as one matmul over patches, XLA's
        convolution elsewhere), ``'xla'``, ``'patch_grad'`` or ``'im2col'`` (one matmul
        over image patches, which keeps nine times the input of each 3x3 convolution for
        the backward pass); see :mod:`mlf_jax.nn.conv`.
    """

    stage_sizes: Sequence[int] = (3, 3, 3)
    widths: Sequence[int] = (64, 128, 256)
    num_classes: int = 10
    shortcut: str = "ds"
    time_steps: int = 4
    input_norm: bool = False
    in_channels: int | None = None
    encoder: str = "direct"
    unroll: int | bool | None = None
    v_th: float | None = None
    bn_momentum: float = 0.9
    bn_epsilon: float = 1e-5
    axis_name: str | None = None
    dtype: Any = jnp.float32
    remat: bool = False
    conv_impl: str = "auto"
    neuron: NeuronModel | Callable[..., nn.Module] | None = zoo.MLF()

    def neuron_model(self) -> NeuronModel | None:
        """The neuron model every spiking layer runs, or ``None`` for a factory of layers
        (its dynamics are its own)."""
        if self.neuron is None:
            return zoo.MLF()
        return self.neuron if isinstance(self.neuron, NeuronModel) else None

    def tdbn_threshold(self) -> float:
        """tdBN's ``v_th``: the field, else the neuron model's first threshold as it starts
        (that of the default MLF neuron for a factory of layers)."""
        if self.v_th is not None:
            return self.v_th
        model = self.neuron_model() or zoo.MLF()
        for name in ("thresholds", "threshold"):  # the field, exactly as given
            if hasattr(model, name):
                return float(np.ravel(getattr(model, name))[0])
        return float(np.ravel(np.asarray(model.level_thresholds()))[0])

    def _validate(self) -> None:
        check_shortcut(self.shortcut)
        check_neuron(self.neuron)
        if len(self.stage_sizes) != len(self.widths) or not self.widths:
            raise ValueError(
                f"stage_sizes and widths must have the same non-zero length, got "
                f"{tuple(self.stage_sizes)} and {tuple(self.widths)}"
            )
        if any(n < 1 for n in self.stage_sizes):
            raise ValueError(f"every stage needs at least one block, got {tuple(self.stage_sizes)}")
        if not isinstance(self.time_steps, int) or self.time_steps < 1:
            raise ValueError(f"time_steps must be a positive integer, got {self.time_steps!r}")
        if self.encoder not in encoders.ENCODERS:
            raise ValueError(
                f"unknown encoder {self.encoder!r}; expected one of {encoders.ENCODERS}"
            )

    def _encode(self, x: jax.Array, train: bool) -> jax.Array:
        """Static ``[B, H, W, C]`` -> ``[T, B, H, W, C]`` by ``self.encoder``."""
        if self.encoder == "direct":
            return encoders.direct(x, self.time_steps)
        if self.encoder == "latency":
            return encoders.latency(x, self.time_steps)
        if self.has_rng("encoder"):
            key = self.make_rng("encoder")
        elif train:
            raise ValueError(
                "encoder='rate' draws its spikes from the rng stream 'encoder' when "
                "training: pass apply(..., rngs={'encoder': key}) (mlf_jax.train.train_step "
                "does)"
            )
        else:
            key = jax.random.key(0)
        return encoders.rate(key, x, self.time_steps)

    def _time_major(self, x: jax.Array, train: bool) -> jax.Array:
        """Checks the input (floating: raw integer pixels are refused, not cast) and
        returns it as ``[T, B, H, W, C]``."""
        x = jnp.asarray(x)
        if x.ndim == 4:
            x = self._encode(x, train)
        elif x.ndim == 5:
            if self.encoder != "direct":
                raise ValueError(
                    f"encoder={self.encoder!r} encodes static images [B, H, W, C]; time-major "
                    f"input {x.shape} (e.g. event frames) is a sequence already: use "
                    "encoder='direct'"
                )
            if x.shape[0] != self.time_steps:
                raise ValueError(
                    f"time-major input has T={x.shape[0]} steps but the model expects "
                    f"time_steps={self.time_steps} (input shape {x.shape})"
                )
        else:
            raise ValueError(
                "expected input of rank 4 [B, H, W, C] (static, encoded over time) or "
                f"rank 5 [T, B, H, W, C] (time-major), got rank {x.ndim} with shape {x.shape}"
            )
        if self.in_channels is not None and x.shape[-1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channels (last axis, NHWC), got "
                f"{x.shape[-1]} (input shape {x.shape})"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise TypeError(
                f"ResNet expects floating input (images as the model was trained on them), got "
                f"dtype {x.dtype}: preprocess raw pixels first; for a loaded model, "
                "mj.models.preprocess(x, info) applies what its sidecar describes"
            )
        return x

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        """Logits ``[B, num_classes]`` averaged over the T time steps.

        ``train=True`` normalises with each batch's statistics and updates the running ones
        (apply with ``mutable=['batch_stats']``); ``False`` (the default, so that
        ``model.apply(variables, x)`` evaluates) uses the running statistics.
        """
        self._validate()
        x = self._time_major(x, train)
        v_th = self.tdbn_threshold()
        norm = functools.partial(
            TdBatchNorm,
            use_running_average=not train,
            v_th=v_th,
            momentum=self.bn_momentum,
            epsilon=self.bn_epsilon,
            axis_name=self.axis_name,
            dtype=jnp.float32,
        )
        neuron: Callable[..., nn.Module]
        model = self.neuron_model()
        if model is None:  # a factory of layers
            neuron = self.neuron  # type: ignore[assignment]
        else:  # the one neuron layer, running the model (the paper's MLF by default)
            neuron = functools.partial(Neuron, model=model, unroll=self.unroll)
        if self.input_norm:
            x = norm(use_scale=False, use_bias=False, name="input_bn")(x)

        x = conv3x3(self.widths[0], dtype=self.dtype, impl=self.conv_impl, name="stem_conv")(x)
        x = norm(name="stem_bn")(x)
        x = neuron(name="stem_neuron")(x)

        # static_argnums counts `self`: (self, x, train) -> `train` is static
        block = nn.remat(BasicBlock, static_argnums=(2,)) if self.remat else BasicBlock
        for i, (n, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for j in range(n):
                x = block(
                    width,
                    strides=2 if i > 0 and j == 0 else 1,
                    shortcut=self.shortcut,
                    neuron=neuron,
                    norm=norm,
                    dtype=self.dtype,
                    conv_impl=self.conv_impl,
                    name=f"stage{i + 1}_block{j + 1}",
                )(x, train)

        x = x.mean(axis=(2, 3))  # global average pooling: [T, B, C]
        logits = nn.Dense(
            self.num_classes,
            kernel_init=kaiming_normal,
            dtype=self.dtype,
            name="head",
        )(x)
        return logits.astype(jnp.float32).mean(axis=0)


def resnet(depth: int, **kwargs: Any) -> ResNet:
    """A three-stage ``ResNet`` of the given depth ``6n + 2``.

    ``kwargs`` are :class:`ResNet` fields, and the MLF neuron's settings by name
    (:data:`MLF_SETTINGS`: ``thresholds``, ``tau``, ``surrogate``, ``detach_reset``,
    ``learn_tau``, ``learn_thresholds``, ``neuron_impl``), which set ``neuron``'s
    :class:`mlf_jax.zoo.MLF`. ``resnet(8, thresholds=(0.6,))`` is
    ``resnet(8, neuron=mj.zoo.MLF(thresholds=(0.6,)))``.

    Raises:
      TypeError: ``neuron`` is neither a neuron model nor a factory of layers.
      ValueError: MLF settings given with another neuron (which would ignore them).
    """
    return ResNet(stage_sizes=stage_sizes_for_depth(depth), **route_neuron_settings(kwargs))


def cifar10_resnet20(**overrides: Any) -> ResNet:
    """DS-ResNet-20 for CIFAR10: widths 64/128/256, T = 4, 4,327,754 parameters."""
    kw = dict(
        stage_sizes=(3, 3, 3), widths=(64, 128, 256), num_classes=10, time_steps=4, in_channels=3
    )
    return ResNet(**route_neuron_settings({**kw, **overrides}))


def gesture_resnet20(**overrides: Any) -> ResNet:
    """DS-ResNet-20 for DVS128 Gesture: widths 16/32/64, T = 40, 2x32x32 frames, 272,395 params."""
    kw = dict(
        stage_sizes=(3, 3, 3),
        widths=(16, 32, 64),
        num_classes=11,
        time_steps=40,
        in_channels=2,
        input_norm=True,
    )
    return ResNet(**route_neuron_settings({**kw, **overrides}))


def cifar10dvs_resnet14(**overrides: Any) -> ResNet:
    """DS-ResNet-14 for CIFAR10-DVS: widths 32/64/128, T = 10, 2x42x42 frames, 696,330 params."""
    kw = dict(
        stage_sizes=(2, 2, 2), widths=(32, 64, 128), num_classes=10, time_steps=10, in_channels=2
    )
    return ResNet(**route_neuron_settings({**kw, **overrides}))
