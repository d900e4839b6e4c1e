"""Train a spiking DS-ResNet from a config, on every device of every process.

    python -m experiments.train --config=experiments/configs/fashion_mnist.py \
        --workdir=workdir/fashion_mnist [--config.num_epochs=3 --config.data_dir=...]

Resumes from the newest checkpoint in the work directory; on SIGTERM saves a
checkpoint and exits cleanly.
"""

from __future__ import annotations

import json
import runpy
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from absl import app, flags, logging
from flax import serialization
from ml_collections import config_flags

import mlf_jax as mj
from experiments import input_pipeline
from experiments.allocator import reexec_with_jemalloc
from experiments.models import build_model

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to an experiment config file.")
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])

FINAL_VARIABLES = "final_variables.msgpack"


def train_and_evaluate(config: Any, workdir: str) -> dict[str, Any]:
    """Builds data and model from ``config`` and trains; returns the results.

    Process 0 also writes the final ``{'params', 'batch_stats'}`` to
    ``<workdir>/final_variables.msgpack`` (``flax.serialization``).
    """
    data = input_pipeline.get_datasets(config)
    model = build_model(config)
    results = mj.train.fit(
        model, data.train, data.test, data.preprocess, config, workdir, augment=data.augment
    )
    if jax.process_index() == 0:
        state = results["state"]
        variables = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
        (Path(workdir) / FINAL_VARIABLES).write_bytes(serialization.to_bytes(variables))
    return results


def check_overrides(argv: Sequence[str]) -> None:
    """Rejects ``--config.<key>=...`` overrides of keys the config does not have.

    Raises:
      ValueError: naming the unknown key and the valid keys at that level.
    """
    path = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), None)
    if path is None:
        return
    config = runpy.run_path(path.split(":", 1)[0])["get_config"]()
    for arg in argv:
        if not arg.startswith("--config.") and not arg.startswith("--noconfig."):
            continue
        key = arg.split("=", 1)[0].split("config.", 1)[1]
        node = config
        for i, part in enumerate(key.split(".")):
            valid = sorted(node.keys()) if hasattr(node, "keys") else []
            if part not in valid:
                where = "config" + "".join(f".{p}" for p in key.split(".")[:i])
                raise ValueError(
                    f"unknown config key {key!r} in {arg!r}: {where} has no {part!r}; "
                    f"valid keys: {', '.join(valid)}"
                )
            node = node[part]


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:  # Orbax logs every checkpoint at INFO level
        logging.set_verbosity(logging.WARNING)
    config = FLAGS.config
    d = config.distributed
    mj.train.distributed.initialize(
        d.coordinator_address or None, d.num_processes or None, d.process_id, auto=d.auto
    )
    if jax.process_index() == 0:
        print(f"processes: {jax.process_count()}, devices: {jax.devices()}")
    results = train_and_evaluate(config, FLAGS.workdir)
    results.pop("state")
    if jax.process_index() == 0:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    reexec_with_jemalloc()
    try:
        check_overrides(sys.argv[1:])
    except ValueError as e:
        sys.exit(f"error: {e}")
    app.run(main)
