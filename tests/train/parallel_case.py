"""A tiny training problem shared by the data-parallel and multi-host tests."""

import jax
import numpy as np

import mlf_jax as mj

STEPS = 3
BATCH = 8


def model(axis_name):
    return mj.models.resnet(
        8, widths=(4, 4, 8), num_classes=3, time_steps=2, in_channels=1, axis_name=axis_name
    )


def batches():
    rng = np.random.default_rng(0)
    return [
        {
            "image": rng.normal(size=(BATCH, 8, 8, 1)).astype(np.float32),
            "label": rng.integers(0, 3, BATCH).astype(np.int32),
        }
        for _ in range(STEPS)
    ]


def initial_state(m):
    tx = mj.train.sgd(0.1, 0.9, 1e-3)
    return mj.train.create_train_state(
        m, tx, jax.random.key(0), np.zeros((BATCH, 8, 8, 1), np.float32)
    )


def single_device_run():
    """Reference: one device, the global batch, plain ``jit``."""
    state = initial_state(model(None))
    step = jax.jit(mj.train.train_step)
    losses = []
    for batch in batches():
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"]))
    return jax.device_get(state), losses


def flat(tree):
    """``{'a/b/c': array}`` of a pytree's leaves."""
    return {
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }
