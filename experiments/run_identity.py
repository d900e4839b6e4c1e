"""A run's identity: the resolved config recorded in its work directory.

The first start writes ``<workdir>/config.json``. Every restart compares its config
with it before any work is done:

* keys that only say *how* or *where* to run (:data:`OPERATIONAL`: data location,
  logging and checkpoint cadence, evaluation batch, device mapping, multi-host
  settings, convolution implementation) may change freely;
* optimiser keys (:data:`CHANGEABLE`: ``num_epochs`` to extend a run, the learning
  rate and its schedule, momentum, weight decay) may change when the user says so
  with ``--allow_change=key,...``; the change is appended to the file's history;
* any other difference (data set, model, batch size, seed, ...) would mix two
  trajectories in one run and is refused, with the differing keys listed.

So checkpoints of one configuration are never resumed, or deleted by keep-N, under
another. A work directory without checkpoints holds no work yet: any config may take it
over (the recorded one is replaced). One with checkpoints but no record is refused: the
config its checkpoints were trained under is unknown, and recording the new one would make
the run claim settings it never had. The config is recorded only once the data set and
the batch plan were accepted, so a start that fails on them leaves the record as it was.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

from etils import epath

from mlf_jax.data import registry
from mlf_jax.train import write_atomically

__all__ = [
    "ADDED",
    "CHANGEABLE",
    "CONFIG_FILE",
    "OPERATIONAL",
    "ConfigMismatchError",
    "check",
    "record",
    "diff",
    "is_operational",
    "flatten",
]

CONFIG_FILE = "config.json"

#: Keys (and prefixes ending in ``.``) that change how or where a run computes, not what.
OPERATIONAL = (
    "data_dir",
    "cache_dir",
    "install_data",
    "log_every",
    "activity_every_steps",
    "keep_checkpoints",
    "checkpoint_every_steps",
    "eval_batch_size",
    "parallel",
    "distributed.",
    "model.conv_impl",
    "model.remat",
    "model.neuron_impl",
    "compilation_cache_dir",
    "profile_steps",
)

#: Keys that may change on a restart with ``--allow_change``.
CHANGEABLE = (
    "num_epochs",
    "learning_rate",
    "schedule",
    "lr_decay_epochs",
    "lr_decay_factor",
    "warmup_epochs",
    "momentum",
    "weight_decay",
)


#: Keys added to the configs after runs were recorded without them, with the value that
#: means what those runs did (so that they resume): ``augment=''`` is the data set's default.
ADDED = {
    "augment": "",
    "firing_rate_reg": 0.0,
    "firing_rate_target": 0.1,
    "model.learn_tau": False,
    "model.learn_thresholds": False,
    "model.encoder": "direct",
    "validation_size": 0,
    "ema_decay": 0.0,
}


class ConfigMismatchError(ValueError):
    """A restart's config differs from the run recorded in the work directory."""


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{'model': {'depth': 8}}`` -> ``{'model.depth': 8}``, with JSON values (tuples
    become lists), so that a config compares equal to its recorded copy."""
    out: dict[str, Any] = {}
    for k, v in config.items():
        if hasattr(v, "items"):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = json.loads(json.dumps(v))
    if not prefix and isinstance(out.get("dataset"), str):  # 'gesture' is 'dvs_gesture'
        try:
            out["dataset"] = registry.canonical_name(out["dataset"])
        except ValueError:
            pass
    return out


def is_operational(key: str) -> bool:
    """Whether the flat key only says how or where a run computes (:data:`OPERATIONAL`)."""
    return any(key == k or (k.endswith(".") and key.startswith(k)) for k in OPERATIONAL)


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``key -> (old, new)`` for every flat key whose value differs (``None``: absent)."""
    keys = sorted(set(old) | set(new))
    return {k: (old.get(k), new.get(k)) for k in keys if old.get(k) != new.get(k)}


def _describe(changes: Mapping[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items())


def _read(path: epath.Path, started: bool = False) -> dict[str, Any] | None:
    """The record in ``path``, or ``None`` if there is none.

    Raises:
      ConfigMismatchError: the file exists but is not a record; the message says what to
        do, which depends on whether the run has checkpoints (``started``): without any,
        moving the file away lets this command's config take the workdir over; with some,
        that would leave checkpoints of an unknown config, which are refused.
    """
    if not path.exists():
        return None
    try:
        record = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(record.get("config"), dict) or not isinstance(record["history"], list):
            raise ValueError("no 'config' and 'history'")
    except (ValueError, AttributeError, KeyError) as e:
        if started:
            ways = (
                "restore it (from a copy of the run) to resume the run, or use a new "
                "--workdir for a new run (this one is left untouched)"
            )
        else:
            ways = "restore it, or move it away to record this command's config as the run's"
        raise ConfigMismatchError(f"{path} is unreadable ({_first_line(e)}); {ways}") from None
    return record


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def check(
    workdir: str | os.PathLike,
    config: Mapping[str, Any],
    allow_change: Iterable[str] = (),
    *,
    started: bool = True,
) -> dict[str, tuple[Any, Any]]:
    """Compares ``config`` with the run recorded in ``workdir``; writes nothing.

    Args:
      workdir: the run's work directory (local or remote).
      config: the resolved config (a ``ConfigDict`` or nested mapping).
      allow_change: keys of :data:`CHANGEABLE` the user accepts to change.
      started: whether the run has checkpoints. Without any, there is no work to
        mix: any config may replace the recorded one.

    Returns:
      The differing keys that change the trajectory and were accepted.

    Raises:
      ConfigMismatchError: the configs differ in a key that is not operational and
        not allowed; ``allow_change`` names a key that cannot change; the record is
        unreadable; or the run has checkpoints and no record.
    """
    allow = set(allow_change)
    if bad := sorted(allow - set(CHANGEABLE)):
        raise ConfigMismatchError(
            f"--allow_change accepts only {', '.join(CHANGEABLE)}; not {', '.join(bad)}"
        )
    path = epath.Path(workdir) / CONFIG_FILE
    record = _read(path, started)
    if record is None and started:
        raise ConfigMismatchError(
            f"{path.parent} has checkpoints but no {CONFIG_FILE}, so the config they were "
            f"trained under is unknown: restore {path} (from a copy of the run), or use a new "
            "--workdir for a new run (this one is left untouched)"
        )
    if record is None:
        return {}
    changes = {
        k: (old, new)
        for k, (old, new) in diff(record["config"], flatten(config)).items()
        if not (k not in record["config"] and k in ADDED and new == ADDED[k])
    }
    changes = {k: v for k, v in changes.items() if not is_operational(k)}
    refused = {k: v for k, v in changes.items() if k not in allow}
    if refused and started:
        fixable = [k for k in refused if k in CHANGEABLE]
        ways = [f"use a new --workdir for a new run (this one is kept in {path.parent})"]
        if len(fixable) == len(refused):
            keys = ",".join(fixable)
            ways.append(f"or go on with this run under the new values: --allow_change={keys}")
        raise ConfigMismatchError(
            f"{path.parent} holds a run with another config; differing keys: "
            f"{_describe(refused)}. " + "; ".join(ways)
        )
    return changes


def record(workdir: str | os.PathLike, config: Mapping[str, Any]) -> None:
    """Records ``config`` as the run's in ``<workdir>/config.json``, appending what
    changed to its history."""
    path = epath.Path(workdir) / CONFIG_FILE
    new = flatten(config)
    old = _read(path)
    if old is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        old = {"config": new, "history": []}
    elif changed := diff(old["config"], new):
        old["history"].append(
            {
                "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                "changed": {k: list(v) for k, v in changed.items()},
            }
        )
        old["config"] = new
    else:
        return
    write_atomically(path, json.dumps(old, indent=1) + "\n")
