"""Event frames equal to the authors' ``sample()`` of DVS128 Gesture and CIFAR10-DVS.

Their preprocessing scripts (``DVS_Gesture_preprocess.py``, ``DVS_CIFAR10_preprocess.py`` in
the authors' code, ``MLF_JAX_OFFICIAL_DIR`` or ``shared/official`` beside the repository) are
loaded as they are: ``h5py``, which only their file writers use, is stubbed, and numpy's
removed alias ``np.int`` is restored for the call. Both are fed the same event streams as
:func:`mlf_jax.data.events.events_to_frames` and compared frame by frame.

Their frames are ``int8 [T, polarity, a, b]``: for Gesture ``(a, b) = (y, x)`` as ours, for
CIFAR10-DVS ``(a, b) = (x, y)``, i.e. transposed; ours are ``[T, y, x, polarity]`` for every
data set, so the CIFAR10-DVS comparison transposes theirs. Counts here stay under 128, where
their ``int8`` does not wrap (ours are ``uint16`` and never wrap). Their window keeps the
events before time ``T * dt`` of the recording's clock and bins from the first of them; ours
takes ``T * dt`` from the first event: the streams here start at time 0, where the two
agree. Not covered: their readers (they mirror CIFAR10-DVS's x when reading ``.aedat``
files; ours read tonic's ``.aedat4``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from mlf_jax.data import neuromorphic
from mlf_jax.data.events import events_to_frames

ROOT = Path(__file__).resolve().parents[2]
OFFICIAL = Path(os.environ.get("MLF_JAX_OFFICIAL_DIR", ROOT.parent / "shared" / "official"))
pytestmark = pytest.mark.skipif(
    not (OFFICIAL / "DVS_CIFAR10_preprocess.py").exists(),
    reason=f"the authors' code is not in {OFFICIAL} (set MLF_JAX_OFFICIAL_DIR)",
)


@pytest.fixture
def their_sample(monkeypatch):
    """``file name -> their sample()``, loaded from the authors' code."""
    monkeypatch.syspath_prepend(str(OFFICIAL))  # their DVS_dataload package
    monkeypatch.setitem(sys.modules, "h5py", types.ModuleType("h5py"))
    monkeypatch.setattr(np, "int", int, raising=False)

    def load(file_name):
        path = OFFICIAL / file_name
        spec = importlib.util.spec_from_file_location(f"_official_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def _stream(seed, n, window_us, sensor=128):
    """``n`` time-ordered events from time 0, some beyond the window, as their readers give
    them (``uint32 [t, x, y, p]``) and as tonic does (a structured array)."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, int(window_us * 1.2), n))
    t[0] = 0
    x, y, p = rng.integers(0, sensor, n), rng.integers(0, sensor, n), rng.integers(0, 2, n)
    theirs = np.column_stack([t, x, y, p]).astype(np.uint32)
    ours = np.zeros(n, dtype=[("x", "<i2"), ("y", "<i2"), ("p", "u1"), ("t", "<i8")])
    ours["x"], ours["y"], ours["p"], ours["t"] = x, y, p, t
    return theirs, ours


def _frames(events, pre):
    return events_to_frames(
        events, n_bins=pre.n_bins, bin_us=pre.bin_us, sensor_size=(128, 128), size=pre.size,
        divisor=pre.divisor,
    )  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_dvs_gesture_frames_equal_the_authors(their_sample, seed):
    module = their_sample("DVS_Gesture_preprocess.py")
    pre = neuromorphic.SPECS["dvs_gesture"].default  # 40 x 30 ms, 32x32
    assert (module.TimeStep, module.dt, module.size) == (pre.n_bins, pre.bin_us, [2, 32, 32])
    theirs, ours = _stream(seed, 60_000, pre.window_us)
    want = module.sample(theirs[:, 0], theirs[:, 1:], T=40, dt=30_000, size=[2, 32, 32], ds=[4, 4])
    assert want.max() < 127 and want.sum() > 40_000  # no int8 wrap; most events land
    np.testing.assert_array_equal(_frames(ours, pre), want.transpose(0, 2, 3, 1))


@pytest.mark.parametrize("seed", [0, 1])
def test_cifar10_dvs_frames_equal_the_authors(their_sample, seed):
    module = their_sample("DVS_CIFAR10_preprocess.py")
    pre = neuromorphic.SPECS["cifar10_dvs"].default  # 10 x 10 ms, 42x42, c // 3.04
    assert (module.TimeStep, module.dt, module.size) == (pre.n_bins, pre.bin_us, [2, 42, 42])
    assert module.ds == [pre.divisor, pre.divisor]
    theirs, ours = _stream(seed, 40_000, pre.window_us)
    want = module.sample(theirs[:, 0], theirs[:, 1:], T=10, dt=10_000, size=[2, 42, 42],
                         ds=module.ds)  # fmt: skip
    assert want.max() < 127 and want.sum() > 30_000
    # theirs: [T, p, x, y]; ours: [T, y, x, p]
    np.testing.assert_array_equal(_frames(ours, pre), want.transpose(0, 3, 2, 1))


def test_cifar10_dvs_mapping_is_float64_floor_division_by_3_04():
    # By hand: 76 / 3.04 is 25 in exact arithmetic, but 3.04 is a little more than 3.04 in
    # float64, so numpy's 76 // 3.04 is 24; the old floor(c * 42 / 128) differs at 67, 70, 73.
    from mlf_jax.data.events import downsample

    got = downsample(np.array([0, 3, 67, 70, 73, 76, 127]), 128, 42, 3.04)
    np.testing.assert_array_equal(got, [0, 0, 22, 23, 24, 24, 41])
    np.testing.assert_array_equal(downsample(np.array([67, 70, 73]), 128, 42), [21, 22, 23])
    with pytest.raises(ValueError, match="beyond the 40 target pixels"):
        downsample(np.array([0]), 128, 40, 3.04)
