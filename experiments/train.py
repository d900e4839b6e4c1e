"""Train a spiking DS-ResNet from a config.

    python -m experiments.train --config=experiments/configs/fashion_mnist.py \
        --workdir=workdir/fashion_mnist [--config.num_epochs=3 --config.data_dir=...]
"""

from __future__ import annotations

import json
from typing import Any

import jax
from absl import app, flags
from ml_collections import config_flags

import mlf_jax as mj
from experiments import input_pipeline

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to an experiment config file.")
flags.DEFINE_string("workdir", None, "Directory for metrics and the final weights.")
flags.mark_flags_as_required(["config", "workdir"])


def build_model(config: Any) -> mj.models.ResNet:
    """The ``ResNet`` described by ``config.model`` for ``config.dataset``."""
    m = config.model
    in_channels, num_classes = input_pipeline.SHAPES[config.dataset]
    return mj.models.resnet(
        m.depth,
        widths=tuple(m.widths),
        num_classes=num_classes,
        shortcut=m.shortcut,
        time_steps=m.time_steps,
        input_norm=m.input_norm,
        in_channels=in_channels,
        thresholds=tuple(m.thresholds),
        tau=m.tau,
        surrogate=mj.get_surrogate(m.surrogate, m.surrogate_param),
        detach_reset=m.detach_reset,
    )


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
    """Builds data and model from ``config`` and trains; returns the results."""
    train, test, preprocess = input_pipeline.get_datasets(config)
    model = build_model(config)
    return mj.train.fit(model, train, test, preprocess, config, workdir)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    print(f"devices: {jax.devices()}")
    results = train_and_evaluate(FLAGS.config, FLAGS.workdir)
    results.pop("state")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    app.run(main)
