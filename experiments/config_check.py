"""Every value of an experiment config checked up front: type and range, the key named.

:func:`validate` runs before any data is read or anything is compiled, in every entry
point (``experiments.train``, ``experiments.depth_study``, the benchmarks), so that a
typo or a wrong sign costs a second and one line, not a traceback after compilation
or, worse, a run that trains to chance with exit code 0.
"""

from __future__ import annotations

import math
import runpy
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from etils import epath

from experiments.errors import ConfigError
from experiments.run_identity import flatten

__all__ = [
    "Checked",
    "ConfigError",
    "RULES",
    "validate",
    "check_override_keys",
    "check_overrides",
    "load_config_file",
]


Rule = Callable[[Any], str | None]  # value -> None if fine, else what is wrong


def _integer(minimum: int, maximum: int | None = None) -> Rule:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return f"must be an integer, got {v!r} ({type(v).__name__})"
        if v < minimum or (maximum is not None and v > maximum):
            upper = f" and <= {maximum}" if maximum is not None else ""
            return f"must be >= {minimum}{upper}, got {v}"
        return None

    return check


def _number(
    low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = True
) -> Rule:
    """A finite real number between ``low`` and ``high`` (``[low, high)`` by default)."""

    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return f"must be a number, got {v!r} ({type(v).__name__})"
        if not math.isfinite(v):
            return f"must be finite, got {v}"
        if v < low or (low_open and v == low) or v > high or (high_open and v == high):
            lo = "(" if low_open else "["
            hi = ")" if high_open else "]"
            return f"must be in {lo}{low}, {high}{hi}, got {v}"
        return None

    return check


def _choice(options: Iterable[str]) -> Rule:
    options = tuple(options)

    def check(v: Any) -> str | None:
        shown = ", ".join(o if o else "'' (the default)" for o in options)
        return None if v in options else f"must be one of {shown}; got {v!r}"

    return check


def _dataset(v: Any) -> str | None:
    from mlf_jax.data import registry

    try:
        registry.canonical_name(v)
    except ValueError:
        return f"must be one of {', '.join(registry.DATASETS)}; got {v!r}"
    return None


def _optional(rule: Rule) -> Rule:
    """``rule``, or ``None`` (the default the key's comment names)."""
    return lambda v: None if v is None else rule(v)


def _boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else f"must be True or False, got {v!r}"


def _string(v: Any) -> str | None:
    return None if isinstance(v, str) else f"must be a string, got {v!r}"


def _positive_ints(length: int) -> Rule:
    def check(v: Any) -> str | None:
        if (
            not isinstance(v, (tuple, list))
            or len(v) != length
            or any(isinstance(x, bool) or not isinstance(x, int) or x < 1 for x in v)
        ):
            return f"must be {length} positive integers, e.g. (16, 32, 64); got {v!r}"
        return None

    return check


def _thresholds(v: Any) -> str | None:
    if (
        not isinstance(v, (tuple, list))
        or not v
        or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in v)
    ):
        return f"must be a non-empty tuple of numbers, e.g. (0.6,) or (0.6, 1.6, 2.6); got {v!r}"
    if any(not math.isfinite(x) or x <= 0 for x in v):  # tdBN scales to the first one
        return f"must be positive; got {v!r}"
    return None  # their order and the rest: the neuron model's own rules (_relations)


def _profile_steps(v: Any) -> str | None:
    if isinstance(v, (tuple, list)) and not v:
        return None
    if (
        isinstance(v, (tuple, list))
        and len(v) == 2
        and all(isinstance(x, int) and not isinstance(x, bool) for x in v)
        and 1 <= v[0] <= v[1]
    ):
        return None
    return f"must be () or (first, last) steps with 1 <= first <= last, e.g. (10, 12); got {v!r}"


def _depth(v: Any) -> str | None:
    wrong = _integer(8)(v)
    if wrong is None and (v - 2) % 6:
        return f"must be 6n + 2 (8, 14, 20, 32, 44, 56, 68, ...); got {v}"
    return wrong


def _rules() -> dict[str, Rule]:
    # imported here so that `python -m experiments.train --help` stays light
    from experiments.input_pipeline import AUGMENTS
    from experiments.models import DTYPES
    from mlf_jax.encoders import ENCODERS
    from mlf_jax.neurons import NEURON_IMPLS
    from mlf_jax.nn.blocks import SHORTCUTS
    from mlf_jax.nn.conv import CONV_IMPLS
    from mlf_jax.surrogate import SURROGATE_FAMILIES
    from mlf_jax.train.optim import SCHEDULES
    from mlf_jax.train.parallel import PARALLEL_MODES

    return {
        "dataset": _dataset,
        "data_dir": _string,
        "cache_dir": _string,
        "install_data": _boolean,
        "augment": _choice(AUGMENTS),
        "model.depth": _depth,
        "model.widths": _positive_ints(3),
        "model.shortcut": _choice(SHORTCUTS),
        "model.time_steps": _integer(1),
        "model.thresholds": _thresholds,
        "model.tau": _number(0.0, 1.0, low_open=True, high_open=False),
        "model.v_th": _optional(_number(0.0, low_open=True)),
        "model.surrogate": _choice(SURROGATE_FAMILIES),
        "model.surrogate_param": _number(0.0, low_open=True),
        "model.detach_reset": _boolean,
        "model.learn_tau": _boolean,
        "model.learn_thresholds": _boolean,
        "model.encoder": _choice(ENCODERS),
        "model.input_norm": _boolean,
        "model.dtype": _choice(sorted(DTYPES)),
        "model.conv_impl": _choice(CONV_IMPLS),
        "model.remat": _boolean,
        "model.neuron_impl": _choice(NEURON_IMPLS),
        "seed": _integer(0, 2**32 - 1),
        "batch_size": _integer(1),
        "eval_batch_size": _integer(1),
        "num_epochs": _integer(1),
        "learning_rate": _number(0.0, low_open=True),
        "momentum": _number(0.0, 1.0),
        "weight_decay": _number(0.0),
        "schedule": _choice(SCHEDULES),
        "lr_decay_epochs": _integer(1),
        "lr_decay_factor": _number(0.0, 1.0, low_open=True, high_open=False),
        "warmup_epochs": _number(0.0),
        "validation_size": _integer(0),
        "ema_decay": _number(0.0, 1.0, high_open=True),
        "log_every": _integer(1),
        "activity_every_steps": _integer(0),
        "firing_rate_reg": _number(0.0),
        "firing_rate_target": _number(0.0),
        "parallel": _choice(PARALLEL_MODES),
        "cross_device_bn": _boolean,
        "keep_checkpoints": _integer(1),
        "checkpoint_every_steps": _integer(0),
        "compilation_cache_dir": _string,
        "profile_steps": _profile_steps,
        "distributed.coordinator_address": _string,
        "distributed.num_processes": _integer(0),
        "distributed.process_id": _integer(-1),
        "distributed.auto": _boolean,
        "distributed.timeout_seconds": _integer(1),
    }


#: ``dotted key -> rule``, built on first use.
RULES: dict[str, Rule] = {}


class Checked(NamedTuple):
    """A config that :func:`validate` accepted, and the model it checked: what a run
    trains (:func:`experiments.trainer.train_and_evaluate` takes it in place of a config,
    so that a run validates once and builds its model once)."""

    config: Any
    model: Any


def validate(config: Any, model: Any = None) -> Checked:
    """Checks every known key of ``config`` and the relations between them.

    Args:
      config: an experiment config.
      model: the Flax module the run trains, if not ``config.model``'s; the neuron's rules
        are then asked of it (where it says its neuron), and no model is built.

    Returns:
      The config and its model: ``model``, else the one built from ``config.model``
      (:func:`experiments.models.build_model`) to check the neuron's rules.

    Raises:
      ConfigError: naming every wrong key, what it must be and what it is.
    """
    if isinstance(config, Checked):
        raise TypeError("validate() takes a config; this one has been checked already")
    if not RULES:
        RULES.update(_rules())
    flat = flatten(config)
    problems = [
        f"config.{key} {wrong}"
        for key, rule in RULES.items()
        if key in flat and (wrong := rule(flat[key])) is not None
    ]
    missing = sorted(k for k in RULES if k not in flat and not k.startswith("distributed."))
    problems += [f"config.{k} is missing" for k in missing]
    if not problems and flat["warmup_epochs"] >= flat["num_epochs"]:
        problems.append(
            f"config.warmup_epochs ({flat['warmup_epochs']}) must be below "
            f"config.num_epochs ({flat['num_epochs']})"
        )
    if not problems:
        model, wrong = _model(config, model)
        problems += wrong + _relations(flat)
    if problems:
        raise ConfigError("; ".join(problems))
    return Checked(config, model)


def _model(config: Any, model: Any) -> tuple[Any, list[str]]:
    """The run's model (``model``, else built from ``config.model``) and what is wrong
    between its keys that are each valid on their own: the library's rules for the neuron
    the model runs (increasing thresholds, a learned leak strictly inside (0, 1), ...),
    asked of the model itself so that they are written once."""
    from experiments.models import build_model

    try:
        if model is None:
            model = build_model(config)
        if hasattr(model, "neuron_model"):  # a user's module may not say its neuron
            model.neuron_model()
    except (TypeError, ValueError) as e:
        return model, [f"config.model: {e}"]
    return model, []


def _relations(flat: dict[str, Any]) -> list[str]:
    """What is wrong between the data set and the model's input encoding."""
    from mlf_jax.data import registry

    if flat["model.encoder"] != "direct" and registry.get(flat["dataset"]).event:
        return [
            f"config.model.encoder={flat['model.encoder']!r} encodes static images, but "
            f"config.dataset={flat['dataset']!r} is event data (already a sequence of "
            "frames): use config.model.encoder='direct'"
        ]
    return []


def check_override_keys(config: Any, keys: Iterable[str]) -> None:
    """Rejects override keys (``'model.widht'``) that ``config`` does not have.

    Raises:
      ConfigError: naming the unknown key and the valid keys at that level.
    """
    for key in keys:
        node = config
        parts = key.split(".")
        for i, part in enumerate(parts):
            valid = sorted(node.keys()) if hasattr(node, "keys") else []
            if part not in valid:
                where = "config" + "".join(f".{p}" for p in parts[:i])
                raise ConfigError(
                    f"unknown config key {key!r}: {where} has no {part!r}; "
                    f"valid keys: {', '.join(valid)}"
                )
            node = node[part]


def _config_path(argv: Sequence[str]) -> str | None:
    """The value of ``--config=PATH`` or ``--config PATH``."""
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def load_config_file(path: str) -> Any:
    """The config of ``--config=PATH`` (``get_config()`` of that file).

    Raises:
      ConfigError: the file is missing, is not a Python file that runs, or
        has no working ``get_config()``.
    """
    file = path.split(":", 1)[0]
    if not file or not epath.Path(file).exists():
        raise ConfigError(f"config file {path!r} does not exist")
    if not epath.Path(file).is_file():
        raise ConfigError(f"config file {path!r} is not a file")
    try:
        module = runpy.run_path(file)
    except Exception as e:  # noqa: BLE001 - any error in the user's file, reported in one line
        raise ConfigError(f"config file {file} fails to run: {type(e).__name__}: {e}") from None
    if not callable(module.get("get_config")):
        raise ConfigError(f"config file {file} defines no get_config()")
    try:
        return module["get_config"]()
    except Exception as e:  # noqa: BLE001
        raise ConfigError(f"get_config() of {file} fails: {type(e).__name__}: {e}") from None


def check_overrides(argv: Sequence[str]) -> None:
    """Rejects ``--config.<key>=...`` overrides of keys the config does not have.

    Raises:
      ConfigError: naming the unknown key and the valid keys at that level.
    """
    path = _config_path(argv)
    if path is None:
        return
    config = load_config_file(path)
    keys = [
        a.split("=", 1)[0].split("config.", 1)[1]
        for a in argv
        if a.startswith("--config.") or a.startswith("--noconfig.")
    ]
    check_override_keys(config, keys)
