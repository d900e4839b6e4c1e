"""Evaluation over a whole data set, data parallel, each process reading its own share."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

from mlf_jax.train.parallel import DataParallel

__all__ = ["Preprocess", "evaluate", "local_eval_batch", "pad_batch"]

#: Host-side batch preprocessing: ``(batch, train) -> batch`` on numpy arrays.
Preprocess = Callable[[Mapping[str, np.ndarray], bool], dict[str, np.ndarray]]


def pad_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Pads a short batch to ``size`` examples and adds a 0/1 ``mask``."""
    n = len(batch["label"])
    out = {
        k: np.concatenate([v, np.zeros((size - n, *v.shape[1:]), v.dtype)])
        for k, v in batch.items()
    }
    out["mask"] = (np.arange(size) < n).astype(np.float32)
    return out


def local_eval_batch(batch_size: int, local_devices: int) -> int:
    """This process's evaluation batch for a global ``batch_size``: its share, rounded up
    to a multiple of its ``local_devices``."""
    per_device = max(1, math.ceil(batch_size / jax.process_count() / local_devices))
    return per_device * local_devices


def evaluate(
    dp: DataParallel, state: Any, source: Any, preprocess: Preprocess, batch_size: int
) -> dict[str, float]:
    """Loss and accuracy over all of ``source``, each process reading its own share.

    ``batch_size`` is global. It need not divide by the device count: each process's
    share of it is rounded up to a multiple of its devices, and short batches are
    padded with masked examples. Every process runs the same number of batches.
    """
    procs, rank = jax.process_count(), jax.process_index()
    local_bs = local_eval_batch(batch_size, len(dp.local_devices))
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
        sums = jax.device_get(dp.eval_step(state, pad_batch(batch, local_bs)))
        for k in totals:
            totals[k] += float(sums[k])
    return {
        "loss": totals["loss"] / totals["count"],
        "accuracy": totals["correct"] / totals["count"],
    }
