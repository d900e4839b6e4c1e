#!/usr/bin/env bash
# Everything worth checking on one lent GPU host, in one go and under 10 minutes, each section
# under its own time limit so that one failure leaves the others' results:
#
#   bash experiments/bench/accelerator.sh OUTDIR [AUTHORS_CODE_DIR] [REFERENCE_DIR]
#
# 1. tests: the kernel tests (the compiled Pallas kernels against autodiff through the scan,
#    which skip on a CPU), the export tests and whole-model parity with the authors' nets
#    (with REFERENCE_DIR), on the GPU; JUnit XML in OUTDIR/tests.xml;
# 2. the MLF layer (plain, ours, fused, Pallas) against the memory floor, each checked against
#    the plain reference (experiments.bench.neuron);
# 3. the neuron layers of the peer libraries on CUDA (experiments.bench.peers);
# 4. each paper preset's train step, ours against the authors' PyTorch net on CUDA
#    (experiments.bench.vs_official; skipped without their code);
# 5. a short training run (the digits smoke config) to its results.json.
#
# Expects one Python ($PYTHON, default python3) holding jax with its GPU plugin, flax, optax,
# torch with CUDA, pytest and the packages experiments/bench/accelerator_wheels.sh downloads
# (installed from ./.whl into /tmp/site when that folder is there), with this repository on
# PYTHONPATH. Results: OUTDIR/*.json, OUTDIR/tests.xml and the whole log OUTDIR/accelerator.log.
set -u
out=${1:?usage: accelerator.sh OUTDIR [AUTHORS_CODE_DIR] [REFERENCE_DIR]}
# the authors' code and their nets' reference outputs: where given, else each tool's default
official_args=()
if [ -n "${2:-}" ]; then official_args=(--official "$2"); fi
if [ -n "${3:-}" ]; then export MLF_JAX_REFERENCE_DIR="$3"; fi
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MLF_JAX_ALLOCATOR=system
# several JAX processes share the GPU (test workers, the peers): no 75 % preallocation each
export XLA_PYTHON_CLIENT_PREALLOCATE=false

if [ -d .whl ]; then  # the carried wheels of what the image lacks
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

section() {  # section NAME SECONDS COMMAND...
  local name=$1 limit=$2
  shift 2
  echo "== $name ($(date +%T), limit ${limit} s)"
  timeout "$limit" "$@" 2>&1 | grep -v '^WARNING: Location' | tail -n 60
  echo "== $name: exit ${PIPESTATUS[0]}"
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$py" -c "import sys, jax, flax, optax; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
  section tests "${TESTS_LIMIT:-150}" \
    "$py" -m pytest -q -x -n 4 -p no:cacheprovider -rs --junitxml "$out/tests.xml" \
    tests/kernels tests/models/test_official_parity.py tests/experiments/test_bench_neuron.py
  section neuron "${NEURON_LIMIT:-75}" "$py" -m experiments.bench.neuron \
    --T 4 10 40 --N 16777216 --out "$out/neuron.json"
  section peers "${PEERS_LIMIT:-75}" "$py" -m experiments.bench.peers \
    --device cuda --peer_python "$py" --rounds 3 --out "$out/peers.json"
  section vs_official "${OFFICIAL_LIMIT:-150}" "$py" -m experiments.bench.vs_official \
    --device cuda --torch_python "$py" "${official_args[@]}" --rounds 3 \
    --out "$out/vs_official.json"
  rm -rf /tmp/accelerator_digits  # a new run, never an earlier one resumed
  section train "${TRAIN_LIMIT:-75}" "$py" -m experiments.train \
    --config=experiments/configs/digits.py --workdir=/tmp/accelerator_digits
  cp /tmp/accelerator_digits/results.json "$out/train_digits.json" 2>/dev/null
} 2>&1 | tee "$out/accelerator.log"
