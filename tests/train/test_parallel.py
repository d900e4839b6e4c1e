"""Data parallelism on 2 fake CPU devices equals one device with the global batch."""

import jax
import numpy as np
import pytest

from mlf_jax.train.parallel import AXIS, DataParallel

from .parallel_case import BATCH, STEPS, single_device_run
from .parallel_case import batches as _batches
from .parallel_case import initial_state as _state
from .parallel_case import model as _model

pytestmark = pytest.mark.skipif(
    jax.device_count() < 2,
    reason="needs 2 devices: XLA_FLAGS=--xla_force_host_platform_device_count=2",
)


@pytest.fixture(scope="module")
def single_device_result():
    return single_device_run()


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_two_devices_equal_one_device_with_the_global_batch(mode, single_device_result):
    ref_state, ref_losses = single_device_result
    dp = DataParallel(mode, devices=jax.devices()[:2])
    state = dp.put_state(_state(_model(AXIS)))
    losses = []
    for batch in _batches():
        state, metrics = dp.train_step(state, batch)
        losses.append(float(metrics["loss"]))
    state = jax.device_get(dp.get_state(state))
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
    for name in ("params", "batch_stats", "opt_state"):
        jax.tree.map(
            lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
            getattr(state, name),
            getattr(ref_state, name),
        )
    assert int(state.step) == STEPS
    # the parameters did move (the comparison is not between two untouched inits)
    init = jax.device_get(_state(_model(None)).params)
    moved = jax.tree.leaves(
        jax.tree.map(lambda a, b: float(np.abs(a - b).max()), state.params, init)
    )
    assert max(moved) > 1e-3


@pytest.mark.parametrize("mode", ["shard_map", "pmap"])
def test_eval_sums_over_the_global_batch(mode):
    model = _model(AXIS)
    state = _state(model)
    batch = _batches()[0]
    dp = DataParallel(mode, devices=jax.devices()[:2])
    sums = jax.device_get(dp.eval_step(dp.put_state(state), batch))
    logits = model.apply(
        {"params": state.params, "batch_stats": state.batch_stats}, batch["image"], train=False
    )
    assert float(sums["count"]) == BATCH
    assert float(sums["correct"]) == float(np.sum(np.argmax(logits, -1) == batch["label"]))


def test_batch_not_divisible_by_device_count_is_an_error():
    dp = DataParallel("shard_map", devices=jax.devices()[:2])
    batch = {"image": np.zeros((7, 8, 8, 1), np.float32), "label": np.zeros(7, np.int32)}
    with pytest.raises(
        ValueError, match="batch size 7 is not divisible by the number of local devices \\(2\\)"
    ):
        dp.put_batch(batch)


def test_unknown_mode():
    with pytest.raises(ValueError, match="unknown parallel mode 'dp'"):
        DataParallel("dp")
