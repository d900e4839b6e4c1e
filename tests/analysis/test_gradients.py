"""Parameter gradient norms on hand pytrees; activation gradients in closed form."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from mlf_jax.analysis import (
    activation_grad_norms,
    first_layer_grad_norm,
    param_grad_norms,
    record,
    softmax_cross_entropy,
)
from tests.analysis.test_record import TINY_LAYERS


def _a(values):
    return jnp.asarray(values, jnp.float32)


# keys sorted as jax.grad returns them; norms chosen to be whole numbers
HAND_GRADS = {
    "params": {
        "head": {"bias": _a([4.0]), "kernel": _a([[1.0, 2.0], [2.0, 0.0]])},  # sqrt(16 + 9)
        "stage1_block1": {
            "bn1": {"bias": _a([0.0, 0.0]), "scale": _a([3.0, 4.0])},  # 5
            "conv1": {"kernel": jnp.full((2, 2, 1, 1), 0.5)},  # sqrt(4 / 4)
            "conv2": {"kernel": _a([[0.0, 0.0], [0.0, -7.0]])},  # 7
            "shortcut_conv": {"kernel": _a([[2.0]])},  # 2
        },
        "stem_conv": {"kernel": _a([[3.0, 4.0]])},  # 5
    }
}


def test_param_grad_norms_by_hand_in_forward_order():
    norms = param_grad_norms(HAND_GRADS)
    assert list(norms) == [
        "stem_conv",
        "stage1_block1/conv1",
        "stage1_block1/bn1",
        "stage1_block1/conv2",
        "stage1_block1/shortcut_conv",
        "head",
    ]
    assert norms == pytest.approx(
        {
            "stem_conv": 5.0,
            "stage1_block1/conv1": 1.0,
            "stage1_block1/bn1": 5.0,
            "stage1_block1/conv2": 7.0,
            "stage1_block1/shortcut_conv": 2.0,
            "head": 5.0,
        }
    )
    assert param_grad_norms(HAND_GRADS["params"]) == norms  # with or without 'params'
    assert first_layer_grad_norm(HAND_GRADS) == pytest.approx(5.0)


def test_unknown_names_keep_the_given_order():
    grads = {"dense_b": {"kernel": _a([1.0])}, "dense_a": {"kernel": _a([[2.0]])}}
    assert param_grad_norms(grads) == {"dense_b": 1.0, "dense_a": 2.0}
    assert param_grad_norms({"kernel": _a([3.0, 4.0])}) == {"": 5.0}
    with pytest.raises(ValueError, match=r"no 'stem_conv/kernel'.*dense_b"):
        first_layer_grad_norm(grads)
    with pytest.raises(ValueError, match="mapping"):
        param_grad_norms([1.0])


def test_param_grad_norms_on_the_tiny_resnet_tree(tiny):
    _, variables, _ = tiny
    ones = jax.tree.map(jnp.ones_like, variables["params"])  # sorted keys, like jax.grad
    norms = param_grad_norms(ones)
    block = ["conv1", "bn1", "conv2", "bn2"]
    projection = [*block, "shortcut_conv", "shortcut_bn"]
    assert list(norms) == [
        "stem_conv",
        "stem_bn",
        *(f"stage1_block1/{n}" for n in block),
        *(f"stage2_block1/{n}" for n in projection),
        *(f"stage3_block1/{n}" for n in projection),
        "head",
    ]
    # all-ones gradients: the norm is sqrt(number of parameters)
    assert norms["stem_conv"] == pytest.approx(np.sqrt(3 * 3 * 1 * 2))
    assert norms["stage2_block1/shortcut_conv"] == pytest.approx(np.sqrt(2 * 4))
    assert norms["head"] == pytest.approx(np.sqrt(4 * 3 + 3))
    assert first_layer_grad_norm(ones) == pytest.approx(np.sqrt(18))


def test_last_layer_activation_gradient_in_closed_form(tiny):
    model, variables, x = tiny
    labels = jnp.array([0, 2])
    norms = activation_grad_norms(model, variables, x, labels)
    assert list(norms) == TINY_LAYERS
    assert all(isinstance(n, np.ndarray) and n.shape == (2,) for n in norms.values())

    # logits = mean_t Dense(mean_hw(out_t)) and out = neuron2 + shortcut_neuron in the
    # last (DS, projection) block, so for both layers and every t:
    # dL/d out[t, b, h, w, c] = sum_j W[c, j] (p_bj - y_bj) / B / (T * H * W)
    logits, _ = record(model, variables, x)
    z = np.asarray(logits, np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    y = np.eye(3)[np.asarray(labels)]
    w = np.asarray(variables["params"]["head"]["kernel"], np.float64)  # [4, 3]
    T, H, W, B = 2, 2, 2, 2
    per_unit = (p - y) / B @ w.T / (T * H * W)  # [B, C], the same at every (t, h, w)
    expected = np.sqrt(H * W * np.sum(per_unit**2))
    assert expected > 0
    for layer in ("stage3_block1/neuron2", "stage3_block1/shortcut_neuron"):
        np.testing.assert_allclose(norms[layer], [expected, expected], rtol=1e-5)
    # a second call reuses the compiled function and keeps the call order
    again = activation_grad_norms(model, variables, x, labels)
    assert list(again) == TINY_LAYERS
    np.testing.assert_array_equal(again["stem_neuron"], norms["stem_neuron"])


def test_activation_gradients_of_a_constant_loss_are_zero_in_train_mode_with_remat(tiny):
    model, variables, x = tiny
    norms = activation_grad_norms(
        model.clone(remat=True),
        variables,
        x,
        None,
        train=True,
        loss_fn=lambda logits, _: 0.0 * logits.sum(),
    )
    assert list(norms) == TINY_LAYERS
    for n in norms.values():
        np.testing.assert_array_equal(n, [0.0, 0.0])


def test_softmax_cross_entropy_by_hand():
    logits = jnp.array([[0.0, 0.0], [np.log(3.0), 0.0]])
    # -log(1/2) and -log(3/4), averaged
    expected = (np.log(2.0) + np.log(4.0 / 3.0)) / 2
    assert float(softmax_cross_entropy(logits, jnp.array([1, 0]))) == pytest.approx(expected)
    with pytest.raises(ValueError, match="integers of shape"):
        softmax_cross_entropy(logits, jnp.array([0.0, 1.0]))


def test_model_without_neurons_is_rejected():
    class Plain(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(2)(x)

    model = Plain()
    variables = {"params": {"Dense_0": {"kernel": jnp.ones((3, 2)), "bias": jnp.zeros(2)}}}
    with pytest.raises(ValueError, match="no neuron layer"):
        activation_grad_norms(model, variables, jnp.ones((1, 3)), jnp.array([0]))


def test_activation_gradients_of_a_resnet_of_zoo_neurons():
    import functools

    import mlf_jax as mj

    neuron = functools.partial(mj.nn.Neuron, model=mj.zoo.AdaptiveLIF())
    model = mj.models.resnet(8, widths=(4, 4, 8), num_classes=3, time_steps=2, neuron=neuron)
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3)) + 1.0
    variables = jax.jit(model.init)(jax.random.key(1), x)
    norms = activation_grad_norms(model, variables, x, jnp.array([0, 2]))
    _, records = mj.analysis.record(model, variables, x)
    assert list(norms) == list(records) and len(norms) == 9  # every neuron layer, in order
    assert all(n.shape == (2,) for n in norms.values())
    assert norms[list(norms)[-1]].sum() > 0  # the last layer's gradient reaches it
