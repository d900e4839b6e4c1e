"""Saving and loading a ResNet with its variables: a msgpack file and a JSON sidecar.

``save(path, model, variables, **info)`` writes ``<stem>.msgpack`` (flax's msgpack of the
variables) and ``<stem>.json``: the model's settings under ``'resnet'``, the checksum of the
weights, the parameter count and whatever ``info`` holds (input preprocessing, class names,
results). ``load(path)`` gives back the model, its variables and that information, checked
against each other; it needs only the library (no clone, no experiment config).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from mlf_jax import zoo
from mlf_jax.files import dumps, is_remote
from mlf_jax.models._count import num_params
from mlf_jax.models._pair import locked, pending_path, settle, write_pair
from mlf_jax.models.resnet import MLF_SETTINGS, ResNet, route_neuron_settings
from mlf_jax.surrogate import _FAMILIES, Surrogate
from mlf_jax.zoo import ZOO

__all__ = ["ModelFileError", "load", "save", "spec_of", "from_spec", "preprocess"]

#: The sidecar's ``'resnet_format'``: how ``'resnet'`` describes the model.
SPEC_FORMAT = 1
#: Sidecar keys that ``save`` computes (``info`` may not replace them).
RESERVED = ("weights_file", "sha256", "resnet", "resnet_format", "num_params")


class ModelFileError(ValueError):
    """A weights file or sidecar that cannot be loaded; the message names the file."""


#: ResNet fields that say how one run computed, not what the model is: left out of the
#: sidecar and ignored where an older one has them (a loaded model runs on one device; data
#: parallel code sets its device axis itself).
_HOW_RUN = ("axis_name",)


def spec_of(model: ResNet) -> dict[str, Any]:
    """The settings of ``model`` as JSON values (what the sidecar's ``'resnet'`` holds).

    The ResNet's fields but its device axis (``axis_name``), and its neuron: an MLF neuron
    by its settings under their ResNet names (:data:`mlf_jax.models.MLF_SETTINGS`), any
    other neuron of :data:`mlf_jax.zoo.ZOO` as ``'neuron': {'model': <its ZOO name>, <its
    fields>}``.

    Raises:
      ValueError: for a model that has no such description: a neuron given as a layer
        factory or a neuron model of your own, or a surrogate that is not one of the
        library's families.
    """
    neuron = model.neuron
    names: dict[type, str] = {cls: name for name, cls in ZOO.items()}
    if type(neuron) not in names:
        raise ValueError(
            f"a ResNet whose neuron is {type(neuron).__name__} (not a model of mlf_jax.zoo.ZOO) "
            "cannot be described by its settings; save its variables with "
            "flax.serialization and build the model in code"
        )
    spec: dict[str, Any] = {
        f.name: getattr(model, f.name)
        for f in dataclasses.fields(ResNet)
        if f.name not in ("parent", "name", "neuron", *_HOW_RUN)
    }
    if type(neuron) is zoo.MLF:
        spec.update({key: getattr(neuron, field) for key, field in MLF_SETTINGS.items()})
    else:
        spec["neuron"] = {"model": names[type(neuron)], **_json_values(_fields(neuron))}
    return _json_values(spec)


def _fields(obj: Any) -> dict[str, Any]:
    """A dataclass's fields by name (not recursively, unlike ``dataclasses.asdict``)."""
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _json_values(spec: dict[str, Any]) -> dict[str, Any]:
    """``spec`` with surrogates, dtypes and tuples as JSON values."""
    out = {}
    for key, value in spec.items():
        if key == "surrogate":
            value = _surrogate_spec(value)
        elif key == "dtype":
            value = None if value is None else jnp.dtype(value).name
        elif isinstance(value, tuple):
            value = list(value)
        out[key] = value
    return json.loads(json.dumps(out))


def from_spec(spec: dict[str, Any]) -> ResNet:
    """The :class:`ResNet` that :func:`spec_of` described.

    Raises:
      ValueError: naming an unknown setting, neuron model or surrogate family.
    """
    names = {f.name for f in dataclasses.fields(ResNet)} - {"parent", "name"}
    if unknown := sorted(set(spec) - names - set(MLF_SETTINGS)):
        raise ValueError(
            f"unknown ResNet settings {unknown}; known: {sorted(names | set(MLF_SETTINGS))}"
        )
    kwargs = {k: v for k, v in _python_values(spec).items() if k not in _HOW_RUN}
    if "neuron" in kwargs:
        neuron = _python_values(kwargs["neuron"])
        name = neuron.pop("model", None)
        if name not in ZOO:
            raise ValueError(f"unknown neuron model {name!r}; known: {sorted(ZOO)}")
        kwargs["neuron"] = ZOO[name](**neuron)
    return ResNet(**route_neuron_settings(kwargs))


def _python_values(spec: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`_json_values`: surrogates, dtypes and tuples from JSON."""
    out = dict(spec)
    if "surrogate" in out:
        out["surrogate"] = _surrogate_of(out["surrogate"])
    if out.get("dtype") is not None:
        out["dtype"] = jnp.dtype(out["dtype"])
    return {k: tuple(v) if isinstance(v, list) else v for k, v in out.items()}


def _surrogate_spec(surrogate: Surrogate | str) -> dict[str, Any]:
    if isinstance(surrogate, str):
        return {"family": surrogate}
    for name, family in _FAMILIES.items():
        if type(surrogate) is family:
            return {"family": name, **dataclasses.asdict(surrogate)}  # type: ignore[call-overload]
    raise ValueError(
        f"surrogate {surrogate!r} is not one of the library's families {sorted(_FAMILIES)}, "
        "so it cannot be saved by name"
    )


def _surrogate_of(spec: dict[str, Any]) -> Surrogate:
    spec = dict(spec)
    family = spec.pop("family")
    if family not in _FAMILIES:
        raise ValueError(f"unknown surrogate family {family!r}; known: {sorted(_FAMILIES)}")
    return _FAMILIES[family](**spec)


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """``(<stem>.msgpack, <stem>.json)`` for ``path`` with either suffix or none."""
    given = Path(path)
    stem = given.with_suffix("") if given.suffix in (".msgpack", ".json") else given
    return stem.parent / (stem.name + ".msgpack"), stem.parent / (stem.name + ".json")


def save(path: str | os.PathLike, model: ResNet, variables: dict[str, Any], /, **info: Any) -> Path:
    """Writes ``variables`` to ``<stem>.msgpack`` and the sidecar ``<stem>.json``.

    The two files are replaced as one unit: a kill or a full disk at any moment leaves the
    old pair or the new one (an interrupted save that had written both new files is
    completed by the next :func:`save` or :func:`load` of the stem, which says so), never
    weights beside a sidecar that describes others. Concurrent saves to one directory run
    one after the other (an advisory lock on the directory).

    Args:
      path: where to write (a local path), with or without the ``.msgpack`` suffix.
      model: the :class:`ResNet` the variables belong to (its settings go to the sidecar).
      variables: ``{'params', 'batch_stats'}`` as ``model.init`` returns them (or trained).
      **info: more JSON values for the sidecar, e.g. ``input`` (the preprocessing the
        model expects) and ``class_names``.

    Returns:
      The path of the weights file.

    Raises:
      ValueError: ``info`` names a computed field or is not JSON; the model cannot be
        described (see :func:`spec_of`); the variables do not fit the model; ``path`` is
        a remote URI.
    """
    if clash := sorted(set(info) & set(RESERVED)):
        raise ValueError(f"info fields {clash} would replace computed ones")
    spec = spec_of(model)
    check_variables(model, variables, "the variables")
    data = serialization.to_bytes(jax.tree.map(np.asarray, variables))
    if is_remote(path):
        raise ValueError(f"{os.fspath(path)}: save to a local path (then copy it to the store)")
    weights, sidecar = _paths(path)
    record = {
        "weights_file": weights.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "resnet_format": SPEC_FORMAT,
        "resnet": spec,
        "num_params": num_params(variables),
        **info,
    }
    try:  # before writing anything: info must be JSON
        text = dumps(json.loads(json.dumps(record)))
    except (TypeError, ValueError) as e:
        raise ValueError(f"the sidecar's information is not JSON: {e}") from None
    weights.parent.mkdir(parents=True, exist_ok=True)
    write_pair(weights, sidecar, data, text + "\n", record["sha256"])
    return weights


def load(path: str | os.PathLike) -> tuple[ResNet, dict[str, Any], dict[str, Any]]:
    """The model, its variables and the sidecar's information, from :func:`save`'s files.

    Args:
      path: the weights file (``.msgpack``), its sidecar (``.json``) or their stem.

    Returns:
      ``(model, variables, info)``: ``info`` is the whole sidecar (``'resnet'`` included).

    Raises:
      ModelFileError: naming the file that is missing, not JSON or msgpack, whose checksum
        differs from the sidecar's, or whose variables do not fit the described model; a
        remote URI (load reads local files).
    """
    if is_remote(path):
        raise ModelFileError(f"{os.fspath(path)}: load reads local files (copy them here first)")
    weights, sidecar = _paths(path)
    _settle(weights, sidecar)
    for file in (sidecar, weights):
        if not file.is_file():
            raise ModelFileError(f"{file}: no such file (save() writes both files)")
    try:
        info = json.loads(sidecar.read_text())
        spec = info["resnet"]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ModelFileError(f"{sidecar}: not JSON ({e})") from None
    except (KeyError, TypeError):
        raise ModelFileError(f"{sidecar}: no 'resnet' entry describing the model") from None
    data = weights.read_bytes()
    if "sha256" in info and hashlib.sha256(data).hexdigest() != info["sha256"]:
        raise ModelFileError(f"{weights}: its sha256 differs from the sidecar's (damaged?)")
    try:
        model = from_spec(spec)
    except (TypeError, ValueError) as e:
        raise ModelFileError(f"{sidecar}: {e}") from None
    try:
        variables = serialization.msgpack_restore(data)
    except Exception as e:  # msgpack's own errors
        raise ModelFileError(f"{weights}: not a flax msgpack file ({e})") from None
    try:
        check_variables(model, variables, str(weights))
    except ValueError as e:
        raise ModelFileError(str(e)) from None
    return model, variables, info


def _settle(weights: Path, sidecar: Path) -> None:
    """Completes (or discards) an interrupted save of the pair before it is read, with a
    one-line warning saying which; refuses in one line where that cannot be done here."""
    if not weights.parent.is_dir():
        return  # the missing file is named next
    try:
        with locked(weights.parent):
            notice = settle(weights, sidecar)
    except OSError as e:
        if pending_path(sidecar).exists():
            raise ModelFileError(
                f"{sidecar}: a save was interrupted and cannot be completed here "
                f"({e.strerror or e}); load it where its directory is writable"
            ) from None
        return  # a read-only directory with nothing to complete: read as it is
    if notice:
        warnings.warn(notice, stacklevel=3)


def check_variables(model: ResNet, variables: dict[str, Any], what: str = "variables") -> None:
    """Checks that ``variables`` are ``model``'s: every name and shape that ``model.init``
    makes (found by ``jax.eval_shape``, nothing computed), and no other.

    Raises:
      ValueError: naming ``what`` and the first variable whose name or shape differs.
    """
    try:
        channels = model.in_channels or _input_channels(variables)
    except (KeyError, TypeError, IndexError):
        raise ValueError(f"{what}: no params/stem_conv/kernel of a ResNet") from None
    x = jnp.zeros((1, 8, 8, channels))  # parameter shapes do not depend on the image size
    want = jax.eval_shape(lambda: model.init(jax.random.key(0), x))
    flat_want = {jax.tree_util.keystr(k): v.shape for k, v in _leaves(want)}
    flat_have = {jax.tree_util.keystr(k): np.shape(v) for k, v in _leaves(variables)}
    for key in sorted(set(flat_want) | set(flat_have)):
        if flat_want.get(key) != flat_have.get(key):
            raise ValueError(
                f"{what}: {key} is {flat_have.get(key, 'missing')} but the model's is "
                f"{flat_want.get(key, 'absent')}"
            )


def _leaves(tree: Any) -> list:
    return jax.tree_util.tree_flatten_with_path(tree)[0]


def _input_channels(variables: dict[str, Any]) -> int:
    """The stem convolution's input channels (kernel ``[3, 3, C_in, C_out]``)."""
    return int(np.shape(variables["params"]["stem_conv"]["kernel"])[2])


def preprocess(images: Any, info: Mapping[str, Any]) -> jax.Array:
    """Raw examples made into what a loaded model takes, as its sidecar's ``'input'``
    describes: static images divided by ``peak`` (the pixel value that becomes 1, e.g. 255),
    then normalised by ``mean`` and ``std`` (per channel where they are lists) when the
    model was trained on normalised images; event frames as float32 counts.

    Args:
      images: ``[B, *shape]`` or one example ``shape`` (``info['input']['shape']``, e.g.
        ``[28, 28, 1]`` for Fashion-MNIST), any numeric dtype (raw ``uint8`` pixels).
      info: the information :func:`load` returns (or its ``'input'`` entry).

    Returns:
      float32 ``[B, *shape]`` (a batch of one for one example).

    Raises:
      ValueError: ``info`` describes no input (a model saved without one), or the shape of
        ``images`` is not the described one.
    """
    desc = info.get("input", info)
    if not isinstance(desc, Mapping) or "shape" not in desc:
        raise ValueError(
            "info holds no input description (info['input'] with 'shape', 'peak', 'mean' and "
            "'std', which experiments.export writes): preprocess the images by hand"
        )
    x = np.asarray(images)
    shape = tuple(desc["shape"])
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape:
        raise ValueError(
            f"expected images of shape [B, {', '.join(map(str, shape))}], got {x.shape}"
        )
    x = x.astype(np.float32)
    if "peak" in desc or "mean" in desc:
        x = x / np.float32(desc.get("peak") or _peak_of(desc))
    if "mean" in desc:
        mean = np.asarray(desc["mean"], np.float32)
        std = np.asarray(desc["std"], np.float32)
        x = (x - mean) / std
    return jnp.asarray(x)


def _peak_of(desc: Mapping[str, Any]) -> float:
    """The divisor of a sidecar written before ``'peak'`` was recorded: its
    ``'normalization'`` starts ``'x / <peak>'``."""
    text = str(desc.get("normalization", ""))
    if not text.startswith("x / "):
        raise ValueError(f"the input description gives no peak pixel value: {text!r}")
    return float(text[4:].split(",")[0].split()[0])
