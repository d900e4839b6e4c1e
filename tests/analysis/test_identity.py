"""identity_probe: Theorem 2 (a DS block with a silent residual is exactly the identity)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mlf_jax.analysis import identity_probe
from mlf_jax.nn import BasicBlock


def _variables(block, x):
    """Parameters as init makes them, without compiling init: kernels random, bn 1/0."""
    shapes = jax.eval_shape(lambda: block.init(jax.random.key(0), x))
    rng = np.random.default_rng(0)

    def fill(path, s):
        name = path[-1].key
        if name == "kernel":
            return rng.standard_normal(s.shape).astype(np.float32)
        return np.ones(s.shape, np.float32) if name in ("scale", "var") else np.zeros(s.shape)

    return jax.tree_util.tree_map_with_path(fill, shapes)


def test_ds_block_with_silent_residual_is_exactly_the_identity():
    x = jax.random.randint(jax.random.key(1), (3, 2, 4, 4, 4), 0, 4).astype(jnp.float32)
    block = BasicBlock(4, shortcut="ds")
    v = _variables(block, x)
    assert identity_probe(block, v, x) == 0.0
    assert identity_probe(block, v, x, train=True) == 0.0
    np.testing.assert_array_equal(v["params"]["bn2"]["bias"], 0.0)  # variables untouched
    # unsilenced, the residual branch fires and adds to x
    assert identity_probe(block, v, x, silence_residual=False) > 0.0


def test_standard_block_with_silent_residual_applies_mlf_to_its_input():
    # constant 2.0 through MLF (0.6, 1.6, 2.6): 2, 2, 3 (level 3: 2, 2.5, 2.625 > 2.6).
    # Deviation: one unit-step in three is off by 1; ||x|| = 2 sqrt(3 N) for N units.
    x = jnp.full((3, 1, 2, 2, 4), 2.0)
    block = BasicBlock(4, shortcut="standard")
    v = _variables(block, x)
    assert identity_probe(block, v, x) == pytest.approx(1 / (2 * np.sqrt(3)), rel=1e-6)
    # the DS block keeps the same input exactly
    ds = BasicBlock(4, shortcut="ds")
    assert identity_probe(ds, _variables(ds, x), x) == 0.0


def test_bad_blocks_and_inputs_are_rejected():
    x = jnp.ones((2, 1, 4, 4, 4))
    block = BasicBlock(4)
    v = _variables(block, x)
    with pytest.raises(ValueError, match="identity shortcut"):
        identity_probe(BasicBlock(4, strides=2), v, x)
    with pytest.raises(ValueError, match="identity shortcut"):
        identity_probe(BasicBlock(8), v, x)
    with pytest.raises(ValueError, match=r"\[T, B, H, W, C\]"):
        identity_probe(block, v, x[0])
    with pytest.raises(ValueError, match="all zeros"):
        identity_probe(block, v, jnp.zeros_like(x))
    with pytest.raises(ValueError, match="bn2"):
        identity_probe(block, {**v, "params": {}}, x)
    with pytest.raises(ValueError, match="BasicBlock"):
        identity_probe(object(), v, x)
