"""The training loop: data-parallel steps, evaluation, checkpoints, preemption.

:func:`fit` trains a model for ``config.num_epochs`` epochs on every device of
every process, evaluating after each epoch. It resumes automatically from the
newest readable checkpoint in ``<workdir>/checkpoints``, saves one at the end
of every epoch (and every ``config.checkpoint_every_steps`` steps), and on
SIGTERM (preemption) saves one and returns cleanly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import linen as nn
from tqdm.auto import tqdm

from mlf_jax.train import optim
from mlf_jax.train.checkpoint import Checkpointer, state_to_tree, tree_to_state
from mlf_jax.train.metrics import MetricsWriter
from mlf_jax.train.parallel import DataParallel
from mlf_jax.train.state import create_train_state
from mlf_jax.train.step import model_input

__all__ = ["evaluate", "fit", "Preempted"]

Preprocess = Callable[[Mapping[str, np.ndarray], bool], dict[str, np.ndarray]]


class Preempted(Exception):  # noqa: N818 - a signal, not an error
    """Raised inside the loop when SIGTERM arrives (caught by :func:`fit`)."""


class _SigtermFlag:
    """Records SIGTERM instead of dying, so that the loop can checkpoint first."""

    def __init__(self):
        self.set = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame):
        self.set = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _pad(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Pads a short batch to ``size`` examples and adds a 0/1 ``mask``."""
    n = len(batch["label"])
    out = {
        k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)])
        for k, v in batch.items()
    }
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


def evaluate(
    dp: DataParallel, state: Any, source: Any, preprocess: Preprocess, batch_size: int
) -> dict[str, float]:
    """Loss and accuracy over all of ``source``, each process reading its own share.

    ``batch_size`` is global; every process runs the same number of (padded) batches.
    """
    procs, rank = jax.process_count(), jax.process_index()
    local_bs = batch_size // procs
    share = math.ceil(len(source) / procs)
    indices = np.arange(rank * share, min((rank + 1) * share, len(source)))
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    for b in range(math.ceil(share / local_bs)):
        idx = indices[b * local_bs : (b + 1) * local_bs]
        # a process that ran out of examples still runs the (all-padding) batch, so
        # that the collectives of every process stay in step
        batch = preprocess(source[idx if len(idx) else np.arange(1)], False)
        if not len(idx):
            batch = {k: v[:0] for k, v in batch.items()}
        sums = jax.device_get(dp.eval_step(state, _pad(batch, local_bs)))
        for k in totals:
            totals[k] += float(sums[k])
    return {
        "loss": totals["loss"] / totals["count"],
        "accuracy": totals["correct"] / totals["count"],
    }


def _check_config(config: Any, train_size: int) -> tuple[int, int]:
    devices, procs = jax.device_count(), jax.process_count()
    for name in ("batch_size", "eval_batch_size"):
        value = config[name]
        if value % devices:
            raise ValueError(
                f"{name} {value} is not divisible by the number of devices ({devices}); "
                f"use a multiple of {devices}"
            )
    steps_per_epoch = train_size // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the training set ({train_size} examples)"
        )
    return steps_per_epoch, config.batch_size // procs


def fit(
    model: nn.Module,
    train_source: Any,
    test_source: Any,
    preprocess: Preprocess,
    config: Any,
    workdir: str | os.PathLike,
    *,
    augment: Callable[[dict, np.random.Generator], dict] | None = None,
) -> dict[str, Any]:
    """Trains ``model`` (data parallel over all devices) and evaluates every epoch.

    Args:
      model: a Flax module called as ``model(x, train=...)``; for cross-device
        tdBN statistics build it with ``axis_name='data'``.
      train_source, test_source: random-access sources of ``{'image', 'label'}``.
      preprocess: ``(batch, train) -> batch`` applied to numpy batches on the host.
      config: ``seed, batch_size, eval_batch_size, num_epochs, learning_rate,
        momentum, weight_decay, schedule, lr_decay_epochs, lr_decay_factor,
        warmup_epochs, log_every, parallel, keep_checkpoints,
        checkpoint_every_steps``.
      workdir: metrics, TensorBoard events, checkpoints and results go here.
      augment: per-example random augmentation ``(example, rng) -> example``.

    Returns:
      ``{'final_test_accuracy', 'best_test_accuracy', 'steps', 'preempted', ...}``.

    Raises:
      FloatingPointError: when the training loss becomes NaN or infinite; the
        last checkpoint (all of whose steps had finite losses) is kept.
      ValueError: for a batch size not divisible by the device count.
    """
    workdir = Path(workdir)
    main = jax.process_index() == 0
    steps_per_epoch, local_bs = _check_config(config, len(train_source))
    total_steps = steps_per_epoch * config.num_epochs
    schedule = optim.learning_rate_schedule(
        config.learning_rate,
        steps_per_epoch,
        config.num_epochs,
        kind=config.schedule,
        decay_epochs=config.lr_decay_epochs,
        decay_factor=config.lr_decay_factor,
        warmup_epochs=config.warmup_epochs,
    )
    tx = optim.sgd(schedule, config.momentum, config.weight_decay)
    dp = DataParallel(config.parallel)
    rng = jax.random.key(config.seed)
    sample = preprocess(train_source[np.arange(min(2, len(train_source)))], False)["image"]
    state = create_train_state(model, tx, rng, model_input(sample))
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))

    from mlf_jax.data.loader import make_loader

    loader = make_loader(
        train_source,
        batch_size=local_bs,
        shuffle=True,
        seed=config.seed,
        num_epochs=config.num_epochs,
        drop_remainder=True,
        transform=augment,
    )
    data_iter = iter(loader)
    ckpt = Checkpointer(workdir / "checkpoints", config.keep_checkpoints)
    writer = MetricsWriter(workdir, enabled=main)
    step, best, last_eval = 0, 0.0, None
    restored = ckpt.restore_latest(state_to_tree(state, rng))
    if restored is not None:
        step, tree, meta = restored
        state, rng = tree_to_state(tree, state)
        data_iter.set_state(meta["data"].encode())
        best, last_eval = meta.get("best_test_accuracy", 0.0), meta.get("last_eval")
        tqdm.write(f"resumed from checkpoint at step {step} in {ckpt.directory}")
    dstate = dp.put_state(state)

    def save(at_step: int) -> None:
        meta = {
            "data": data_iter.get_state().decode(),
            "best_test_accuracy": best,
            "last_eval": last_eval,
        }
        ckpt.save(at_step, state_to_tree(dp.get_state(dstate), rng), meta)

    start = time.time()
    pending: list = []
    sums, count, seen_since = {"loss": 0.0, "accuracy": 0.0}, 0, time.time()
    preempted = False

    def flush(at_step: int) -> None:
        """Fetches pending metrics, stops on a non-finite loss, logs the running means."""
        nonlocal pending, sums, count, seen_since
        host = jax.device_get(pending)
        pending = []
        for i, m in enumerate(host):
            if not math.isfinite(float(m["loss"])):
                bad = at_step - len(host) + i + 1
                raise FloatingPointError(
                    f"training loss is {float(m['loss'])} at step {bad} "
                    f"(epoch {(bad - 1) // steps_per_epoch + 1}); stopping. The last good "
                    f"checkpoint is kept in {ckpt.directory} (steps {ckpt.all_steps()}). "
                    "Try a lower learning_rate."
                )
            sums["loss"] += float(m["loss"])
            sums["accuracy"] += float(m["accuracy"])
        count += len(host)

    bar = tqdm(total=total_steps, initial=step, unit="step", mininterval=2.0, disable=not main)
    with _SigtermFlag() as sigterm:
        try:
            while step < total_steps:
                batch = preprocess(next(data_iter), True)
                dstate, metrics = dp.train_step(dstate, batch)
                pending.append(metrics)
                step += 1
                bar.update(1)
                epoch_end = step % steps_per_epoch == 0
                every = config.checkpoint_every_steps
                if step % config.log_every == 0 or epoch_end or (every and step % every == 0):
                    flush(step)
                    rate = count * config.batch_size / max(time.time() - seen_since, 1e-9)
                    train_means = {k: v / max(count, 1) for k, v in sums.items()}
                    bar.set_postfix(
                        epoch=(step - 1) // steps_per_epoch + 1,
                        loss=f"{train_means['loss']:.4f}",
                        acc=f"{train_means['accuracy']:.4f}",
                        img_s=f"{rate:.0f}",
                    )
                    writer.write(
                        step,
                        "train",
                        {
                            **train_means,
                            "images_per_second": rate,
                            "learning_rate": float(schedule(step - 1)),
                        },
                    )
                    sums, count, seen_since = {"loss": 0.0, "accuracy": 0.0}, 0, time.time()
                if epoch_end:
                    test = evaluate(dp, dstate, test_source, preprocess, config.eval_batch_size)
                    best = max(best, test["accuracy"])
                    epoch = step // steps_per_epoch
                    last_eval = {
                        "epoch": epoch,
                        "test_loss": test["loss"],
                        "test_accuracy": test["accuracy"],
                    }
                    writer.write(
                        step,
                        "eval",
                        {
                            **last_eval,
                            "best_test_accuracy": best,
                            "wall_seconds": time.time() - start,
                        },
                    )
                    tqdm.write(
                        f"epoch {epoch}: test loss {test['loss']:.4f} acc {test['accuracy']:.4f} "
                        f"(best {best:.4f}) | {time.time() - start:.0f} s"
                    )
                    save(step)
                elif every and step % every == 0:
                    save(step)
                if _should_stop(sigterm.set, step, config.log_every):
                    raise Preempted
        except Preempted:
            flush(step)
            save(step)
            preempted = True
            tqdm.write(f"SIGTERM: saved a checkpoint at step {step} in {ckpt.directory}; exiting")
        finally:
            bar.close()
            writer.close()
            ckpt.close()

    results = {
        "final_test_accuracy": None if last_eval is None else last_eval["test_accuracy"],
        "best_test_accuracy": best,
        "steps": step,
        "preempted": preempted,
        "wall_seconds": time.time() - start,
        "num_params": n_params,
    }
    if main:
        (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return {"state": dp.get_state(dstate), **results}


def _should_stop(flag: bool, step: int, every: int) -> bool:
    """Whether to stop for SIGTERM now. With several processes all must stop at the
    same step: they agree (an all-gather of the flag) every ``every`` steps."""
    if jax.process_count() == 1:
        return flag
    if step % every:
        return False
    from jax.experimental import multihost_utils

    return bool(np.any(multihost_utils.process_allgather(np.asarray(flag))))
