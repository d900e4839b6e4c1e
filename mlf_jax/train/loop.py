"""Single-device training loop: epochs of train steps, evaluation, metrics on disk."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import serialization
from tqdm.auto import tqdm

from mlf_jax.data.source import ArraySource, batches
from mlf_jax.train import optim
from mlf_jax.train.state import TrainState, create_train_state
from mlf_jax.train.step import eval_step, train_step

__all__ = ["evaluate", "fit", "MetricsWriter"]

Preprocess = Callable[[Mapping[str, np.ndarray], bool], dict[str, np.ndarray]]


class MetricsWriter:
    """Appends one JSON object per line to ``<workdir>/metrics.jsonl``."""

    def __init__(self, workdir: str | os.PathLike):
        self.path = Path(workdir) / "metrics.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: Mapping[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(_to_python(record)) + "\n")


def _to_python(tree):
    return jax.tree.map(lambda v: v.item() if hasattr(v, "item") else v, dict(tree))


def _pad_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Pads a short batch to ``size`` examples and adds a 0/1 ``mask``."""
    n = len(batch["label"])
    out = {
        k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)])
        for k, v in batch.items()
    }
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


def evaluate(
    state: TrainState,
    source: ArraySource,
    preprocess: Preprocess,
    batch_size: int,
    *,
    step_fn: Callable | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Loss and accuracy over all of ``source`` (with running tdBN statistics)."""
    step_fn = step_fn or jax.jit(eval_step)
    totals = {"loss": 0.0, "correct": 0.0, "count": 0.0}
    it = batches(source, batch_size)
    if progress:
        it = tqdm(it, total=math.ceil(len(source) / batch_size), desc="eval", leave=False)
    for raw in it:
        sums = step_fn(state, _pad_batch(preprocess(raw, False), batch_size))
        for k in totals:
            totals[k] += float(sums[k])
    return {
        "loss": totals["loss"] / totals["count"],
        "accuracy": totals["correct"] / totals["count"],
    }


def fit(
    model: nn.Module,
    train_source: ArraySource,
    test_source: ArraySource,
    preprocess: Preprocess,
    config: Any,
    workdir: str | os.PathLike,
) -> dict[str, Any]:
    """Trains ``model`` with SGD on ``train_source``, evaluating on ``test_source`` each epoch.

    ``config`` needs: ``seed``, ``batch_size``, ``eval_batch_size``, ``num_epochs``,
    ``learning_rate``, ``momentum``, ``weight_decay``, ``schedule``,
    ``lr_decay_epochs``, ``lr_decay_factor``, ``warmup_epochs``, ``log_every``.

    Writes ``metrics.jsonl`` (one line per epoch), ``results.json`` and the final
    ``params``/``batch_stats`` (``final_variables.msgpack``) to ``workdir``.

    Raises:
      FloatingPointError: when the training loss becomes NaN or infinite.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    writer = MetricsWriter(workdir)
    steps_per_epoch = len(train_source) // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size {config.batch_size} exceeds the training set "
            f"({len(train_source)} examples)"
        )
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
    sample = preprocess(train_source[np.arange(config.batch_size)], False)["image"]
    state = create_train_state(model, tx, jax.random.key(config.seed), jnp.asarray(sample))
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))

    p_train = jax.jit(train_step, donate_argnums=0)
    p_eval = jax.jit(eval_step)
    start = time.time()
    best = 0.0
    record: dict[str, Any] = {}
    for epoch in range(1, config.num_epochs + 1):
        epoch_start = time.time()
        sums, count = {"loss": 0.0, "accuracy": 0.0}, 0
        bar = tqdm(
            batches(
                train_source,
                config.batch_size,
                shuffle=True,
                seed=config.seed,
                epoch=epoch,
                drop_remainder=True,
            ),
            total=steps_per_epoch,
            desc=f"epoch {epoch}/{config.num_epochs}",
            unit="step",
            mininterval=2.0,
        )
        pending = []
        for i, raw in enumerate(bar, start=1):
            state, metrics = p_train(state, preprocess(raw, True))
            pending.append(metrics)
            if i % config.log_every == 0 or i == steps_per_epoch:
                host = jax.device_get(pending)
                pending = []
                for m in host:
                    if not math.isfinite(float(m["loss"])):
                        raise FloatingPointError(
                            f"training loss is {m['loss']} at epoch {epoch}, "
                            f"step {int(state.step)}; "
                            "stopping (try a lower learning_rate)"
                        )
                    sums["loss"] += float(m["loss"])
                    sums["accuracy"] += float(m["accuracy"])
                count += len(host)
                rate = i * config.batch_size / (time.time() - epoch_start)
                bar.set_postfix(
                    loss=f"{sums['loss'] / count:.4f}",
                    acc=f"{sums['accuracy'] / count:.4f}",
                    img_s=f"{rate:.0f}",
                )
        bar.close()
        train_seconds = time.time() - epoch_start
        test = evaluate(state, test_source, preprocess, config.eval_batch_size, step_fn=p_eval)
        best = max(best, test["accuracy"])
        record = {
            "epoch": epoch,
            "step": int(state.step),
            "learning_rate": float(schedule(int(state.step) - 1)),
            "train_loss": sums["loss"] / count,
            "train_accuracy": sums["accuracy"] / count,
            "test_loss": test["loss"],
            "test_accuracy": test["accuracy"],
            "best_test_accuracy": best,
            "epoch_seconds": train_seconds,
            "train_images_per_second": steps_per_epoch * config.batch_size / train_seconds,
            "wall_seconds": time.time() - start,
        }
        writer.write(record)
        tqdm.write(
            f"epoch {epoch}: train loss {record['train_loss']:.4f}"
            f" acc {record['train_accuracy']:.4f}"
            f" | test loss {test['loss']:.4f} acc {test['accuracy']:.4f}"
            f" | {record['train_images_per_second']:.0f} img/s, {record['wall_seconds']:.0f} s"
        )

    variables = {"params": state.params, "batch_stats": state.batch_stats}
    (workdir / "final_variables.msgpack").write_bytes(serialization.to_bytes(variables))
    results = {
        "final_test_accuracy": record.get("test_accuracy"),
        "best_test_accuracy": best,
        "wall_seconds": time.time() - start,
        "num_params": n_params,
        "steps": int(state.step),
    }
    (workdir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return {"state": state, **results}
