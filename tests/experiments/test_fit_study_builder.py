"""The fit study builds its nets through ``experiments.models.build_model`` and its optimiser
through the trainer's, and both are those its committed results were run with: the same
module (so the same parameter tree) and the same optimiser, variant by variant."""

import jax
import numpy as np
import pytest

import mlf_jax as mj
from experiments import fit_study


def _as_committed(s):
    """The builder the committed results (experiments/results/fit_study.json) were run with.

    The ReLU control took the MLF settings too, unused but for tdBN's default v_th, the
    first threshold: 0.6, the default MLF neuron's, which is what a layer factory gets."""
    common = dict(
        widths=s["widths"], time_steps=s["time_steps"], v_th=s["v_th"], in_channels=1
    )  # fmt: skip
    if s["neuron"] == "relu":
        assert s["thresholds"][0] == mj.zoo.MLF().thresholds[0]
        return mj.models.resnet(8, neuron=fit_study.ReLU, **common)
    return mj.models.resnet(
        8,
        thresholds=s["thresholds"],
        surrogate=mj.get_surrogate(*s["surrogate"]),
        learn_thresholds=s["learn_thresholds"],
        **common,
    )


def _shapes(model):
    x = np.zeros((1, 28, 28, 1), np.float32)
    tree = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    return jax.tree.map(lambda a: (a.shape, a.dtype), tree)


@pytest.mark.parametrize("variant", list(fit_study.VARIANTS))
def test_every_variant_builds_the_committed_net_through_build_model(variant, monkeypatch):
    from experiments import models

    calls = []
    real = models.build_model
    monkeypatch.setattr(fit_study, "build_model", lambda c: calls.append(c) or real(c))
    s = fit_study.settings_of(variant)
    model = fit_study.build(s)
    assert len(calls) == 1
    assert model == _as_committed(s)  # every field: the same net and computation


@pytest.mark.parametrize("variant", ["base", "relu", "wide", "learn_th", "T4"])
def test_the_parameter_tree_is_the_committed_one(variant):
    s = fit_study.settings_of(variant)
    got, want = _shapes(fit_study.build(s)), _shapes(_as_committed(s))
    assert got == want

    def count(tree):
        leaves = jax.tree.leaves(tree, is_leaf=lambda v: isinstance(v, tuple))
        return sum(int(np.prod(shape)) for shape, _ in leaves)

    assert count(got["params"]) == count(want["params"]) > 0


@pytest.mark.parametrize("variant", ["base", "wd0", "lr1.0"])
def test_the_optimiser_is_the_committed_one(variant):
    s = fit_study.settings_of(variant)
    steps_per_epoch, epochs = 40, 10
    schedule = mj.train.learning_rate_schedule(
        s["learning_rate"], steps_per_epoch, epochs, kind="cosine", warmup_epochs=0.5
    )
    want = mj.train.sgd(schedule, momentum=0.9, weight_decay=s["weight_decay"])
    got, _ = fit_study.make_optimizer(fit_study.config_of(s, epochs), steps_per_epoch)
    params = {"w": np.linspace(-1, 1, 6, dtype=np.float32)}
    grads = {"w": np.linspace(0.5, -0.5, 6, dtype=np.float32)}
    a, b = got.init(params), want.init(params)
    for _ in range(steps_per_epoch * epochs // 7):
        ua, a = got.update(grads, a, params)
        ub, b = want.update(grads, b, params)
        np.testing.assert_array_equal(np.asarray(ua["w"]), np.asarray(ub["w"]))
