#!/usr/bin/env bash
# Downloads into ./.whl (git-ignored) the wheels that experiments/bench/accelerator.sh needs
# and the lent GPU machine's image lacks (it has jax 0.11.2 with the CUDA 13 plugin, flax,
# optax, orbax-checkpoint, torch 2.11, scikit-learn, pytest and pytest-xdist on Python 3.12,
# and no network): the training run's data pipeline and config tools, and the peer
# libraries. Run here, on a machine with PyPI, then carry .whl to the device (64 MiB in all):
#
#   bash experiments/bench/accelerator_wheels.sh && du -sh .whl
set -euo pipefail
py=${PYTHON:-python3}  # Python 3.12 builds the source-only ones as the image would
mkdir -p .whl
# name==version pins: one version of each (two stop the install there); no dependencies
# fetched (--no-deps): each one the image lacks is named here.
WHEELS=(
  grain==0.2.18 array-record==0.8.6 dm-tree==0.1.10 ml-collections==1.1.0 tensorboardx==2.6.5
  portpicker==1.6.0 spyx==1.0.0 jax-tqdm==0.4.0 snntorch==1.0.0 spikingjelly==2.0.0
  loguru==0.7.3 nir==1.0.8 nirtorch==2.6
)
# published as source only (pure Python): built into a wheel here
SOURCES=(norse==1.1.0)
"$py" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d .whl "${WHEELS[@]}"
"$py" -m pip wheel --quiet --no-deps -w .whl "${SOURCES[@]}"
ls -1 .whl
