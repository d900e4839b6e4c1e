"""The experiments' data sets by name: one spec per data set, and event frames that follow
``config.model.time_steps`` (tiny Gesture files in tonic's real layout, counts binned by
hand)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tonic.dataset

from experiments import input_pipeline, models
from experiments.configs import cifar10 as cifar10_config
from experiments.configs import gesture as gesture_config
from mlf_jax.data import registry
from mlf_jax.data.neuromorphic import Preprocessing

from ..data.event_files import make_events, random_events, write_gesture_sample


@pytest.fixture(autouse=True)
def no_download(monkeypatch):
    """Any attempt of tonic to download fails the test."""

    def fail(*args, **kwargs):
        raise AssertionError(f"tonic tried to download {args} {kwargs}")

    monkeypatch.setattr(tonic.dataset, "download_and_extract_archive", fail)


# ---------------------------------------------------------------------------- specs

#: (channels, classes, (height, width), event, window in us), from the data sets' papers:
#: Fashion-MNIST 28x28 grey, sklearn digits 8x8, CIFAR10 32x32 RGB; DVS128 Gesture 11
#: gestures, 1.2 s at 32x32; CIFAR10-DVS 100 ms at 42x42; N-MNIST 300 ms at 34x34.
EXPECTED = {
    "fashion_mnist": (1, 10, (28, 28), False, None),
    "digits": (1, 10, (8, 8), False, None),
    "cifar10": (3, 10, (32, 32), False, None),
    "dvs_gesture": (2, 11, (32, 32), True, 1_200_000),
    "cifar10_dvs": (2, 10, (42, 42), True, 100_000),
    "nmnist": (2, 10, (34, 34), True, 300_000),
}


def test_one_registry_entry_and_one_loader_per_data_set():
    assert set(registry.DATASETS) == set(input_pipeline.LOADERS) == set(EXPECTED)
    for name, (channels, classes, size, event, window) in EXPECTED.items():
        info = registry.DATASETS[name]
        assert info.name == name
        assert (info.channels, info.classes, info.size, info.event, info.window_us) == (
            channels,
            classes,
            size,
            event,
            window,
        ), name
    for attr in ("SHAPES", "SPECS", "DatasetSpec"):
        assert not hasattr(input_pipeline, attr)
    with pytest.raises(AttributeError):
        registry.DATASETS["dvs_gesture"].channels = 3  # frozen


def test_every_spelling_names_one_data_set():
    for alias, name in [
        ("gesture", "dvs_gesture"),
        ("DVS-Gesture", "dvs_gesture"),
        ("cifar10dvs", "cifar10_dvs"),
        ("CIFAR10-DVS", "cifar10_dvs"),
        ("N-MNIST", "nmnist"),
        ("Fashion-MNIST", "fashion_mnist"),
        ("fashionmnist", "fashion_mnist"),
        ("CIFAR10", "cifar10"),
    ]:
        assert registry.canonical_name(alias) == name, alias
        assert registry.get(alias) is registry.DATASETS[name]
    with pytest.raises(ValueError, match="unknown data set 'mnist'; expected one of"):
        registry.get("mnist")


def test_example_shape():
    assert registry.get("cifar10").example_shape(4) == (32, 32, 3)
    assert registry.get("dvs_gesture").example_shape(20) == (20, 32, 32, 2)


def test_class_names_in_label_order():
    assert registry.get("fashion_mnist").class_names[6] == "Shirt"
    assert registry.get("cifar10_dvs").class_names == registry.get("cifar10").class_names
    assert registry.get("dvs_gesture").class_names[0] == "hand clap"
    assert registry.get("nmnist").class_names == tuple("0123456789")


@pytest.mark.parametrize(
    "get_config, name, x_shape",
    [(cifar10_config, "cifar10", (2, 32, 32, 3)), (gesture_config, "gesture", (3, 2, 32, 32, 2))],
)
def test_build_model_takes_channels_and_classes_from_the_spec(get_config, name, x_shape):
    config = get_config.get_config()
    config.model.widths = (4, 4, 4)
    config.model.depth = 8
    config.model.time_steps = 3
    config.cross_device_bn = False
    model = models.build_model(config)
    x = jnp.zeros(x_shape)  # static [B, H, W, C] or time-major [T, B, H, W, C]
    variables = jax.eval_shape(lambda: model.init(jax.random.key(0), x, train=False))
    kernel = variables["params"]["stem_conv"]["kernel"]
    assert kernel.shape == (3, 3, x_shape[-1], 4)  # in_channels: 3 RGB, 2 polarities
    logits = jax.eval_shape(lambda v: model.apply(v, x, train=False), variables)
    batch = x_shape[0] if len(x_shape) == 4 else x_shape[1]
    assert logits.shape == (batch, {"cifar10": 10, "gesture": 11}[name])


def test_build_model_names_an_unknown_dataset():
    config = cifar10_config.get_config()
    config.dataset = "mnist"
    with pytest.raises(ValueError, match="unknown data set 'mnist'"):
        models.build_model(config)


# ---------------------------------------------------------------------------- frames per T


def test_event_preprocessing_keeps_the_window_and_divides_it_by_time_steps():
    # DVS128 Gesture: 40 x 30 ms = 1.2 s by default
    assert input_pipeline.event_preprocessing("dvs_gesture", 40) == Preprocessing(
        40, 30_000, (32, 32)
    )
    assert input_pipeline.event_preprocessing("dvs_gesture", 20) == Preprocessing(
        20, 60_000, (32, 32)
    )
    # CIFAR10-DVS: 100 ms, T = 4 -> 25 ms; N-MNIST: 300 ms, T = 3 -> 100 ms
    assert input_pipeline.event_preprocessing("cifar10_dvs", 4) == Preprocessing(
        4, 25_000, (42, 42), divisor=3.04
    )
    assert input_pipeline.event_preprocessing("nmnist", 3) == Preprocessing(3, 100_000, (34, 34))


@pytest.mark.parametrize("time_steps", [7, 0, -2, 2.5])
def test_time_steps_that_do_not_divide_the_window_are_refused(time_steps):
    # 1_200_000 / 7 = 171428.57... us
    with pytest.raises(ValueError, match=f"model.time_steps.*{time_steps}"):
        input_pipeline.event_preprocessing("dvs_gesture", time_steps)


def ms(*values):
    return np.array(values, np.int64) * 1000


#: The hand sample (user 1, fluorescent, label 4): times from the first event at 2 s, and
#: where they fall with 60 ms bins: 0 -> 0, 59 -> 0, 60 -> 1, 119 -> 1, 120 -> 2,
#: 1199 -> 19, 1200 and 1500 -> after the 1.2 s window.
HAND_MS = [2000, 2059, 2060, 2119, 2120, 3199, 3200, 3500]
HAND = make_events(
    x=[0, 5, 8, 127, 64, 100, 1, 2],
    y=[0, 6, 3, 127, 64, 31, 1, 2],
    p=[1, 0, 1, 0, 1, 1, 0, 0],
    t=ms(*HAND_MS),
)
HAND_PER_BIN = {0: 2, 1: 2, 2: 1, 19: 1}  # events per 60 ms bin, all others 0


def gesture_files(root, seed=0):
    """Train: the hand sample and two random ones; test: one random sample."""
    rng = np.random.default_rng(seed)
    write_gesture_sample(root, "train", 1, "fluorescent", 4, HAND)
    samples = {}
    for split, user, label in (("train", 2, 7), ("train", 3, 10), ("test", 24, 1)):
        ev = random_events(rng, 400, 128, 128, 1_500_000)
        ev["t"] -= ev["t"] % 1000  # tonic's release stores whole milliseconds
        write_gesture_sample(root, split, user, "led", label, ev)
        samples[(split, user)] = ev
    return samples


def binned_by_hand(events, n_bins: int, bin_us: int) -> np.ndarray:
    """Counts ``[T, 32, 32, 2]`` one event at a time: bin ``(t - t_first) // bin_us`` when
    inside the window, pixel ``(y // 4, x // 4)`` (128 -> 32), channel = polarity."""
    out = np.zeros((n_bins, 32, 32, 2), np.int64)
    t0 = min(int(t) for t in events["t"])
    for x, y, p, t in zip(events["x"], events["y"], events["p"], events["t"], strict=True):
        k = (int(t) - t0) // bin_us
        if k < n_bins:
            out[k, int(y) // 4, int(x) // 4, int(p)] += 1
    return out


def gesture_config_for(tmp_path, time_steps):
    config = gesture_config.get_config()
    config.data_dir = str(tmp_path / "tonic")
    config.cache_dir = str(tmp_path / "cache")
    config.model.time_steps = time_steps
    return config


def test_gesture_pipeline_makes_time_steps_frames_of_the_same_window(tmp_path):
    samples = gesture_files(tmp_path / "tonic")
    data = input_pipeline.get_datasets(gesture_config_for(tmp_path, 20))
    batch = data.preprocess(data.train[np.arange(3)], True)
    assert batch["image"].shape == (3, 20, 32, 32, 2) and batch["image"].dtype == np.float32
    np.testing.assert_array_equal(batch["label"], [4, 7, 10])  # user01, user02, user03
    hand = batch["image"][0]
    per_bin = hand.sum(axis=(1, 2, 3))
    np.testing.assert_array_equal(per_bin, [HAND_PER_BIN.get(k, 0) for k in range(20)])
    assert hand[0, 0, 0, 1] == 1 and hand[0, 1, 1, 0] == 1  # 0 ms (0, 0); 59 ms (5, 6) // 4
    assert hand[19, 7, 25, 1] == 1  # 1199 ms at (100, 31) // 4 = x 25, y 7
    np.testing.assert_array_equal(hand, binned_by_hand(HAND, 20, 60_000))
    np.testing.assert_array_equal(
        batch["image"][1], binned_by_hand(samples[("train", 2)], 20, 60_000)
    )
    test = data.preprocess(data.test[np.arange(1)], False)
    np.testing.assert_array_equal(
        test["image"][0], binned_by_hand(samples[("test", 24)], 20, 60_000)
    )


def test_frames_of_other_time_steps_are_cached_apart(tmp_path):
    samples = gesture_files(tmp_path / "tonic")
    t40 = input_pipeline.get_datasets(gesture_config_for(tmp_path, 40))
    t20 = input_pipeline.get_datasets(gesture_config_for(tmp_path, 20))
    assert t40.train.arrays["image"].shape == (3, 40, 32, 32, 2)
    assert t20.train.arrays["image"].shape == (3, 20, 32, 32, 2)
    np.testing.assert_array_equal(
        t40.train.arrays["image"][2], binned_by_hand(samples[("train", 3)], 40, 30_000)
    )
    names = sorted(p.name for p in (tmp_path / "cache").glob("*.npz"))
    assert len(names) == 4  # train and test, for each T
    assert sum("_T20_60000us_" in n for n in names) == 2
    assert sum("_T40_30000us_" in n for n in names) == 2
    again = input_pipeline.get_datasets(gesture_config_for(tmp_path, 20))  # from the cache
    np.testing.assert_array_equal(again.train.arrays["image"], t20.train.arrays["image"])


def test_gesture_time_steps_that_do_not_divide_1_2_s_name_the_config_key(tmp_path):
    gesture_files(tmp_path / "tonic")
    with pytest.raises(ValueError, match=r"model\.time_steps=7 does not divide"):
        input_pipeline.get_datasets(gesture_config_for(tmp_path, 7))
    assert not (tmp_path / "cache").exists()  # refused before converting anything


def test_examples_of_another_shape_than_the_registry_are_refused(tmp_path, monkeypatch):
    import dataclasses

    gesture_files(tmp_path / "tonic")
    wrong = dataclasses.replace(registry.DATASETS["dvs_gesture"], size=(30, 30))
    monkeypatch.setitem(registry.DATASETS, "dvs_gesture", wrong)
    with pytest.raises(ValueError, match=r"\(20, 32, 32, 2\), expected \(20, 30, 30, 2\)"):
        input_pipeline.get_datasets(gesture_config_for(tmp_path, 20))


# ---------------------------------------------------------------------------- augmentation


def _fashion_config(tmp_path, augment):
    from experiments.configs import fashion_mnist as fashion_mnist_config

    from ..data.idx_files import write_fashion_mnist

    config = fashion_mnist_config.get_config()
    config.data_dir = str(write_fashion_mnist(tmp_path, 8, 4))
    config.augment = augment
    return config


@pytest.mark.parametrize("augment", ["", "none"])
def test_fashion_mnist_is_not_augmented_by_default(tmp_path, augment):
    assert input_pipeline.get_datasets(_fashion_config(tmp_path, augment)).augment is None


def test_fashion_mnist_crop_flip_erase_crops_flips_and_erases(tmp_path):
    data = input_pipeline.get_datasets(_fashion_config(tmp_path, "crop_flip_erase"))
    example = data.train[0]
    outs = [data.augment(example, np.random.default_rng(s))["image"] for s in range(40)]
    assert all(o.shape == (28, 28, 1) and o.dtype == np.uint8 for o in outs)
    # without erasing every output is a 28x28 window of the image padded by 2, maybe flipped
    padded = np.pad(example["image"], [(2, 2), (2, 2), (0, 0)])
    windows = [
        w
        for dy in range(5)
        for dx in range(5)
        for w in (
            padded[dy : dy + 28, dx : dx + 28],
            padded[
                dy : dy + 28,
                dx : dx + 28,
            ][:, ::-1],
        )
    ]
    plain = sum(any(np.array_equal(o, w) for w in windows) for o in outs)
    assert 5 <= plain <= 35, plain  # about half were erased (probability 0.5)


def test_augmenting_data_sets_without_augmentation_is_refused():
    from experiments.configs import base

    config = base.get_config()
    config.dataset = "digits"
    config.augment = "crop_flip"
    with pytest.raises(input_pipeline.ConfigError, match="digits is not augmented"):
        input_pipeline.get_datasets(config)


def test_a_data_dir_for_digits_is_refused_not_ignored(tmp_path):
    from experiments.configs import digits as digits_config

    config = digits_config.get_config()
    config.data_dir = str(tmp_path / "nowhere")
    with pytest.raises(input_pipeline.ConfigError, match="leave config.data_dir empty"):
        input_pipeline.get_datasets(config)


# ---------------------------------------------------------------------------- encoders


@pytest.mark.parametrize("encoder", ["direct", "rate", "latency"])
def test_static_images_are_normalised_for_direct_encoding_and_intensities_for_spikes(encoder):
    from mlf_jax.data import fashion_mnist

    config = cifar10_config.get_config()
    config.model.encoder = encoder
    pixels = np.asarray([[0, 51, 255]], np.uint8).reshape(1, 1, 3, 1)
    pre = input_pipeline.static_preprocessing(config, fashion_mnist.normalize, 255.0)
    out = pre({"image": pixels, "label": np.zeros(1)}, True)["image"]
    if encoder == "direct":
        expected = (np.asarray([0.0, 0.2, 1.0]) - fashion_mnist.MEAN) / fashion_mnist.STD
    else:
        expected = np.asarray([0.0, 0.2, 1.0])  # 0, 51 and 255 of 255
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.reshape(-1), expected, rtol=1e-6)


def test_a_run_recorded_under_another_spelling_is_the_same_run():
    from experiments import run_identity

    old = run_identity.flatten({"dataset": "gesture", "model": {"depth": 20}})
    new = run_identity.flatten({"dataset": "dvs_gesture", "model": {"depth": 20}})
    assert old == new and not run_identity.diff(old, new)
    assert run_identity.diff(run_identity.flatten({"dataset": "cifar10_dvs"}), new)


def test_hold_out_moves_a_fixed_disjoint_share_of_the_training_set():
    from experiments.errors import ConfigError
    from mlf_jax.data import ArraySource

    n = 50
    train = ArraySource({"image": np.arange(n)[:, None].astype(np.float32), "label": np.arange(n)})
    data = input_pipeline.Data(train, train, lambda b, t: b)
    a, b = input_pipeline.hold_out(data, 10), input_pipeline.hold_out(data, 10)
    kept, held = a.train["label"], a.validation["label"]
    assert len(kept) == 40 and len(held) == 10
    assert sorted(np.concatenate([kept, held]).tolist()) == list(range(n))  # disjoint, all
    np.testing.assert_array_equal(held, b.validation["label"])  # the same every time
    np.testing.assert_array_equal(a.train["image"][:, 0], kept)  # images follow labels
    assert input_pipeline.hold_out(data, 0) is data
    with pytest.raises(ConfigError, match="validation_size=50"):
        input_pipeline.hold_out(data, 50)
