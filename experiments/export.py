"""Trained weights as a file of their own: export from a run, load checked against a config.

    python -m experiments.export --config=experiments/configs/fashion_mnist.py \\
        --workdir=workdir/fashion_mnist --out=experiments/weights/fashion_mnist_ds8

:func:`export` writes ``<out>.msgpack``, the ``flax.serialization`` msgpack of
``{'params', 'batch_stats'}`` of a finished run (no optimiser or training state), and
``<out>.json``, a sidecar that says what the weights are: the model settings, the data set
and its input preprocessing, the number of parameters, the file's sha256, the run's test
accuracy and the library versions.

:func:`load` reads such a file (or a run's ``final_variables.msgpack``) for a config and
refuses, in one :class:`WeightsError` line, anything that would not evaluate what the
user thinks it evaluates: a layer of another shape or dtype, missing or unexpected layers,
a corrupt or truncated file, and -- where the sidecar (or the run's ``config.json``) says
how the weights were trained -- model settings that differ from the config's (a different
T or threshold fits the same shapes but computes another network).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
from absl import app, flags, logging
from etils import epath
from flax import serialization, traverse_util
from ml_collections import config_flags

import mlf_jax as mj
from experiments import config_check, run_identity, trainer
from experiments.allocator import reexec_with_jemalloc
from experiments.models import build_model
from mlf_jax.data import registry
from mlf_jax.files import dumps

__all__ = [
    "COLLECTIONS",
    "FINAL_VARIABLES",
    "USER_ERRORS",
    "WeightsError",
    "class_names",
    "dumps",
    "export",
    "input_description",
    "load",
    "sidecar_path",
]

#: What a weights file holds: the parameters and the tdBN running statistics.
COLLECTIONS = ("params", "batch_stats")
#: The variables a run writes at the end (in its work directory; defined by the trainer).
FINAL_VARIABLES = trainer.FINAL_VARIABLES
#: The sidecar fields :func:`export` computes besides the library's (``extra`` may not
#: replace them).
_COMPUTED = ("format", "dataset", "model", "input", "num_classes", "class_names", "results")
_COMPUTED += ("source", "exported", "versions")
_MAX_NAMES = 6  # layers named in one message before "... and N more"


class WeightsError(ValueError):
    """Weights that are missing, unreadable, or do not fit the config."""


#: Errors a user causes and can fix: the entry points print them in one line.
USER_ERRORS: tuple[type[BaseException], ...] = (*trainer.USER_ERRORS, WeightsError)


# -- what the weights are --------------------------------------------------------------


def class_names(dataset: str) -> list[str]:
    """Names of the classes of ``dataset`` in label order (the data set registry's)."""
    return list(registry.get(dataset).class_names)


def input_description(config: Any) -> dict[str, Any]:
    """How ``config``'s data set becomes the model's input: shape, preprocessing, encoding
    (:meth:`mlf_jax.data.registry.DatasetInfo.input_description`).

    Recorded in the sidecar, so that the weights can be used outside this project (the
    same preprocessing is needed to get the recorded accuracy).
    """
    info = registry.get(config.dataset)
    return info.input_description(config.model.time_steps, config.model.get("encoder", "direct"))


def sidecar_path(weights: str | os.PathLike) -> epath.Path:
    """The sidecar of a weights file: ``<stem>.json`` next to ``<stem>.msgpack`` (for a
    file without that suffix, its name plus ``.json``)."""
    path = epath.Path(weights)
    if path.suffix == ".msgpack":
        return path.with_suffix(".json")
    return path.parent / (path.name + ".json")


def _stem(path: str | os.PathLike) -> epath.Path:
    """``path`` without a ``.msgpack`` or ``.json`` suffix."""
    stem = epath.Path(path)
    return stem.with_suffix("") if stem.suffix in (".msgpack", ".json") else stem


def _model_settings(config: Any) -> dict[str, Any]:
    """``{'dataset': ..., 'model.<key>': ...}`` of ``config``, as JSON values."""
    flat = run_identity.flatten(config)
    return {k: v for k, v in flat.items() if k == "dataset" or k.startswith("model.")}


def _settings_diff(
    recorded: Mapping[str, Any], config: Any, where: str = "the weights' settings"
) -> list[str]:
    """``'model.depth: 14 in <where>, 8 in the config'`` for every model setting (and the
    data set) that differs; keys one side lacks are not compared (a sidecar older than a
    config key), nor keys that only say how the model computes (``conv_impl``, ...)."""
    mine = _model_settings(config)
    return [
        f"{k}: {_show(recorded[k])} in {where}, {_show(mine[k])} in the config"
        for k in sorted(set(recorded) & set(mine))
        if not run_identity.is_operational(k) and recorded[k] != mine[k]
    ]


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def _names(items: Sequence[str]) -> str:
    shown = ", ".join(items[:_MAX_NAMES])
    more = len(items) - _MAX_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


# -- load ----------------------------------------------------------------------------


def _expected(config: Any, model: Any = None) -> dict[str, Any]:
    """``{'params', 'batch_stats'}`` of ``model`` (default ``build_model(config)``) as
    shapes and dtypes (``jax.eval_shape``: nothing is initialised or compiled)."""
    model = build_model(config) if model is None else model
    example = registry.get(config.dataset).example_shape(config.model.time_steps)
    x = jax.ShapeDtypeStruct((1, *example), np.float32)
    variables = jax.eval_shape(
        lambda x: model.init(jax.random.key(0), mj.train.model_input(x), train=False), x
    )
    return {c: variables.get(c, {}) for c in COLLECTIONS}


def _flat(tree: Any) -> dict[str, Any]:
    """``{'params/stem_conv/kernel': leaf}`` of a nested mapping."""
    if not isinstance(tree, Mapping) or not tree:
        return {}
    return traverse_util.flatten_dict(dict(tree), sep="/")


def _in_model_order(keys: Sequence[str]) -> list[str]:
    """Variable paths ``collection/layer/.../name`` in the order of the network
    (:func:`mlf_jax.analysis.forward_order`), parameters first, so that a message names the
    first layer that differs (the paths come sorted by name: ``stage1`` before ``stem``)."""
    by_collection: dict[str, list[tuple[str, ...]]] = {}
    for key in sorted(keys):
        collection, _, rest = key.partition("/")
        by_collection.setdefault(collection, []).append(tuple(rest.split("/")))
    rank = {c: i for i, c in enumerate(COLLECTIONS)}
    return [
        "/".join((collection, *path))
        for collection in sorted(by_collection, key=lambda c: (rank.get(c, len(rank)), c))
        for path in mj.analysis.forward_order(by_collection[collection])
    ]


def _top_missing(paths: Sequence[str], present: Mapping[str, Any]) -> list[str]:
    """The largest subtrees that hold ``paths`` and have no leaf in ``present``: a block
    missing whole is named once (``params/stage3_block1``), not by every kernel."""
    nodes = {"/".join(p.split("/")[:i]) for p in present for i in range(1, p.count("/") + 2)}
    out: list[str] = []
    for path in paths:
        parts = path.split("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if prefix not in nodes:
                if prefix not in out:
                    out.append(prefix)
                break
    return out


def _read_variables(path: epath.Path) -> tuple[dict[str, Any], bytes]:
    """The ``{'params', 'batch_stats'}`` collections in the msgpack ``path`` (any other
    top-level entries, such as optimiser state, are dropped) and the file's bytes.

    Raises:
      WeightsError: the file is missing or is not a flax msgpack of variables.
    """
    if not path.exists():
        raise WeightsError(f"weights file {path} does not exist")
    if path.is_dir():
        hint = f" (a run's weights are {path / FINAL_VARIABLES})"
        raise WeightsError(f"weights file {path} is a directory{hint if _is_run(path) else ''}")
    raw = path.read_bytes()
    what = f"{path} is not a flax msgpack of variables"
    try:
        tree = serialization.msgpack_restore(raw)
    except Exception as e:  # noqa: BLE001 - msgpack and numpy raise many kinds
        detail = str(e) or type(e).__name__
        if "incomplete input" in detail:
            detail += " (the file is truncated)"
        raise WeightsError(f"{what}: {detail}") from None
    if not isinstance(tree, dict) or "params" not in tree:
        found = sorted(map(str, tree)) if isinstance(tree, dict) else type(tree).__name__
        raise WeightsError(f"{what}: it holds {found}, not {{'params', 'batch_stats'}}")
    return {c: tree.get(c, {}) for c in COLLECTIONS}, raw


def _is_run(path: epath.Path) -> bool:
    return (path / FINAL_VARIABLES).exists()


def _recorded_settings(path: epath.Path) -> tuple[epath.Path, dict[str, Any]] | None:
    """Where the weights say how they were trained, and the settings found there: the
    sidecar ``<stem>.json`` if it exists, else the run's ``config.json`` next to a run's
    ``final_variables.msgpack``; ``None`` if neither.

    Raises:
      WeightsError: the file exists but cannot be read.
    """
    sidecar = sidecar_path(path)
    if sidecar.exists():
        try:
            record = json.loads(sidecar.read_text())
            settings = {"dataset": record["dataset"]}
            settings |= run_identity.flatten(record["model"], "model.")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise WeightsError(
                f"the weights' sidecar {sidecar} is unreadable ({type(e).__name__}: {e}); "
                "re-export the weights, or remove it to load the weights unchecked"
            ) from None
        return sidecar, {**settings, "sha256": record.get("sha256")}
    run_config = path.parent / run_identity.CONFIG_FILE
    if path.name == FINAL_VARIABLES and run_config.exists():
        try:
            flat = json.loads(run_config.read_text())["config"]
            return run_config, {
                k: v for k, v in flat.items() if k == "dataset" or k.startswith("model.")
            }
        except (ValueError, KeyError, TypeError) as e:
            raise WeightsError(f"the run's {run_config} is unreadable ({e})") from None
    return None


def load(path: str | os.PathLike, config: Any, model: Any = None) -> dict[str, Any]:
    """The variables ``{'params', 'batch_stats'}`` in ``path``, checked against ``config``.

    ``path`` is a file of :func:`export` or a run's ``final_variables.msgpack``; other
    top-level entries (optimiser state) are ignored. The structure, shapes and dtypes are
    compared with ``model`` (default ``build_model(config)``; ``jax.eval_shape``, no
    initialisation); the
    sidecar, where there is one, must record the file's sha256 and the config's model
    settings (implementation keys such as ``conv_impl`` may differ).

    Returns:
      Nested dicts of numpy arrays, ready for ``model.apply``.

    Raises:
      WeightsError: naming the file and what is wrong: no such file; not a flax msgpack
        (corrupt or truncated); missing or unexpected layers; a layer whose shape or
        dtype differs from the config's model (both named); non-finite values; a stale
        sidecar; model settings that differ from the config's (each key, both values).
    """
    path = epath.Path(path)
    variables, raw = _read_variables(path)
    recorded = _recorded_settings(path)
    settings_note = ""
    if recorded is not None and (differ := _settings_diff(recorded[1], config)):
        settings_note = f"; the weights' settings ({recorded[0]}) differ: {'; '.join(differ)}"

    want, have = _flat(_expected(config, model)), _flat(variables)
    problems = []
    if missing := _top_missing([k for k in want if k not in have], have):
        problems.append(f"{path} lacks {_names(missing)}, which the config's model has")
    if unexpected := _top_missing([k for k in have if k not in want], want):
        problems.append(f"{path} has {_names(unexpected)}, which the config's model has not")
    wrong = []  # (key, what it is in the file, what the model expects)
    for key in _in_model_order([k for k in want if k in have]):
        leaf, spec = have[key], want[key]
        if not isinstance(leaf, np.ndarray):
            wrong.append((key, f"is a {type(leaf).__name__}", "an array"))
        elif leaf.shape != spec.shape:
            wrong.append((key, f"has shape {leaf.shape}", str(spec.shape)))
        elif leaf.dtype != spec.dtype:
            wrong.append((key, f"has dtype {leaf.dtype}", str(np.dtype(spec.dtype))))
    if wrong:
        key, found, expected = wrong[0]
        text = f"{key} {found} in {path} but the config's model expects {expected}"
        if len(wrong) > 1:
            text += f" (and {len(wrong) - 1} more arrays differ)"
        problems.append(text)
    if problems:
        raise WeightsError(f"weights do not fit the config: {'; '.join(problems)}{settings_note}")
    if bad := [k for k in want if not np.isfinite(have[k]).all()]:
        raise WeightsError(f"weights in {path} hold NaN or infinite values in {_names(bad)}")

    if recorded is not None:
        where, settings = recorded
        digest = settings.get("sha256")
        if digest is not None and digest != hashlib.sha256(raw).hexdigest():
            raise WeightsError(
                f"{path} is not the file its sidecar {where} describes (sha256 differs): it "
                "was changed after export; re-export it, or remove the stale sidecar"
            )
        if settings_note:
            raise WeightsError(
                f"weights' settings differ from the config ({where}): "
                f"{'; '.join(_settings_diff(settings, config))}; use the config the weights "
                "were trained with (or --config.model.<key>=... overrides)"
            )
    return traverse_util.unflatten_dict({k: have[k] for k in want}, sep="/")


# -- export --------------------------------------------------------------------------


def _run_results(workdir: epath.Path, variables_file: epath.Path) -> dict[str, Any] | None:
    """The results of the finished run in ``workdir`` that ``variables_file`` (its
    ``final_variables.msgpack``) holds the weights of: final and best test accuracy and
    steps, from ``results.json``; ``None`` for a folder that is not a run's (no
    ``results.json``, ``config.json`` or checkpoints).

    Raises:
      WeightsError: the run's newest state is not the one those weights are: no
        ``results.json``, or one of a run stopped before its end, or of another
        ``final_variables.msgpack`` (its sha256 differs), or checkpoints past its last
        step (the run was extended since, and not finished). The message says how to
        finish the run (its training command, run again), after which export works.
    """
    finish = (
        f"finish the run with its training command (the same --config and --workdir={workdir}"
        ", and the --allow_change it was extended with), then export"
    )
    path = workdir / trainer.RESULTS
    try:
        results = json.loads(path.read_bytes().decode("utf-8"))
        if not isinstance(results, dict):
            raise ValueError("not a record")
    except FileNotFoundError:
        if not (workdir / "checkpoints").exists() and not (workdir / "config.json").exists():
            return None  # a variables file on its own, not in a run's work directory
        raise WeightsError(
            f"the run in {workdir} has no {trainer.RESULTS}, so which state its "
            f"{FINAL_VARIABLES} hold is unknown: restore {trainer.RESULTS} (from a copy of "
            "the run), or run its training command again (it finishes the run from its "
            "checkpoints, or trains it anew where there are none), then export"
        ) from None
    except ValueError as e:
        raise WeightsError(f"the run's {path} is unreadable ({e}): {finish}") from None
    steps = results.get("steps")
    if results.get("preempted") or results.get("final_test_accuracy") is None:
        raise WeightsError(
            f"the run in {workdir} was stopped at step {steps} before its end "
            f"({results.get('stopped_by') or 'no final evaluation'}); its {FINAL_VARIABLES} "
            f"(if any) are from an earlier end, not the state its results describe: {finish}"
        )
    recorded = results.get(trainer.FINAL_SHA256)  # absent in runs from before it was
    if recorded is not None and recorded != hashlib.sha256(variables_file.read_bytes()).hexdigest():
        raise WeightsError(
            f"{variables_file} is not the file {path} describes (sha256 differs): {finish}"
        )
    newer = [s for s in _checkpoint_steps(workdir) if not isinstance(steps, int) or s > steps]
    if newer:
        raise WeightsError(
            f"the run in {workdir} has trained past the end its {trainer.RESULTS} and "
            f"{FINAL_VARIABLES} describe (step {steps}; checkpoint at step {max(newer)}): "
            f"it was extended and has not finished; {finish}"
        )
    return {
        "final_test_accuracy": results["final_test_accuracy"],
        "best_test_accuracy": results.get("best_test_accuracy"),
        "steps": steps,
        "from": trainer.RESULTS,
    }


def _checkpoint_steps(workdir: epath.Path) -> list[int]:
    """The steps of the checkpoints in ``<workdir>/checkpoints`` (complete ones)."""
    directory = workdir / "checkpoints"
    if not directory.exists():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit())


def _check_run_config(workdir: epath.Path, config: Any) -> None:
    """Refuses a config whose data set or model differs from the run recorded in
    ``workdir`` (the sidecar would describe another model than the weights')."""
    path = workdir / run_identity.CONFIG_FILE
    if not path.exists():
        return
    try:
        recorded = json.loads(path.read_text())["config"]
    except (ValueError, KeyError, TypeError) as e:
        raise WeightsError(f"the run's {path} is unreadable ({e})") from None
    if differ := _settings_diff(recorded, config, where="the run"):
        raise WeightsError(
            f"the config differs from the run in {workdir} ({path.name}): {'; '.join(differ)}; "
            "export with the config the run was trained with"
        )


def export(
    workdir_or_variables_file: str | os.PathLike,
    config: Any,
    out_stem: str | os.PathLike,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Writes ``<out_stem>.msgpack`` (``{'params', 'batch_stats'}`` only) and its sidecar
    ``<out_stem>.json``; returns the sidecar.

    Args:
      workdir_or_variables_file: a finished run's work directory (its
        ``final_variables.msgpack`` is exported) or a variables msgpack. A run's weights
        are exported only when they are its newest state, the one its ``results.json``
        describes (the sidecar's ``results``): never those of an earlier end of a run
        extended since.
      config: the config the weights were trained with; checked against the weights'
        shapes and the run's recorded ``config.json``.
      out_stem: the output path without suffix (a ``.msgpack`` suffix is dropped); a
        local path or a remote URI (``gs://...``).
      extra: more fields for the sidecar (e.g. a note); not the names of computed ones.

    Raises:
      config_check.ConfigError: for an invalid config.
      ValueError: ``extra`` names a computed field.
      WeightsError: no finished run or variables file there, a run whose newest state is
        not its finished one (stopped, or extended and not finished: the message says how
        to finish it), weights that do not fit the config, or a config that is not the
        run's.
    """
    config_check.validate(config)
    if clash := sorted((set(_COMPUTED) | set(mj.models.RESERVED)) & set(extra or {})):
        raise ValueError(f"extra sidecar fields {clash} would replace computed ones")
    source = epath.Path(workdir_or_variables_file)
    if source.is_dir():
        workdir, variables_file = source, source / FINAL_VARIABLES
        if not variables_file.exists():
            raise WeightsError(
                f"{source} holds no {FINAL_VARIABLES}: the run has not finished (experiments."
                "train writes it at the end) or this is not a run's work directory"
            )
    else:
        variables_file = source
        workdir = source.parent if source.name == FINAL_VARIABLES else None
    results = None
    if workdir is not None:
        _check_run_config(workdir, config)
        results = _run_results(workdir, variables_file)
    variables = load(variables_file, config)
    info: dict[str, Any] = {
        "format": "flax.serialization msgpack of {'params', 'batch_stats'} (numpy arrays)",
        "dataset": config.dataset,
        "model": json.loads(json.dumps(config.model.to_dict())),
        "input": input_description(config),
        "num_classes": registry.get(config.dataset).classes,
        "class_names": class_names(config.dataset),
        "results": results,
        "source": os.fspath(variables_file),
        "exported": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "versions": {
            "mlf_jax": mj.__version__,
            "jax": jax.__version__,
            "jaxlib": _version("jaxlib"),
            "flax": _version("flax"),
        },
        **(extra or {}),
    }
    # the library's writer: the weights, their checksum, parameter count and the ResNet's
    # settings (for mlf_jax.models.load without this repository), then this information
    stem, model = _stem(out_stem), build_model(config)
    if not mj.train.is_remote(stem):
        out = mj.models.save(stem, model, variables, **info)
        return json.loads(sidecar_path(out).read_text())
    with tempfile.TemporaryDirectory() as tmp:  # it writes local files: then upload them
        local = mj.models.save(os.path.join(tmp, stem.name), model, variables, **info)
        for file in (local, sidecar_path(local)):
            mj.train.write_atomically(stem.parent / file.name, file.read_bytes())
        return json.loads(sidecar_path(local).read_text())


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


# -- command line --------------------------------------------------------------------


def _define_flags() -> None:
    """This command's flags, defined only when it runs (``experiments.train`` defines
    ``--config`` and ``--workdir`` too, and both may be imported in one process)."""
    config_flags.DEFINE_config_file("config", None, "The config the run was trained with.")
    flags.DEFINE_string("workdir", None, "The finished run's work directory (or a variables file).")
    flags.DEFINE_string(
        "out", None, "Output path without suffix: writes <out>.msgpack and <out>.json."
    )
    flags.mark_flags_as_required(["config", "workdir", "out"])


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    flag_values = flags.FLAGS
    if not flag_values["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    sidecar = export(flag_values.workdir, flag_values.config, flag_values.out)
    print(dumps(sidecar))
    stem = _stem(flag_values.out)
    print(f"wrote {stem}.msgpack and {stem}.json", file=sys.stderr)


def run(argv: Sequence[str] | None = None) -> None:
    """The command line: ``main`` under absl, user errors as one line and exit code 1."""
    argv = list(sys.argv if argv is None else argv)
    try:
        config_check.check_overrides(argv[1:])
        _define_flags()
        app.run(main, argv=argv)
    except USER_ERRORS as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    reexec_with_jemalloc()
    run()
