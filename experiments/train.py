"""Train a spiking DS-ResNet from a config, on every device of every process.

    python -m experiments.train --config=experiments/configs/fashion_mnist.py \\
        --workdir=workdir/fashion_mnist [--config.num_epochs=3 --config.data_dir=...]

Resumes from the newest checkpoint in the work directory (local or ``gs://...``); on
SIGTERM or Ctrl-C saves a checkpoint and exits cleanly. A restart with another config
is refused (``--allow_change=num_epochs,...`` accepts optimiser changes). A mistake in
the command, the config or the data ends with one line ``error: ...`` and exit code 1.
"""

from __future__ import annotations

import os
import signal

if __name__ == "__main__":  # Ctrl-C from the first moment, before the imports (issue 39)

    def _interrupted_before_start(signum: int, frame: object) -> None:
        os.write(2, b"interrupted: stopped during start-up, before any work\n")
        os._exit(130)  # nothing written yet: nothing to save or release

    signal.signal(signal.SIGINT, _interrupted_before_start)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})  # blocked across a re-exec

import json
import sys
from collections.abc import Sequence

import jax
from absl import app, flags, logging
from ml_collections import config_flags

import mlf_jax as mj
from experiments import allocator, config_check, cpu_devices, dry_run, run_identity, trainer

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Path to an experiment config file.")
flags.DEFINE_string("workdir", None, "Directory (or gs:// URI) for checkpoints, metrics, results.")
flags.DEFINE_list(
    "allow_change",
    [],
    "Config keys that may differ from the run recorded in --workdir: "
    + ", ".join(run_identity.CHANGEABLE),
)
flags.DEFINE_bool(
    "dry_run",
    False,
    "Build data, model and the sharded steps, compile one train and one eval step, print the "
    "per-device batch, parameter and memory figures, and exit (no training; workdir untouched).",
)
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: Sequence[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:  # Orbax logs every checkpoint at INFO level
        logging.set_verbosity(logging.WARNING)
    config = FLAGS.config
    # once, before any start-up, data or compilation; the model it checks is the run's
    checked = config_check.validate(config)
    d = config.distributed
    multi_host = {
        "coordinator_address": d.coordinator_address or None,
        "num_processes": d.num_processes or None,
        "process_id": d.process_id,
        "auto": d.auto,
        "prefix": "config.distributed.",
    }
    try:  # every multi-host setting (config and MLF_JAX_* variables), before JAX starts
        mj.train.distributed.settings(**multi_host)
    except ValueError as e:
        raise config_check.ConfigError(str(e)) from None
    if not (d.coordinator_address or d.num_processes or d.auto):
        try:  # before JAX's backend starts: one CPU device per core
            cpu_devices.use_every_core([config.batch_size])
        except ValueError as e:
            raise config_check.ConfigError(str(e)) from None
    trainer.enable_compilation_cache(config.compilation_cache_dir)
    try:
        mj.train.distributed.initialize(**multi_host, timeout_seconds=d.timeout_seconds)
    except ValueError as e:  # auto=True off a cluster; the rest was checked above
        raise config_check.ConfigError(str(e)) from None
    if jax.process_index() == 0:
        print(f"processes: {jax.process_count()}, devices: {jax.devices()}")
    if FLAGS.dry_run:
        dry_run.dry_run(checked)
        return
    if jax.process_index() == 0 and jax.default_backend() == "cpu":
        allocator.notice()  # where jemalloc matters: a training run on XLA:CPU
    results = trainer.train_and_evaluate(checked, FLAGS.workdir, allow_change=FLAGS.allow_change)
    results.pop("state")
    if jax.process_index() == 0:
        print(json.dumps(results, indent=2))


#: Asking for help: the usage on stdout and exit code 0 (absl's own help flags exit 1).
_HELP = {"-h", "-?", "--help", "-help", "--helpshort", "-helpshort"}
_HELP_FULL = {"--helpfull", "-helpfull"}


def _help(args: Sequence[str]) -> bool:
    """Prints the usage and the flags if ``args`` ask for help (whatever else they hold)."""
    full = any(a in _HELP_FULL for a in args)
    if not full and not any(a in _HELP for a in args):
        return False
    app.usage(shorthelp=not full, writeto_stdout=True)
    if not full:
        print("\nAll flags, absl's and JAX's included: --helpfull")
    return True


def run(argv: Sequence[str] | None = None) -> None:
    """The command line: ``main`` under absl, user errors as one line and exit code 1."""
    argv = list(sys.argv if argv is None else argv)
    mj.train.preemption.catch_early_signals()  # a Ctrl-C during start-up is not lost
    try:
        if _help(argv[1:]):
            return
        config_check.check_overrides(argv[1:])
        app.run(main, argv=argv)
    except trainer.USER_ERRORS as e:
        sys.exit(f"error: {e}")
    except OSError as e:  # a workdir that is a file, a full or read-only disk, ...
        sys.exit(f"error: {e}")
    except KeyboardInterrupt:  # before the loop, or a second Ctrl-C in it
        print("interrupted: stopped without saving; the last checkpoint is kept", file=sys.stderr)
        sys.exit(130)
    finally:
        mj.train.preemption.restore_default_signals()


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})  # pending across the exec
    allocator.reexec_with_jemalloc()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    run()
