#!/usr/bin/env bash
# The benchmarks on one accelerator host, in one go, each section under its own time limit
# so that one failure leaves the others' results:
#
#   bash experiments/bench/accelerator.sh OUTDIR [AUTHORS_CODE_DIR]
#
# 1. the MLF layer (scan, fused, Pallas) against the memory floor, and each checked against
#    the plain reference (experiments.bench.neuron);
# 2. each paper preset's train step, ours against the authors' PyTorch net on CUDA
#    (experiments.bench.vs_official; skipped without their code);
# 3. the neuron layers of the peer libraries on CUDA (experiments.bench.peers).
#
# Expects one Python ($PYTHON, default python3) holding jax with its GPU plugin, torch
# with CUDA and the peers (spyx, snntorch, spikingjelly, norse), with this repository
# on PYTHONPATH.
set -u
out=${1:?usage: accelerator.sh OUTDIR [AUTHORS_CODE_DIR]}
official=${2:-../shared/official}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MLF_JAX_ALLOCATOR=system
# several JAX processes share the GPU (the peers benchmark): no 75 % preallocation each
export XLA_PYTHON_CLIENT_PREALLOCATE=false

section() {  # section NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date +%T), limit ${limit} s)"
  timeout "$limit" "$@" 2>&1 | grep -v '^WARNING: Location' | tail -n 60
  echo "== $name: exit ${PIPESTATUS[0]}"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$py" -c "import sys, jax, flax, optax, torch; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'torch', torch.__version__, jax.devices())"
  section neuron "${NEURON_LIMIT:-120}" "$py" -m experiments.bench.neuron \
    --T 4 10 40 --N 16777216 --out "$out/neuron.json"
  section vs_official "${OFFICIAL_LIMIT:-240}" "$py" -m experiments.bench.vs_official \
    --device cuda --torch_python "$py" --official "$official" --rounds 5 \
    --out "$out/vs_official.json"
  section peers "${PEERS_LIMIT:-120}" "$py" -m experiments.bench.peers \
    --device cuda --peer_python "$py" --rounds 5 --out "$out/peers.json"
} 2>&1 | tee "$out/accelerator.log"
