"""Checkpoints with Orbax: train state, RNG and the data iterator's position.

A checkpoint holds ``{'state': {step, params, batch_stats, opt_state, rng},
'meta': {json}}`` where ``meta`` carries the data iterator's state and any
bookkeeping (epoch, best accuracy). Orbax writes each checkpoint to a temporary
directory and renames it when complete, so an interrupted save never looks
finished; a latest checkpoint that cannot be read is skipped, with a warning,
in favour of the one before it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from mlf_jax.train.state import TrainState

__all__ = ["Checkpointer", "state_to_tree", "tree_to_state"]


def state_to_tree(state: TrainState, rng: jax.Array) -> dict[str, Any]:
    """The arrays of a train state (and the RNG key) as a plain dict."""
    return {
        "step": state.step,
        "params": state.params,
        "batch_stats": state.batch_stats,
        "opt_state": state.opt_state,
        "rng": jax.random.key_data(rng),
    }


def tree_to_state(tree: dict[str, Any], like: TrainState) -> tuple[TrainState, jax.Array]:
    """Inverse of :func:`state_to_tree`, with ``apply_fn``/``tx`` taken from ``like``."""
    state = like.replace(
        step=tree["step"],
        params=tree["params"],
        batch_stats=tree["batch_stats"],
        opt_state=tree["opt_state"],
    )
    return state, jax.random.wrap_key_data(np.asarray(tree["rng"]))


class Checkpointer:
    """Saves and restores training checkpoints in ``directory`` (keeps ``max_to_keep``)."""

    def __init__(self, directory: str | os.PathLike, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.fspath(directory))
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, create=True, enable_async_checkpointing=False
            ),
        )

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints, oldest first."""
        return sorted(self.manager.all_steps())

    def save(self, step: int, tree: dict[str, Any], meta: dict[str, Any]) -> None:
        """Writes checkpoint ``step`` (blocking until it is complete on disk)."""
        self.manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(tree), meta=ocp.args.JsonSave(dict(meta))
            ),
            force=True,
        )
        self.manager.wait_until_finished()

    def restore_latest(self, like: dict[str, Any]) -> tuple[int, dict[str, Any], dict] | None:
        """The newest readable checkpoint as ``(step, tree, meta)``, or ``None`` if there is none.

        ``like`` is a tree of the same structure (arrays or shape/dtype structs).
        An unreadable checkpoint is skipped with a warning, falling back to the
        one before it.
        """
        target = jax.tree.map(
            lambda x: (
                jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype)
                if not isinstance(x, jax.ShapeDtypeStruct)
                else x
            ),
            like,
        )
        for step in reversed(self.all_steps()):
            try:
                restored = self.manager.restore(
                    step,
                    args=ocp.args.Composite(
                        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
                    ),
                )
                return step, restored["state"], dict(restored["meta"])
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped
                warnings.warn(
                    f"checkpoint at step {step} in {self.directory} could not be restored "
                    f"({type(e).__name__}: {str(e)[:200]}); falling back to the one before it",
                    stacklevel=2,
                )
        return None

    def close(self) -> None:
        self.manager.close()
