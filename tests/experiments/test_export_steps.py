"""The data-parallel train and eval steps of every paper preset lower for TPU and CUDA
(``jax.export``, no accelerator needed): float32 and bfloat16, with and without remat.

Only lowering is checked here: XLA compiles for the device when a run starts there (the
dry run, ``--dry_run``, compiles on the machine it runs on). ``jax.export`` accepts only
``jit`` functions, so the ``pmap`` mapping (which runs the same per-device step, tested
equal to ``shard_map`` on CPU) cannot be exported; the ``shard_map`` one is.
"""

import jax
import numpy as np
import pytest
from jax import export
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

import mlf_jax as mj
from experiments.bench.train_step import preset_config
from experiments.models import build_model
from experiments.trainer import make_optimizer

PLATFORMS = ("tpu", "cuda")
CASES = [
    pytest.param(preset, dtype, remat, marks=() if fast else pytest.mark.slow)
    for preset in ("cifar10", "gesture", "cifar10dvs")
    for dtype in ("float32", "bfloat16")
    for remat in (False, True)
    for fast in [(dtype, remat) == ("float32", False) and preset == "cifar10"]
]


def _abstract(tree, sharding):
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), tree)


@pytest.mark.parametrize("preset, dtype, remat", CASES)
def test_train_and_eval_steps_lower_for_tpu_and_cuda(preset, dtype, remat):
    config, shape = preset_config(preset)
    config.model.dtype, config.model.remat = dtype, remat
    model = build_model(config)
    tx, _ = make_optimizer(config, steps_per_epoch=10)
    per_device = 2
    batch = jax.device_count() * per_device
    image = jax.ShapeDtypeStruct((batch, *shape), np.float32)
    state = jax.eval_shape(
        lambda: mj.train.create_train_state(
            model, tx, jax.random.key(0), mj.train.model_input(np.zeros((2, *shape), np.float32))
        )
    )
    dp = mj.train.DataParallel("shard_map")
    replicated, sharded = NamedSharding(dp.mesh, P()), NamedSharding(dp.mesh, P(mj.train.AXIS))
    state = _abstract(state, replicated)
    train_batch = _abstract(
        {"image": image, "label": jax.ShapeDtypeStruct((batch,), np.int32)}, sharded
    )
    eval_batch = {
        **train_batch,
        "mask": jax.ShapeDtypeStruct((batch,), np.float32, sharding=sharded),
    }
    steps = (
        ("train", dp.mapped_train_step, train_batch),
        ("eval", dp.mapped_eval_step, eval_batch),
    )
    for name, step, b in steps:
        exported = export.export(step, platforms=PLATFORMS)(state, b)
        assert exported.platforms == PLATFORMS, name
        assert exported.nr_devices == jax.device_count()
        text = exported.mlir_module()
        assert "all-reduce" in text or "all_reduce" in text, f"{name}: no cross-device mean"
