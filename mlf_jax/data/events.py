"""Event streams -> frames of event counts per polarity, in numpy.

Events are numpy structured arrays with fields ``x``, ``y``, ``p`` and ``t`` as tonic delivers
them (any field order and integer/bool dtypes; ``t`` in microseconds, ``p`` in {0, 1}).
Frames are time-major and channels-last: ``[T, H, W, 2]``, channel = polarity 0 / 1.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

__all__ = ["FRAME_DTYPE", "downsample", "events_to_frames"]

#: Counts are stored as uint16 (0..65535); :func:`events_to_frames` raises instead of wrapping
#: when a count does not fit. The reference code used int8, which overflows.
FRAME_DTYPE = np.uint16


def downsample(
    coords: np.ndarray, sensor: int, target: int, divisor: float | None = None
) -> np.ndarray:
    """Maps sensor coordinates ``0..sensor-1`` to ``0..target-1``.

    * ``divisor=None``: ``floor(c * target / sensor)``, computed exactly in integers as
      ``(c * target) // sensor``. When ``target`` divides ``sensor`` this is the integer
      division ``c // (sensor // target)`` of the authors' code (DVS128 Gesture: 128 -> 32 is
      ``x // 4``); otherwise each target pixel gathers the sensor pixels whose scaled
      coordinate falls in it, none dropped.
    * ``divisor``: ``c // divisor`` in float64, numpy's floor division, as the authors map
      CIFAR10-DVS's 128 sensor pixels to 42 with ``divisor = 3.04``. Mind the rounding: in
      float64 ``76 // 3.04 == 24`` while ``floor(76 / 3.04) == 25``; and 3.04 is not 128 / 42,
      so these frames differ from ``divisor=None``'s at some rows and columns (67, 70, 73 map
      to 22, 23, 24 instead of 21, 22, 23).

    Raises:
      ValueError: for non-positive sizes or divisor, or a divisor that maps a coordinate of
        the sensor beyond ``target - 1``.
    """
    if sensor < 1 or target < 1:
        raise ValueError(f"sizes must be positive, got sensor {sensor}, target {target}")
    if divisor is None:
        return (np.asarray(coords, np.int64) * target) // sensor
    if not divisor > 0:
        raise ValueError(f"divisor must be positive, got {divisor!r}")
    if (sensor - 1) // float(divisor) >= target:
        raise ValueError(
            f"divisor {divisor} maps sensor coordinate {sensor - 1} to "
            f"{int((sensor - 1) // float(divisor))}, beyond the {target} target pixels"
        )
    return np.floor_divide(np.asarray(coords, np.float64), float(divisor)).astype(np.int64)


def events_to_frames(
    events: np.ndarray,
    *,
    n_bins: int,
    bin_us: int,
    sensor_size: tuple[int, int],
    size: tuple[int, int] | None = None,
    t_start: int | None = None,
    dtype: DTypeLike = FRAME_DTYPE,
    divisor: float | None = None,
) -> np.ndarray:
    """Counts of events per time bin, pixel and polarity.

    The window is ``[t_start, t_start + n_bins * bin_us)``, cut into ``n_bins`` bins of
    ``bin_us`` microseconds; bin ``k`` is ``[t_start + k * bin_us, t_start + (k + 1) * bin_us)``,
    so an event exactly on a boundary belongs to the later bin and the window's end is
    exclusive. Events outside the window are dropped. Coordinates are mapped to ``size`` with
    :func:`downsample`.

    Args:
      events: structured array with fields ``x``, ``y``, ``p``, ``t``.
      n_bins: number of frames T.
      bin_us: length of one bin in microseconds.
      sensor_size: ``(width, height)`` of the sensor (tonic's ``sensor_size[:2]``).
      size: ``(width, height)`` of the frames; the sensor size when None.
      t_start: start of the window; the earliest timestamp of ``events`` when None (the first
        event of a time-ordered stream; 0 for an empty one).
      dtype: integer dtype of the counts.
      divisor: maps coordinates by ``c // divisor`` (see :func:`downsample`); None: by
        ``floor(c * size / sensor)``.

    Returns:
      counts ``[n_bins, height, width, 2]`` of ``dtype``.

    Raises:
      ValueError: for non-positive sizes, events whose coordinates lie outside the sensor,
        polarities other than 0 / 1, or a divisor that does not fit ``size``.
      OverflowError: when a count does not fit in ``dtype`` (it never wraps).
    """
    if n_bins < 1 or bin_us < 1:
        raise ValueError(f"n_bins and bin_us must be positive, got {n_bins}, {bin_us}")
    sensor_w, sensor_h = (int(s) for s in sensor_size)
    out_w, out_h = (int(s) for s in (size if size is not None else sensor_size))
    if min(sensor_w, sensor_h, out_w, out_h) < 1:
        raise ValueError(f"sizes must be positive, got sensor {sensor_size}, size {size}")
    missing = {"x", "y", "p", "t"} - set(events.dtype.names or ())
    if missing:
        raise ValueError(f"events need the fields x, y, p, t; missing {sorted(missing)}")

    t = events["t"].astype(np.int64)
    if t_start is None:
        t_start = int(t.min()) if len(t) else 0
    rel = t - int(t_start)
    keep = (rel >= 0) & (rel < n_bins * bin_us)
    x = events["x"][keep].astype(np.int64)
    y = events["y"][keep].astype(np.int64)
    p = events["p"][keep].astype(np.int64)
    if len(x):
        if x.min() < 0 or x.max() >= sensor_w or y.min() < 0 or y.max() >= sensor_h:
            raise ValueError(
                f"event coordinates x in [{x.min()}, {x.max()}], y in [{y.min()}, {y.max()}] "
                f"lie outside the sensor of width {sensor_w} and height {sensor_h}"
            )
        if p.min() < 0 or p.max() > 1:
            raise ValueError(f"polarities must be 0 or 1, got values in [{p.min()}, {p.max()}]")
    b = rel[keep] // bin_us
    x = downsample(x, sensor_w, out_w, divisor)
    y = downsample(y, sensor_h, out_h, divisor)
    flat = ((b * out_h + y) * out_w + x) * 2 + p
    counts = np.bincount(flat, minlength=n_bins * out_h * out_w * 2)
    limit = np.iinfo(dtype).max
    if counts.size and counts.max() > limit:
        raise OverflowError(f"an event count of {counts.max()} does not fit in {np.dtype(dtype)}")
    return counts.astype(dtype).reshape(n_bins, out_h, out_w, 2)
