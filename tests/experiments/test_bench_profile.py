"""The profile benchmark finds every layer of a model (counted by hand below)."""

import jax.numpy as jnp

import mlf_jax as mj
from experiments.bench.profile import breakdown, layer_calls


def test_layer_calls_of_a_ds_resnet_8():
    # DS-ResNet-8: stem conv/tdBN/MLF; 3 blocks of conv-tdBN-MLF-conv-tdBN-MLF; blocks 2
    # and 3 change width and stride, so their shortcut is conv1x1-tdBN-MLF.
    # Convs: 1 + 3 * 2 + 2 = 9; tdBN: 9; neurons: 1 + 3 * 2 + 2 = 9.
    model = mj.models.resnet(8, widths=(4, 8, 16), time_steps=2, in_channels=1)
    calls = layer_calls(model, jnp.zeros((3, 8, 8, 1)))
    kinds = [kind for kind, *_ in calls]
    assert {k: kinds.count(k) for k in set(kinds)} == {"convs": 9, "tdBN": 9, "neurons": 9}
    stem_conv = calls[0]
    assert stem_conv[0] == "convs" and stem_conv[2] == (2, 3, 8, 8, 1)  # [T, B, H, W, C]
    last_neuron = [c for c in calls if c[0] == "neurons"][-1]
    assert last_neuron[2] == (2, 3, 2, 2, 16)  # two stride-2 stages: 8 -> 4 -> 2


def test_breakdown_is_the_differences_of_the_variants():
    rows = [
        {"preset": "p", "variant": "full", "seconds": 10.0},
        {"preset": "p", "variant": "no neurons", "seconds": 7.0},
        {"preset": "p", "variant": "convs only", "seconds": 5.5},
    ]
    assert breakdown(rows) == {
        "preset": "p",
        "full_seconds": 10.0,
        "convs_seconds": 5.5,
        "tdbn_seconds": 1.5,
        "neuron_seconds": 3.0,
    }
