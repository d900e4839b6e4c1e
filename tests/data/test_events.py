"""Binning events into count frames, against a slow independent reference and by hand."""

from fractions import Fraction

import numpy as np
import pytest

from mlf_jax.data.events import FRAME_DTYPE, downsample, events_to_frames

from .event_files import make_events, random_events


def reference_frames(events, n_bins, bin_us, sensor_size, size, t_start=None):
    """One event at a time: find its bin by walking the edges, its pixel by the authors' rule"""
    (sw, sh), (w, h) = sensor_size, size
    out = np.zeros((n_bins, h, w, 2), np.int64)
    if t_start is None:
        t_start = min(int(t) for t in events["t"]) if len(events) else 0

    def pixel(c, sensor, target):
        if sensor % target == 0:
            return c // (sensor // target)  # integer division of coordinates
        return int(Fraction(c * target, sensor))  # floor(c * target / sensor), exactly

    for e in events:
        t = int(e["t"])
        if t < t_start:
            continue
        k = 0
        while k < n_bins and t >= t_start + (k + 1) * bin_us:
            k += 1
        if k == n_bins:
            continue
        out[k, pixel(int(e["y"]), sh, h), pixel(int(e["x"]), sw, w), int(e["p"])] += 1
    return out


@pytest.mark.parametrize(
    "n_bins, bin_us, sensor, size, n, t_start_offset",
    [
        (40, 30_000, (128, 128), (32, 32), 3000, None),  # DVS128 Gesture
        (10, 10_000, (128, 128), (42, 42), 3000, None),  # CIFAR10-DVS
        (10, 30_000, (34, 34), (34, 34), 2000, None),  # N-MNIST
        (7, 1_000, (20, 10), (6, 4), 2000, 2_345),  # non-square, window not at the first event
    ],
)
def test_matches_slow_reference_on_random_events(n_bins, bin_us, sensor, size, n, t_start_offset):
    rng = np.random.default_rng(n_bins)
    events = random_events(rng, n, sensor[0], sensor[1], int(1.5 * n_bins * bin_us))
    t_start = None if t_start_offset is None else int(events["t"].min()) + t_start_offset
    got = events_to_frames(
        events, n_bins=n_bins, bin_us=bin_us, sensor_size=sensor, size=size, t_start=t_start
    )
    want = reference_frames(events, n_bins, bin_us, sensor, size, t_start)
    assert got.shape == (n_bins, size[1], size[0], 2) and got.dtype == FRAME_DTYPE
    np.testing.assert_array_equal(got, want)
    assert 0 < got.sum() < n  # some events fell outside the window and were dropped
    # the order of the events and of the fields does not matter
    shuffled = events[rng.permutation(n)][["t", "p", "y", "x"]]
    np.testing.assert_array_equal(
        events_to_frames(
            shuffled, n_bins=n_bins, bin_us=bin_us, sensor_size=sensor, size=size, t_start=t_start
        ),
        got,
    )


def test_bin_edges_by_hand():
    # window starts at the first event (t = 1000); bins of 10 us: [1000, 1010), ..., [1020, 1030)
    events = make_events(
        x=[0, 1, 2, 3, 0, 1, 2],
        y=[0, 0, 0, 0, 1, 1, 1],
        p=[0, 1, 0, 1, 1, 0, 0],
        t=[1000, 1009, 1010, 1020, 1029, 1030, 5000],
    )
    f = events_to_frames(events, n_bins=3, bin_us=10, sensor_size=(4, 2))
    want = np.zeros((3, 2, 4, 2), np.int64)
    want[0, 0, 0, 0] = 1  # t = 1000: the first event opens bin 0
    want[0, 0, 1, 1] = 1  # t = 1009: still bin 0
    want[1, 0, 2, 0] = 1  # t = 1010: exactly on the boundary -> the later bin
    want[2, 0, 3, 1] = 1  # t = 1020
    want[2, 1, 0, 1] = 1  # t = 1029: last microsecond of the window
    # t = 1030 (the window's end, exclusive) and t = 5000 are dropped
    np.testing.assert_array_equal(f, want)
    # an explicit start drops earlier events and shifts the edges
    # ([1009, 1019), [1019, 1029)): t = 1000 is before it, t = 1029 is its (exclusive) end
    g = events_to_frames(events, n_bins=2, bin_us=10, sensor_size=(4, 2), t_start=1009)
    assert g.sum() == 3 and g[0, 0, 1, 1] == 1 and g[0, 0, 2, 0] == 1 and g[1, 0, 3, 1] == 1


def test_downsampling_rules():
    c = np.arange(128)
    np.testing.assert_array_equal(downsample(c, 128, 32), c // 4)  # DVS128 Gesture
    to42 = downsample(c, 128, 42)  # CIFAR10-DVS: floor(c * 42 / 128)
    assert to42[0] == 0 and to42[127] == 41 and np.all(np.diff(to42) >= 0)
    assert set(np.bincount(to42, minlength=42)) == {3, 4}  # every target pixel gets 3 or 4
    np.testing.assert_array_equal(downsample(np.arange(34), 34, 34), np.arange(34))
    with pytest.raises(ValueError, match="positive"):
        downsample(c, 128, 0)


def test_corners_map_to_corners():
    events = make_events(x=[0, 127, 127, 0], y=[0, 127, 0, 127], p=[0, 1, 1, 0], t=[0, 1, 2, 3])
    f = events_to_frames(events, n_bins=1, bin_us=10, sensor_size=(128, 128), size=(42, 42))
    assert f.shape == (1, 42, 42, 2)  # [T, H, W, polarity]
    assert f[0, 0, 0, 0] == 1 and f[0, 41, 41, 1] == 1 and f[0, 0, 41, 1] == 1
    assert f[0, 41, 0, 0] == 1  # y indexes rows, x columns


def test_counts_do_not_overflow_int8_and_never_wrap():
    n = 300  # int8 (the reference code's dtype) would wrap at 128
    events = make_events(x=[5] * n, y=[6] * n, p=[1] * n, t=np.arange(n))
    f = events_to_frames(events, n_bins=1, bin_us=1000, sensor_size=(8, 8))
    assert f.dtype == np.uint16 and f[0, 6, 5, 1] == 300 and f.sum() == 300
    with pytest.raises(OverflowError, match="300 does not fit in uint8"):
        events_to_frames(events, n_bins=1, bin_us=1000, sensor_size=(8, 8), dtype=np.uint8)
    assert events_to_frames(events, n_bins=1, bin_us=1000, sensor_size=(8, 8), dtype=np.int32)[
        0, 6, 5, 1
    ] == np.int32(300)


def test_empty_and_invalid_inputs():
    empty = make_events([], [], [], [])
    f = events_to_frames(empty, n_bins=4, bin_us=5, sensor_size=(3, 2))
    assert f.shape == (4, 2, 3, 2) and not f.any()
    outside = make_events(x=[3], y=[0], p=[0], t=[0])
    with pytest.raises(ValueError, match="outside the sensor"):
        events_to_frames(outside, n_bins=1, bin_us=5, sensor_size=(3, 2))
    bad_p = make_events(x=[0], y=[0], p=[0], t=[0]).astype(
        [("x", "i2"), ("y", "i2"), ("p", "i1"), ("t", "i8")]
    )
    bad_p["p"] = -1
    with pytest.raises(ValueError, match="polarities must be 0 or 1"):
        events_to_frames(bad_p, n_bins=1, bin_us=5, sensor_size=(3, 2))
    with pytest.raises(ValueError, match="missing \\['p'\\]"):
        events_to_frames(empty[["x", "y", "t"]], n_bins=1, bin_us=5, sensor_size=(3, 2))
    with pytest.raises(ValueError, match="must be positive"):
        events_to_frames(empty, n_bins=0, bin_us=5, sensor_size=(3, 2))
