"""What each data set is, in one place: its name, classes, input shape, normalisation and,
for event data, the time window its frames cover.

The training pipeline, the model builder, evaluation and the weights' sidecars all read
:data:`DATASETS` (through :func:`get`), so a fact about a data set is written once. Every
data set has one name (the key), the name its loaders' tables use; :func:`canonical_name`
(the only one) also takes the spellings people use (``'gesture'``, ``'DVS-Gesture'``,
``'cifar10dvs'``, ``'N-MNIST'``), ignoring case, ``_`` and ``-``, and each entry's
``aliases``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from mlf_jax.data import cifar10, digits, fashion_mnist, neuromorphic

__all__ = ["DatasetInfo", "DATASETS", "canonical_name", "get"]

_DIGITS = tuple(str(i) for i in range(10))

#: DVS128 Gesture's classes in label order (the labels 0-10 of its recordings).
GESTURE_CLASSES = (
    "hand clap", "right hand wave", "left hand wave", "right arm clockwise",
    "right arm counter-clockwise", "left arm clockwise", "left arm counter-clockwise",
    "arm roll", "air drums", "air guitar", "other gestures",
)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """One data set as a model sees it.

    Attributes:
      name: its one name (the key of :data:`DATASETS`).
      channels: input channels C (1 grey, 3 RGB, 2 event polarities).
      class_names: the classes in label order.
      size: ``(height, width)`` of an image or frame.
      pixels: what the stored pixels are (static images).
      peak: the largest stored pixel value (static images): intensities are ``x / peak``.
      mean: the normalisation's mean (a number, or one per channel) of ``x / peak``.
      std: its standard deviation.
      event: True for event-camera data: examples are frames ``[T, H, W, C]`` counting
        events over the fixed window ``window_us``, cut into the model's T bins; False
        for static images ``[H, W, C]``, which the model repeats over its T steps.
      window_us: event data only: the time window of the frames, in microseconds.
      aliases: other names it goes by (besides its name with any case, ``_`` and ``-``).
    """

    name: str
    channels: int
    class_names: tuple[str, ...]
    size: tuple[int, int]
    pixels: str = ""
    peak: float | None = None
    mean: float | tuple[float, ...] | None = None
    std: float | tuple[float, ...] | None = None
    event: bool = False
    window_us: int | None = None
    aliases: tuple[str, ...] = ()

    @property
    def classes(self) -> int:
        """The number of classes."""
        return len(self.class_names)

    def example_shape(self, time_steps: int) -> tuple[int, ...]:
        """Shape of one stored example's image: ``[T, H, W, C]`` for event data, else
        ``[H, W, C]``."""
        frame = (*self.size, self.channels)
        return (time_steps, *frame) if self.event else frame

    def input_description(self, time_steps: int, encoder: str = "direct") -> dict[str, Any]:
        """How an example becomes the model's input (shape, preprocessing, encoding), as a
        weights sidecar records it so that the weights can be used elsewhere."""
        t = int(time_steps)
        out: dict[str, Any] = {
            "shape": list(self.example_shape(t)),
            "layout": "[T, H, W, C]" if self.event else "[H, W, C]",
            "time_steps": t,
        }
        if self.event and self.window_us is not None:
            bin_us = self.window_us // t
            return out | {
                "normalization": "none: event counts as float32",
                "window_us": self.window_us,
                "bin_us": bin_us,
                "encoding": (
                    f"event frames: the events of the first {self.window_us} us of a "
                    f"recording counted per pixel and polarity in T = {t} bins of {bin_us} us"
                ),
            }
        peak = f"{self.peak:g}"
        out["pixels"] = self.pixels
        out["peak"] = self.peak  # the pixel value that becomes 1
        if encoder == "rate":
            return out | {
                "normalization": f"x / {peak}",
                "encoding": f"rate: the intensity p in [0, 1] (no mean/std) fires with "
                f"probability p at each of the T = {t} time steps (Bernoulli, "
                "mlf_jax.encoders.rate)",
            }
        if encoder == "latency":
            return out | {
                "normalization": f"x / {peak}",
                "encoding": f"latency: the intensity c in [0, 1] (no mean/std) fires once, at "
                f"step floor((1 - c) (T - 1) + 1/2) of T = {t} (mlf_jax.encoders.latency)",
            }
        mean, std = self.mean, self.std
        mean_out: Any
        std_out: Any
        if isinstance(mean, tuple) and isinstance(std, tuple):
            normalization = f"x / {peak}, then (x - mean[c]) / std[c] per channel c"
            mean_out, std_out = list(mean), list(std)
        else:
            normalization = f"x / {peak}, then (x - {mean}) / {std}"
            mean_out, std_out = mean, std
        return out | {
            "normalization": normalization,
            "mean": mean_out,
            "std": std_out,
            "encoding": f"direct: the normalised image is the input of the first convolution "
            f"at each of the T = {t} time steps (repeated, not spike coded)",
        }


def _events(name: str, class_names: tuple[str, ...], aliases: tuple[str, ...] = ()) -> DatasetInfo:
    """An event data set's entry, from its loader's default frames."""
    spec = neuromorphic.SPECS[name]
    if len(class_names) != spec.num_classes:  # pragma: no cover - a table error
        raise AssertionError(f"{name}: {len(class_names)} names for {spec.num_classes} classes")
    width, height = spec.default.size
    return DatasetInfo(
        name,
        2,
        class_names,
        (height, width),
        event=True,
        window_us=spec.default.window_us,
        aliases=aliases,
    )


#: The data sets by name.
DATASETS: dict[str, DatasetInfo] = {
    "fashion_mnist": DatasetInfo(
        "fashion_mnist",
        1,
        fashion_mnist.CLASSES,
        (fashion_mnist.SIZE, fashion_mnist.SIZE),
        "uint8 grey levels 0..255",
        255,
        fashion_mnist.MEAN,
        fashion_mnist.STD,
    ),
    "digits": DatasetInfo(
        "digits",
        1,
        _DIGITS,
        (8, 8),
        "grey levels 0..16 (sklearn's load_digits)",
        16,
        digits.MEAN,
        digits.STD,
    ),  # fmt: skip
    "cifar10": DatasetInfo(
        "cifar10", 3, cifar10.CLASSES, (32, 32), "uint8 RGB 0..255", 255, cifar10.MEAN, cifar10.STD
    ),
    "dvs_gesture": _events("dvs_gesture", GESTURE_CLASSES, ("gesture", "dvs128_gesture")),
    "cifar10_dvs": _events("cifar10_dvs", cifar10.CLASSES),
    "nmnist": _events("nmnist", _DIGITS),
}


def _key(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def canonical_name(name: str) -> str:
    """The key of :data:`DATASETS` for ``name``: a name or alias of an entry, ignoring case,
    ``_`` and ``-`` (``'Fashion-MNIST'``, ``'gesture'``, ``'cifar10dvs'``, ``'N-MNIST'``).

    Raises:
      ValueError: for an unknown name, listing the known ones.
    """
    if not isinstance(name, str):
        raise ValueError(f"a data set name must be a string, got {name!r}")
    spellings = {
        _key(n): info.name for info in DATASETS.values() for n in (info.name, *info.aliases)
    }
    if _key(name) in spellings:
        return spellings[_key(name)]
    raise ValueError(f"unknown data set {name!r}; expected one of {', '.join(DATASETS)}")


def get(name: str) -> DatasetInfo:
    """The :class:`DatasetInfo` of ``name`` (any spelling :func:`canonical_name` takes)."""
    return DATASETS[canonical_name(name)]
