"""A tiny DS-ResNet shared by the analysis tests (depth 8, widths 2/4/4, T = 2, 8x8 input).

Its variables are filled in with numpy as ``init`` would fill them (Kaiming normal
kernels, tdBN scale 1 / bias 0, running mean 0 / variance 1): compiling ``init``
would cost more than every analysis test together.
"""

import jax
import numpy as np
import pytest

import mlf_jax as mj


def _like_init(shapes, seed=0):
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(s.shape[:-1]))
            return (rng.standard_normal(s.shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)
        if name in ("scale", "var"):
            return np.ones(s.shape, np.float32)
        return np.zeros(s.shape, np.float32)  # bias, mean

    return jax.tree_util.tree_map_with_path(fill, shapes)


@pytest.fixture(scope="package")
def tiny():
    model = mj.models.resnet(8, widths=(2, 4, 4), num_classes=3, time_steps=2)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(1), x, train=False))
    return model, _like_init(shapes), x
