"""The experiments' training loop: a config and a work directory become a run.

:func:`train_and_evaluate` trains on every device of every process, evaluates after
each epoch, and keeps the run's promises (``docs/guarantees.md``, "What a run guarantees"):

* one run per work directory (:class:`mlf_jax.train.RunLock`), whose config is
  recorded and checked on every restart (:mod:`experiments.run_identity`);
* it resumes from the newest readable checkpoint, and stops with an error instead of
  starting over when checkpoints exist but none can be read;
* checkpoints every epoch, every ``checkpoint_every_steps`` steps and on SIGTERM or
  SIGINT (then it returns with ``preempted=True``); only finite state is saved, and a
  NaN or infinite loss stops the run naming the last finite checkpoint;
* ``metrics.jsonl`` holds each step once, also after a resume.

It is composed of the library's pieces (:mod:`mlf_jax.train`): state, data-parallel
steps, evaluation, checkpoints, metrics, lock and stop signals. :func:`check_run` makes a
run's checks once, up front (the config, which builds the model, and the batch); the loop
reads top to bottom in :func:`_train`; :class:`Run` builds the pieces from the config, and
the side work is in small helpers below it (restore, save, log, evaluate, the activity log
and the profiler).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
import optax
from etils import epath
from flax import serialization
from tqdm.auto import tqdm

import mlf_jax as mj
from experiments import config_check, input_pipeline, run_identity
from mlf_jax.data import DataFileError
from mlf_jax.data.fashion_mnist import DatasetNotFoundError
from mlf_jax.data.loader import make_loader, state_after

__all__ = [
    "FINAL_SHA256",
    "FINAL_VARIABLES",
    "RESULTS",
    "USER_ERRORS",
    "DivergenceError",
    "batch_plan",
    "check_divisible",
    "enable_compilation_cache",
    "resolve_workdir",
    "check_run",
    "firing_rate_options",
    "make_optimizer",
    "train_and_evaluate",
]

RESULTS = "results.json"
#: The key of ``results.json`` that holds the sha256 of the final variables it describes
#: (absent when the run was stopped before its end).
FINAL_SHA256 = "final_variables_sha256"
#: The final ``{'params', 'batch_stats'}`` of a run (``flax.serialization``), in its work
#: directory.
FINAL_VARIABLES = "final_variables.msgpack"


class DivergenceError(FloatingPointError):
    """The loss or the state became NaN or infinite; the message names the last finite
    checkpoint and how to go on."""


#: Errors that a user causes and can fix: the entry points print them in one line.
USER_ERRORS: tuple[type[BaseException], ...] = (
    config_check.ConfigError,
    run_identity.ConfigMismatchError,
    mj.train.LockedError,
    mj.train.CheckpointError,
    DivergenceError,
    DatasetNotFoundError,
    DataFileError,
)


@dataclasses.dataclass
class Progress:
    """Bookkeeping saved with every checkpoint."""

    step: int = 0
    best: float = 0.0
    last_eval: dict[str, Any] | None = None
    #: the device and process counts the run has trained on, oldest first
    device_counts: list[int] = dataclasses.field(default_factory=lambda: [jax.device_count()])
    process_counts: list[int] = dataclasses.field(default_factory=lambda: [jax.process_count()])


def batch_plan(batch_size: int, train_size: int) -> tuple[int, int]:
    """``(steps_per_epoch, per-process batch)`` for a global ``batch_size`` that
    :func:`check_divisible` accepted.

    Raises:
      config_check.ConfigError: the batch exceeds the training set.
    """
    if batch_size > train_size:
        raise config_check.ConfigError(
            f"config.batch_size {batch_size} exceeds the training set ({train_size} examples)"
        )
    return train_size // batch_size, batch_size // jax.process_count()


def check_divisible(batch_size: int) -> None:
    """Raises ``ConfigError`` (naming the nearest valid sizes) unless ``batch_size``
    splits evenly over all devices."""
    devices = jax.device_count()
    if batch_size % devices:
        lower = batch_size // devices * devices
        nearest = " or ".join(str(b) for b in (lower, lower + devices) if b > 0)
        raise config_check.ConfigError(
            f"config.batch_size {batch_size} is not divisible by the number of devices "
            f"({devices}); nearest valid sizes: {nearest}"
        )


def make_optimizer(
    config: Any, steps_per_epoch: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The paper's optimiser from the config: SGD with momentum and coupled L2 weight
    decay (PyTorch's ``SGD(weight_decay=...)``), under the configured schedule; with an
    average of the weights in its state when ``config.ema_decay`` is set
    (:func:`mlf_jax.train.with_average`)."""
    schedule = mj.train.learning_rate_schedule(
        config.learning_rate,
        steps_per_epoch,
        config.num_epochs,
        kind=config.schedule,
        decay_epochs=config.lr_decay_epochs,
        decay_factor=config.lr_decay_factor,
        warmup_epochs=config.warmup_epochs,
    )
    tx = mj.train.sgd(schedule, config.momentum, config.weight_decay)
    if config.get("ema_decay", 0.0):
        tx = mj.train.with_average(tx, config.ema_decay)
    return tx, schedule


class _Meter:
    """Running means of the train metrics between two log points; stops on NaN."""

    def __init__(self) -> None:
        self.pending: list[Any] = []
        self.extra: list[str] = []  # metrics besides loss and accuracy (the firing-rate term)
        self.reset()

    def reset(self) -> None:
        self.sums, self.count, self.since = {"loss": 0.0, "accuracy": 0.0}, 0, time.time()
        self.sums.update({k: 0.0 for k in self.extra})

    def add(self, metrics: Any) -> None:
        self.pending.append(metrics)

    def fetch(self, step: int) -> int | None:
        """Takes the pending metrics to the host; the first step with a non-finite
        loss, or ``None``."""
        host, self.pending = jax.device_get(self.pending), []
        for i, m in enumerate(host):
            if not math.isfinite(float(m["loss"])):
                return step - len(host) + i + 1
            for k, v in m.items():
                if k not in self.sums:
                    self.extra.append(k)
                    self.sums[k] = 0.0
                self.sums[k] += float(v)
        self.count += len(host)
        return None

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}


class _Profiler:
    """A ``jax.profiler`` trace of the steps ``(first, last)`` (``()``: none) into
    ``directory`` (TensorBoard's profile tab): it starts before step ``first`` (or the first
    step of a resumed run inside the range) and stops after step ``last``, or when the loop
    ends early."""

    def __init__(self, steps: Any, directory: epath.Path):
        self.steps, self.directory, self.tracing = tuple(steps), directory, False

    def before(self, step: int) -> None:
        if self.steps and not self.tracing and self.steps[0] <= step <= self.steps[1]:
            jax.profiler.start_trace(os.fspath(self.directory / mj.train.metrics.TENSORBOARD))
            self.tracing = True

    def after(self, step: int, outputs: Any, *, ended: bool = False) -> None:
        if self.tracing and (ended or step >= self.steps[1]):
            jax.block_until_ready(outputs)  # the trace holds the whole step
            jax.profiler.stop_trace()
            self.tracing = False
            last = min(step, self.steps[1])
            tqdm.write(f"profiled steps {self.steps[0]}-{last} into {self.directory}/tensorboard")


class _ActivityLog:
    """Every ``every`` steps (0: never), each neuron layer's firing rate and dormant fraction
    on the step's batch, under the state that step starts from (the one whose loss its train
    metrics report), as ``activity/firing_rate/<layer>`` and ``activity/dormant/<layer>``.
    A separate compiled function, compiled on first use: the train step itself is the same
    with or without it."""

    def __init__(self, run: Run, writer: Any):
        self.run, self.writer, self.every = run, writer, run.config.activity_every_steps
        self.step_fn: Any = None

    def __call__(self, dstate: Any, batch: dict[str, Any], step: int) -> None:
        if not self.every or step % self.every:
            return
        if self.step_fn is None:
            thresholds, surrogate = self.run.neurons
            self.step_fn = self.run.dp.map_step(
                functools.partial(
                    mj.train.activity_step, thresholds=thresholds, surrogate=surrogate
                )
            )
        values = jax.device_get(self.step_fn(dstate, batch))
        scalars = {}
        for kind in ("firing_rate", "dormant"):
            per_layer = values.get(kind, {})
            for path in mj.analysis.forward_order([tuple(k.split("/")) for k in per_layer]):
                layer = "/".join(path)
                scalars[f"{kind}/{layer}"] = float(per_layer[layer])
        self.writer.write(step, "activity", scalars)


class Run:
    """The pieces of one training run, built from its config: batch plan, optimiser, the
    data-parallel step, the initial state and the endless data iterator (also what
    :func:`experiments.dry_run.dry_run` compiles). The config is a checked one
    (:func:`check_run` has validated it and checked its batch against the devices)."""

    def __init__(self, config: Any, data: input_pipeline.Data, model: Any):
        self.config, self.data = config, data
        self.steps_per_epoch, self.local_batch = batch_plan(config.batch_size, len(data.train))
        self.total_steps = self.steps_per_epoch * config.num_epochs
        self.tx, self.schedule = make_optimizer(config, self.steps_per_epoch)
        # a stochastic input encoder (model.encoder='rate') draws from the run's seed
        step_fn = functools.partial(mj.train.train_step, rng=jax.random.key(config.seed))
        step_fn = functools.partial(step_fn, **firing_rate_options(config))
        self.dp = mj.train.DataParallel(config.parallel, train_step_fn=step_fn)
        self.rng = jax.random.key(config.seed)
        sample = data.preprocess(data.train[np.arange(min(2, len(data.train)))], False)
        self.state = mj.train.create_train_state(
            model, self.tx, self.rng, mj.train.model_input(sample["image"])
        )
        # endless, so that extending num_epochs keeps the data order of the steps done
        self.data_iter = make_loader(
            data.train,
            batch_size=self.local_batch,
            shuffle=True,
            seed=config.seed,
            num_epochs=None,
            drop_remainder=True,
            transform=data.augment,
        )
        self.neurons = _dormancy_constants(model)

    def epoch_of(self, step: int) -> int:
        """The epoch (from 1) that step ``step`` (from 1) belongs to."""
        return (step - 1) // self.steps_per_epoch + 1


def check_run(config: Any, model: Any = None) -> config_check.Checked:
    """The checks a run makes before it reads any data, once: the config
    (:func:`experiments.config_check.validate`, which builds the model from
    ``config.model`` unless ``model`` is given) and its batch against the devices.

    Args:
      config: an experiment config, or a :class:`~experiments.config_check.Checked` one
        (validated before JAX started, as ``experiments.train`` does): then only the batch
        is checked.
      model: the Flax module to train instead of ``config.model``'s.

    Raises:
      config_check.ConfigError: naming what is wrong.
    """
    if isinstance(config, config_check.Checked):
        if model is not None:
            raise TypeError("a checked config carries its model: pass no model= with it")
        checked = config
    else:
        checked = config_check.validate(config, model)
    check_divisible(checked.config.batch_size)  # before any data is read
    return checked


def train_and_evaluate(
    config: Any,
    workdir: str | epath.PathLike,
    *,
    data: input_pipeline.Data | None = None,
    model: Any = None,
    allow_change: tuple[str, ...] | list[str] = (),
) -> dict[str, Any]:
    """Trains the model of ``config`` in ``workdir``; returns the results and final state.

    Args:
      config: an experiment config (``experiments/configs``), validated first; or one that
        :func:`experiments.config_check.validate` has checked (a
        :class:`~experiments.config_check.Checked`), with its model.
      workdir: local path or remote URI for checkpoints, metrics, results.
      data: sources and preprocessing (default: from ``config.dataset``).
      model: the Flax module (default: from ``config.model``).
      allow_change: config keys that may differ from the recorded run
        (:data:`experiments.run_identity.CHANGEABLE`).

    Returns:
      ``{'state', 'final_test_accuracy', 'best_test_accuracy', 'steps', 'preempted',
      'stopped_by', 'wall_seconds', 'num_params', 'device_counts', 'process_counts'}``
      (the counts the run trained on, oldest first); process 0 also writes, unless the
      run was stopped early, the final ``{'params', 'batch_stats'}`` to
      ``<workdir>/final_variables.msgpack`` (``flax.serialization``; atomically, before
      ``results.json`` and while the run still holds its lock), then all but the state to
      ``<workdir>/results.json`` (with the sha256 of the final variables it describes,
      ``final_variables_sha256``).

    Raises:
      config_check.ConfigError, run_identity.ConfigMismatchError,
      mj.train.LockedError, mj.train.CheckpointError, DivergenceError: user-facing errors
      whose message says what to do.
    """
    config, model = check_run(config, model)
    workdir = resolve_workdir(workdir)
    return _train(config, model, workdir, data, tuple(allow_change))


def _train(
    config: Any,
    model: Any,
    workdir: epath.Path,
    data: input_pipeline.Data | None,
    allow_change: tuple[str, ...],
) -> dict[str, Any]:
    """The training loop of :func:`train_and_evaluate`, for a checked config."""
    main = jax.process_index() == 0
    with _holding(workdir, config, allow_change):
        data = data if data is not None else input_pipeline.get_datasets(config)
        if data.validation is None:  # data given in code: hold out what the config asks
            data = input_pipeline.hold_out(data, config.get("validation_size", 0))
        run = Run(config, data, model)
        ckpt = mj.train.Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
        writer = mj.train.MetricsWriter(workdir, enabled=main)
        start = time.time()
        with contextlib.closing(ckpt):
            state, p = _restore(run, ckpt, writer)
            previous = _finished_results(workdir, run, p)
            if main:  # data, batch plan and checkpoint accepted: this config is the run's now
                run_identity.record(workdir, config)
            if previous is not None:
                return {"state": state, **previous}

            dstate = run.dp.put_state(state)
            meter, stopped = _Meter(), None
            profiler = _Profiler(config.profile_steps, workdir)
            activity = _ActivityLog(run, writer)
            first = p.step + 1  # it compiles the step: the bar's rate counts after it
            # the signals first: a Ctrl-C received before the loop stops it before a bar shows
            with (
                mj.train.StopSignals() as signals,
                _progress_bar(run.total_steps, p.step, main) as bar,
            ):
                while p.step < run.total_steps:
                    step = p.step + 1
                    batch = data.preprocess(next(run.data_iter), True)
                    activity(dstate, batch, step)
                    profiler.before(step)
                    dstate, metrics = run.dp.train_step(dstate, batch)
                    profiler.after(step, metrics)
                    meter.add(metrics)
                    p.step = step
                    bar.update(1)
                    if step == first:
                        _restart_clock(bar)

                    epoch_end = step % run.steps_per_epoch == 0
                    every = config.checkpoint_every_steps
                    checkpoint = epoch_end or bool(every and step % every == 0)
                    stop = mj.train.agree_to_stop(
                        signals.received is not None, step, config.log_every
                    )
                    if step % config.log_every == 0 or checkpoint or stop:
                        _log(run, writer, meter, bar, p, ckpt)
                    if epoch_end:
                        _evaluate(run, writer, p, dstate, start)
                    if checkpoint or stop:
                        _save(run, ckpt, p, dstate)
                    if stop:
                        stopped = signals.received or "SIGTERM"
                        break
                profiler.after(p.step, dstate, ended=True)
        if stopped and p.step >= run.total_steps:
            stopped = None  # the last step was done and saved: the run is complete
        if stopped:
            tqdm.write(
                f"{stopped}: saved a checkpoint at step {p.step} in {ckpt.directory}; "
                "run the same command to resume"
            )
        results = _results(run, p, time.time() - start, stopped)
        final = run.dp.get_state(dstate)
        if main:  # the weights first: results.json saying "finished" describes them
            record = dict(results)
            if not stopped:
                record[FINAL_SHA256] = _write_final_variables(workdir, final)
            mj.train.write_atomically(workdir / RESULTS, json.dumps(record, indent=2) + "\n")
    return {"state": final, **results}


# -- the loop's side work -------------------------------------------------------------


def _progress_bar(total: int, initial: int, main: bool) -> Any:
    """The loop's bar: its rate is the average since :func:`_restart_clock` (not a moving
    average, which the compiling first step would dominate for many updates)."""
    return tqdm(
        total=total, initial=initial, unit="step", mininterval=2.0, smoothing=0,
        disable=not main,
    )  # fmt: skip


def _restart_clock(bar: Any) -> None:
    """Starts the bar's clock again: its rate and time left count the steps after this
    one, its elapsed time too (called after a process's first step, which compiles)."""
    if not bar.disable:
        bar.initial = bar.n
        bar.start_t = bar.last_print_t = time.time()


def _write_final_variables(workdir: epath.Path, state: Any) -> str:
    """``{'params', 'batch_stats'}`` of ``state`` to ``<workdir>/final_variables.msgpack``
    (a temporary file and a rename: a kill leaves the old file or the new one); returns
    the file's sha256."""
    variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
    data = serialization.to_bytes(variables)
    mj.train.write_atomically(workdir / FINAL_VARIABLES, data)
    return hashlib.sha256(data).hexdigest()


@contextlib.contextmanager
def _holding(workdir: epath.Path, config: Any, allow_change: Any) -> Iterator[None]:
    """Holds the work directory's lock while the run lasts. Process 0 takes it and checks
    the run's identity; the others follow its verdict (an error on one process alone would
    leave the others waiting in a collective)."""
    lock = mj.train.RunLock(workdir)
    _on_process_0(lambda: _start(lock, workdir, config, allow_change))
    try:
        yield
    finally:
        lock.release()


def _restore(run: Run, ckpt: Any, writer: Any) -> tuple[Any, Progress]:
    """The state and progress to go on from: the newest readable checkpoint's, else the
    initial state at step 0. Moves the data iterator to the checkpoint's position."""
    like = run.dp.restore_target(mj.train.state_to_tree(run.state, run.rng))
    restored = ckpt.restore_latest(like, check_meta=_check_meta)
    if restored is None:
        writer.resume_at(0)  # records of a start that died before its first save
        return run.state, Progress()
    step, tree, meta = restored
    state, run.rng = mj.train.tree_to_state(tree, run.state)
    position = _data_position(meta)
    if position is None:  # written by another number of processes
        position = state_after(run.data_iter.get_state(), step * run.local_batch).decode()
        tqdm.write(
            f"the checkpoint was written by {_processes_of(meta)} process(es), this run has "
            f"{jax.process_count()}: each reads another shard of the data in another "
            f"order; the run goes on at step {step}, at the same point of the epoch, so "
            "the rest of an interrupted epoch may repeat some of its examples and miss "
            "others, and every later epoch is whole (results.json lists every count used)"
        )
    run.data_iter.set_state(position.encode())
    # (checkpoints from before device counts were recorded: taken as this run's)
    p = Progress(
        step,
        meta.get("best_test_accuracy", 0.0),
        meta.get("last_eval"),
        list(meta.get("device_counts", [jax.device_count()])),
        list(meta.get("process_counts", [_processes_of(meta)])),
    )
    writer.resume_at(step)
    tqdm.write(f"resumed from checkpoint at step {step} in {ckpt.directory}")
    if p.process_counts[-1] != jax.process_count():
        p.process_counts.append(jax.process_count())
    if p.device_counts[-1] != jax.device_count():
        tqdm.write(
            f"the checkpoint was written on {p.device_counts[-1]} device(s), this run "
            f"has {jax.device_count()}: same global batch and data order from step "
            f"{step + 1}, but another split of each batch over the devices (not "
            "bit-identical to a run that stayed on one count; results.json lists every "
            "count used)"
        )
        p.device_counts.append(jax.device_count())
    return state, p


def _save(run: Run, ckpt: Any, p: Progress, dstate: Any) -> None:
    """A checkpoint of ``dstate`` at ``p.step``, with every process's data position and the
    progress; a non-finite state stops the run instead (:class:`DivergenceError`)."""
    positions = _gather_strings(run.data_iter.get_state().decode())
    meta = {  # every process's position in its shard of the data
        "data": {str(rank): position for rank, position in enumerate(positions)},
        "processes": len(positions),
        "device_counts": p.device_counts,
        "process_counts": p.process_counts,
        "best_test_accuracy": p.best,
        "last_eval": p.last_eval,
    }
    tree = mj.train.state_to_tree(run.dp.get_state(dstate), run.rng)
    try:
        ckpt.save(p.step, tree, meta)
    except mj.train.NonFiniteStateError:
        raise _diverged(run, ckpt, p.step, "the parameters are not finite") from None


def _diverged(run: Run, ckpt: Any, step: int, what: str) -> DivergenceError:
    """The error for a NaN/Inf at ``step``, with the ways on."""
    steps = ckpt.all_steps()
    where = f"step {step} (epoch {run.epoch_of(step)})"
    lr = f"--config.learning_rate below {run.config.learning_rate:g}"
    if steps:
        last = (
            f"The last finite checkpoint is step {steps[-1]} in {ckpt.directory}. "
            f"Start afresh in a new --workdir with {lr}; or go on from step {steps[-1]} "
            "with it and --allow_change=learning_rate (this helps only if the run was "
            f"still healthy at step {steps[-1]})."
        )
    else:
        last = (
            f"No checkpoint was saved: run again with {lr} and --allow_change=learning_rate "
            "(or in a new --workdir)."
        )
    return DivergenceError(f"training diverged: {what} at {where}; stopped. {last}")


def _log(run: Run, writer: Any, meter: _Meter, bar: Any, p: Progress, ckpt: Any) -> None:
    """Fetches the pending metrics (stopping on NaN) and writes a train record."""
    bad = meter.fetch(p.step)
    if bad is not None:
        raise _diverged(run, ckpt, bad, "the training loss is not finite")
    rate = meter.count * run.config.batch_size / max(time.time() - meter.since, 1e-9)
    means = meter.means()
    bar.set_postfix(
        epoch=run.epoch_of(p.step),
        loss=f"{means['loss']:.4f}",
        acc=f"{means['accuracy']:.4f}",
        img_s=f"{rate:.0f}",
    )
    lr = float(run.schedule(p.step - 1))
    writer.write(p.step, "train", {**means, "images_per_second": rate, "learning_rate": lr})
    meter.reset()


def _evaluate(run: Run, writer: Any, p: Progress, dstate: Any, start: float) -> None:
    """Evaluates on the test set (and the validation set, and with the average of the
    weights, where the config asks) after an epoch and records it."""
    c = run.config
    epoch = p.step // run.steps_per_epoch
    record = {"epoch": epoch}
    for prefix, state in _evaluated_states(c, dstate):
        for split, source in (("val", run.data.validation), ("test", run.data.test)):
            if source is not None:
                m = mj.train.evaluate(run.dp, state, source, run.data.preprocess, c.eval_batch_size)
                record[f"{prefix}{split}_loss"] = m["loss"]
                record[f"{prefix}{split}_accuracy"] = m["accuracy"]
    p.best = max(p.best, record["test_accuracy"])
    p.last_eval = record
    writer.write(
        p.step,
        "eval",
        {**record, "best_test_accuracy": p.best, "wall_seconds": time.time() - start},
    )
    shown = "".join(
        f" | {k.removesuffix('_accuracy').replace('_', ' ')} acc {v:.4f}"
        for k, v in record.items()
        if k.endswith("_accuracy") and k != "test_accuracy"
    )
    tqdm.write(
        f"epoch {epoch}: test loss {record['test_loss']:.4f} acc {record['test_accuracy']:.4f} "
        f"(best {p.best:.4f}){shown} | {time.time() - start:.0f} s"
    )


def _evaluated_states(config: Any, dstate: Any) -> list[tuple[str, Any]]:
    """``(metric prefix, state)`` of the weights each evaluation measures: the trained ones
    and, with ``config.ema_decay``, their average (``'ema_'``) with the same tdBN statistics."""
    states = [("", dstate)]
    if config.get("ema_decay", 0.0):
        states.append(("ema_", dstate.replace(params=mj.train.averaged_params(dstate.opt_state))))
    return states


def _results(run: Run, p: Progress, wall: float, stopped: str | None) -> dict[str, Any]:
    """What ``results.json`` records."""
    return {
        "final_test_accuracy": None if p.last_eval is None else p.last_eval["test_accuracy"],
        **{
            f"final_{k}": v
            for k, v in (p.last_eval or {}).items()
            if k.endswith("_accuracy") and k != "test_accuracy"
        },
        "best_test_accuracy": p.best,
        "steps": p.step,
        "preempted": stopped is not None,
        "stopped_by": stopped,
        "wall_seconds": wall,
        "num_params": mj.models.num_params(run.state.params),
        "device_counts": p.device_counts,
        "process_counts": p.process_counts,
    }


def firing_rate_options(config: Any) -> dict[str, float]:
    """The train step's firing-rate regulariser from the config (weight 0: off)."""
    return {
        "firing_rate_reg": float(config.firing_rate_reg),
        "firing_rate_target": float(config.firing_rate_target),
    }


def _dormancy_constants(model: Any) -> tuple[Any, Any]:
    """``(thresholds, surrogate)`` of the model's neurons for the dormant fractions of the
    activity logs, or ``(None, None)`` (rates only) where they are not constants: learned
    thresholds, a factory of custom layers, a model that does not say its neuron."""
    neuron = model.neuron_model() if hasattr(model, "neuron_model") else None
    if neuron is None or not hasattr(neuron, "surrogate"):
        return None, None
    if any("threshold" in name for name in neuron.learned):
        return None, None
    try:
        levels = neuron.level_thresholds()
    except NotImplementedError:  # a user's model that does not say
        return None, None
    return tuple(float(v) for v in levels), neuron.surrogate


def _gather_strings(text: str) -> list[str]:
    """``text`` of every process, in process order (an all-gather)."""
    if jax.process_count() == 1:
        return [text]
    from jax.experimental import multihost_utils

    data = np.frombuffer(text.encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.int32(data.size))).reshape(-1)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [bytes(row[:n]).decode() for row, n in zip(rows, sizes, strict=True)]


def _check_meta(meta: dict[str, Any]) -> None:
    """Checks every field of a checkpoint's ``meta`` that the trainer reads; a missing or
    malformed one raises ``KeyError``, ``TypeError`` or ``ValueError``, and the checkpoint
    is then treated as unreadable (:meth:`mlf_jax.train.Checkpointer.restore_latest`)."""

    def number(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool)

    def counts(x: Any) -> bool:
        return (
            isinstance(x, list)
            and bool(x)
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in x)
        )

    data = meta["data"]
    if isinstance(data, dict):
        if not data or not all(isinstance(v, str) for v in data.values()):
            raise TypeError("meta 'data' is not a map of process to data position")
        if sorted(data) != [str(i) for i in range(len(data))]:
            raise ValueError(f"meta 'data' names processes {sorted(data)}")
    elif not isinstance(data, str):
        raise TypeError(f"meta 'data' is a {type(data).__name__}, not a data position")
    if not number(meta.get("best_test_accuracy", 0.0)):
        raise TypeError("meta 'best_test_accuracy' is not a number")
    last = meta.get("last_eval")
    if last is not None and not (
        isinstance(last, dict) and all(number(last.get(k)) for k in ("epoch", "test_accuracy"))
    ):
        raise TypeError("meta 'last_eval' is not an evaluation record")
    for key in ("device_counts", "process_counts"):
        if key in meta and not counts(meta[key]):
            raise TypeError(f"meta {key!r} is not a list of counts")


def _processes_of(meta: dict[str, Any]) -> int:
    """The number of processes that wrote a checkpoint's ``meta``."""
    data = meta["data"]
    return len(data) if isinstance(data, dict) else 1


def _data_position(meta: dict[str, Any]) -> str | None:
    """This process's data position in a checkpoint's ``meta``; None when it was written by
    another number of processes (each reads its own shard of the data, in its own order)."""
    if _processes_of(meta) != jax.process_count():
        return None
    data = meta["data"]
    return data if isinstance(data, str) else data[str(jax.process_index())]


def _start(lock: mj.train.RunLock, workdir: epath.Path, config: Any, allow_change: Any) -> None:
    """Takes the workdir's lock and checks the run's identity (releasing it if refused)."""
    lock.acquire()
    try:
        run_identity.check(workdir, config, allow_change, started=_has_checkpoints(workdir))
    except BaseException:
        lock.release()
        raise


def _on_process_0(fn: Any) -> None:
    """Runs ``fn`` on process 0; every process then raises its user error, if any, or
    goes on. (With one process: just ``fn()``.)"""
    if jax.process_count() == 1:
        fn()
        return
    from jax.experimental import multihost_utils

    error = None
    if jax.process_index() == 0:
        try:
            fn()
        except USER_ERRORS as e:
            error = e
    failed = multihost_utils.broadcast_one_to_all(np.int32(error is not None))
    if error is not None:
        raise error
    if int(failed):
        raise config_check.ConfigError("process 0 refused to start the run (see its message)")


def resolve_workdir(workdir: str | epath.PathLike) -> epath.Path:
    """The work directory as an absolute local path or a remote URI.

    Raises:
      config_check.ConfigError: for an empty one.
    """
    if not os.fspath(workdir).strip():
        raise config_check.ConfigError("--workdir must name a directory (or a gs:// URI)")
    if mj.train.is_remote(workdir):
        return epath.Path(workdir)
    return epath.Path(os.path.abspath(os.fspath(workdir)))


def _has_checkpoints(workdir: epath.Path) -> bool:
    """Whether ``<workdir>/checkpoints`` holds any (complete or unreadable) step."""
    directory = workdir / "checkpoints"
    return directory.exists() and any(p.name.isdigit() for p in directory.iterdir())


def _finished_results(workdir: epath.Path, run: Run, p: Progress) -> dict[str, Any] | None:
    """The recorded results when the restored run is already complete (nothing to
    train; its results stay as they were), else ``None``.

    Raises:
      config_check.ConfigError: the run has trained past this config's last step.
    """
    step, total = p.step, run.total_steps
    if step > total:
        raise config_check.ConfigError(
            f"config.num_epochs {run.config.num_epochs} ends at step {total}, but the run in "
            f"{workdir} has trained {step} steps; use num_epochs >= "
            f"{-(-step // run.steps_per_epoch)} (or a new --workdir)"
        )
    path = workdir / RESULTS
    if step < total or not path.exists():
        return None
    tqdm.write(f"the run in {workdir} is complete (step {step}); its results are unchanged")
    results = json.loads(path.read_text())
    results.pop(FINAL_SHA256, None)
    return results


def enable_compilation_cache(path: str) -> str | None:
    """Turns on JAX's persistent compilation cache in ``path`` (``~`` expanded; ``""``
    leaves it off); returns the directory used."""
    if not path:
        return None
    path = os.path.expanduser(path)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
    return path
