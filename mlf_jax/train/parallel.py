"""Data parallelism: one per-device step, mapped with ``jax.shard_map`` or ``jax.pmap``.

The train step (:func:`mlf_jax.train.step.train_step`) is written once, per
device, with ``lax.pmean`` over the axis ``'data'``. :class:`DataParallel`
maps it over every device of every process:

* ``'shard_map'`` (default): the state is a replicated global ``jax.Array``,
  the batch is sharded along its first axis over a 1-D mesh ``('data',)``;
  multi-host ready (each process contributes its local part of the batch).
* ``'pmap'``: the state carries a leading device axis, the batch is reshaped
  to ``[local_devices, per_device, ...]``.

``shard_map`` runs with ``check_vma=False``: the per-device step averages its
own gradients with ``lax.pmean``, as under ``pmap``. (With the varying-axis
checks on, JAX would already sum the gradients of the replicated parameters
over devices, and the explicit ``pmean`` would leave them ``D`` times too big.)

Both give the same numbers as one device with the global batch when the
model's tdBN takes ``axis_name='data'`` (statistics over the global batch).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from mlf_jax.train.step import eval_step, train_step

__all__ = ["AXIS", "PARALLEL_MODES", "DataParallel", "make_mesh"]

#: Name of the data-parallel device axis.
AXIS = "data"
PARALLEL_MODES = ("shard_map", "pmap")


def make_mesh(devices: Any = None) -> Mesh:
    """A 1-D mesh ``('data',)`` over ``devices`` (default: all devices of all processes)."""
    devices = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), (AXIS,))


def _check_batch(batch: Mapping[str, np.ndarray], divisor: int, what: str) -> None:
    sizes = {k: np.shape(v)[0] for k, v in batch.items()}
    if len(set(sizes.values())) != 1:
        raise ValueError(f"batch arrays differ in their first (batch) axis: {sizes}")
    n = next(iter(sizes.values()))
    if n % divisor:
        raise ValueError(
            f"batch size {n} is not divisible by the number of {what} ({divisor}); "
            f"use a batch size that is a multiple of {divisor}"
        )


class DataParallel:
    """Places state and batches on devices and runs the mapped train/eval steps.

    ``mapped_train_step`` and ``mapped_eval_step`` are the mapped functions themselves
    (``jax.jit`` of ``shard_map``, or ``jax.pmap``), for ahead-of-time lowering and
    ``jax.export``; they take device state and device batches.

    Args:
      mode: ``'shard_map'`` or ``'pmap'``.
      devices: devices to use (default: all).
      train_step_fn: per-device train step taking ``axis_name``.
      eval_step_fn: per-device eval step taking ``axis_name``.
    """

    def __init__(
        self,
        mode: str = "shard_map",
        devices: Any = None,
        train_step_fn: Callable = train_step,
        eval_step_fn: Callable = eval_step,
    ):
        if mode not in PARALLEL_MODES:
            raise ValueError(f"unknown parallel mode {mode!r}; expected one of {PARALLEL_MODES}")
        self.mode = mode
        self.mesh = make_mesh(devices)
        self.num_devices = self.mesh.devices.size
        self.local_devices = [
            d for d in self.mesh.devices.flat if d.process_index == jax.process_index()
        ]
        train = functools.partial(train_step_fn, axis_name=AXIS)
        evaluate = functools.partial(eval_step_fn, axis_name=AXIS)
        if mode == "shard_map":
            replicated, sharded = P(), P(AXIS)
            # (state, batch) -> replicated outputs; see the module docstring on check_vma
            mapped = functools.partial(
                jax.shard_map,
                mesh=self.mesh,
                in_specs=(replicated, sharded),
                out_specs=replicated,
                check_vma=False,
            )
            self.mapped_train_step = jax.jit(mapped(train), donate_argnums=0)
            self.mapped_eval_step = jax.jit(mapped(evaluate))
            self._replicated = NamedSharding(self.mesh, replicated)
            self._sharded = NamedSharding(self.mesh, sharded)
        else:
            mapped = functools.partial(jax.pmap, axis_name=AXIS, devices=self.local_devices)
            self.mapped_train_step = mapped(train, donate_argnums=0)
            self.mapped_eval_step = mapped(evaluate)

    def map_step(self, step_fn: Callable) -> Callable[[Any, Mapping[str, np.ndarray]], Any]:
        """Maps another per-device function of ``(state, batch, *, axis_name)`` as the eval
        step is mapped; it must reduce its outputs over the axis (``lax.pmean``/``psum``).

        Returns ``run(device_state, host_batch) -> outputs`` (one copy, also under pmap),
        compiled on its first call.
        """
        fn = functools.partial(step_fn, axis_name=AXIS)
        if self.mode == "shard_map":
            mapped = jax.jit(
                jax.shard_map(
                    fn, mesh=self.mesh, in_specs=(P(), P(AXIS)), out_specs=P(), check_vma=False
                )
            )
        else:
            mapped = jax.pmap(fn, axis_name=AXIS, devices=self.local_devices)

        def run(state: Any, batch: Mapping[str, np.ndarray]) -> Any:
            out = mapped(state, self.put_batch(batch))
            return jax.tree.map(lambda x: x[0], out) if self.mode == "pmap" else out

        return run

    # -- placement ----------------------------------------------------------

    def put_state(self, state: Any) -> Any:
        """Host or single-device state -> replicated device state."""
        if self.mode == "shard_map":
            return jax.device_put(state, self._replicated)
        n = len(self.local_devices)
        return jax.tree.map(lambda x: np.stack([np.asarray(x)] * n), state)

    def restore_target(self, tree: Any) -> Any:
        """Where a checkpoint's arrays go: ``tree`` (a host state's arrays, as
        :func:`~mlf_jax.train.checkpoint.state_to_tree` gives them) with each array replaced
        by a shape/dtype struct placed as :meth:`put_state` places it.

        Restoring onto this run's devices, rather than the ones that wrote the checkpoint,
        is what lets a run resume on another device count. Numpy leaves stay numpy.
        """
        if self.mode != "shard_map":
            return tree  # pmap takes host arrays: restore onto this process's first device
        return jax.tree.map(
            lambda x: (
                jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=self._replicated)
                if isinstance(x, jax.Array)
                else x
            ),
            tree,
        )

    def get_state(self, state: Any) -> Any:
        """Device state -> one copy of it (for checkpoints and evaluation on the host)."""
        if self.mode == "shard_map":
            return state
        return jax.tree.map(lambda x: x[0], state)

    def put_batch(self, batch: Mapping[str, np.ndarray]) -> dict[str, jax.Array | np.ndarray]:
        """This process's part of a global batch -> device arrays.

        The global batch is the concatenation of every process's local batch in
        process order; its size must be divisible by the number of devices.
        """
        _check_batch(batch, len(self.local_devices), "local devices")
        if self.mode == "shard_map":
            return {
                k: jax.make_array_from_process_local_data(self._sharded, np.asarray(v))
                for k, v in batch.items()
            }
        n = len(self.local_devices)
        return {k: np.asarray(v).reshape(n, -1, *np.shape(v)[1:]) for k, v in batch.items()}

    # -- compilation ahead of time ---------------------------------------------

    def lower_train_step(self, state: Any, batch: Mapping[str, np.ndarray]) -> jax.stages.Lowered:
        """The mapped train step lowered for these (device) state and host batch shapes:
        ``.compile()`` it to see its memory figures or cost before running anything."""
        return self.mapped_train_step.lower(state, self.put_batch(batch))

    def lower_eval_step(self, state: Any, batch: Mapping[str, np.ndarray]) -> jax.stages.Lowered:
        """As :meth:`lower_train_step`, for the eval step."""
        return self.mapped_eval_step.lower(state, self.put_batch(batch))

    # -- steps ----------------------------------------------------------------

    def train_step(self, state: Any, batch: Mapping[str, np.ndarray]) -> tuple[Any, dict]:
        """One data-parallel SGD step; returns the new (device) state and metrics."""
        state, metrics = self.mapped_train_step(state, self.put_batch(batch))
        if self.mode == "pmap":
            metrics = jax.tree.map(lambda x: x[0], metrics)
        return state, metrics

    def eval_step(self, state: Any, batch: Mapping[str, np.ndarray]) -> dict:
        """Summed eval metrics over the global batch."""
        sums = self.mapped_eval_step(state, self.put_batch(batch))
        if self.mode == "pmap":
            sums = jax.tree.map(lambda x: x[0], sums)
        return sums


def global_to_host(tree: Any) -> Any:
    """Fully replicated device arrays -> numpy (works across processes)."""
    return jax.tree.map(
        lambda x: np.asarray(jax.device_get(x)) if isinstance(x, jax.Array) else x, tree
    )
