"""The time-constant mapping (mlf_jax.nir.timing), against the hand-derived numbers and a
NIR LIF node stepped by the independent NumPy reference."""

import math

import jax
import numpy as np
import pytest

pytest.importorskip("nir")

import nir  # noqa: E402

import mlf_jax as mj  # noqa: E402
from mlf_jax.nir import DEFAULT_DT, if_from_nir, if_to_nir, leak_from_nir, leak_to_nir  # noqa: E402
from tests.nir import reference  # noqa: E402


def test_leak_to_nir_is_the_hand_derived_euler_mapping():
    # u = 0.25 u + x  <=>  v += dt/tau_nir (r I - v) with 1 - dt/tau_nir = 0.25, r dt/tau_nir = 1
    tau_nir, r = leak_to_nir(0.25, dt=1e-3)
    assert tau_nir == pytest.approx(1e-3 / 0.75, rel=1e-15)
    assert r == pytest.approx(4 / 3, rel=1e-15)
    assert leak_to_nir(0.0, dt=2.0) == (2.0, 1.0)  # no memory: tau_nir = dt
    leak, gain = leak_from_nir(tau_nir, r, dt=1e-3)
    assert float(leak) == pytest.approx(0.25, abs=1e-15)
    assert float(gain) == pytest.approx(1.0, abs=1e-15)
    assert if_to_nir(1e-4) == pytest.approx(1e4) and float(if_from_nir(1e4, 1e-4)) == 1.0
    # the guide's numbers: the default step 1e-4 s, tau = 0.25 -> 1.33e-4 s and 4/3
    assert DEFAULT_DT == 1e-4
    assert leak_to_nir(0.25) == pytest.approx((1e-4 / 0.75, 4 / 3), rel=1e-15)
    assert f"{leak_to_nir(0.25)[0]:.3g}" == "0.000133"


def test_zero_order_hold_reads_another_leak():
    # a reader that integrates exactly (v *= exp(-dt/tau)) sees exp(-0.75) for our 0.25
    tau_nir, _ = leak_to_nir(0.25, dt=1.0)
    assert math.exp(-1.0 / tau_nir) == pytest.approx(math.exp(-0.75))
    assert round(math.exp(-1.0 / tau_nir), 2) == 0.47  # the guide's figure
    assert abs(math.exp(-1.0 / tau_nir) - 0.25) > 0.2


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: leak_to_nir(1.0), "IF"),
        (lambda: leak_to_nir(-0.1), r"\[0, 1\)"),
        (lambda: leak_to_nir(0.5, dt=0.0), "dt must be a positive"),
        (lambda: leak_to_nir(0.5, dt="1ms"), r"^dt must be a positive step in seconds, got '1ms'$"),
        (lambda: if_to_nir(dt=None), r"^dt must be a positive step in seconds, got None$"),
        (lambda: leak_from_nir(0.5e-4, 1.0, dt=1e-4), "below the step"),
    ],
)
def test_mapping_refuses_what_has_no_counterpart(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("leak, dt", [(0.25, 1e-4), (0.8, 1e-3), (0.0, 1.0)])
def test_a_nir_lif_stepped_by_euler_is_the_librarys_lif(leak, dt):
    tau_nir, r = leak_to_nir(leak, dt)
    shape = (6,)
    node = nir.LIF(
        tau=np.full(shape, tau_nir),
        r=np.full(shape, r),
        v_leak=np.zeros(shape),
        v_threshold=np.full(shape, 0.6),
    )
    graph = nir.NIRGraph.from_list(nir.Input(np.array(shape)), node, nir.Output(np.array(shape)))
    x = np.asarray(jax.random.uniform(jax.random.key(1), (40, 2, 6), minval=-0.2, maxval=0.9))
    ours = np.asarray(mj.lif(x, threshold=0.6, tau=leak))
    theirs, _ = reference.run(graph, x, dt)
    np.testing.assert_array_equal(theirs, ours)
    assert 0 < ours.mean() < 1
