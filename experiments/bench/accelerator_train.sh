#!/usr/bin/env bash
# Converged Fashion-MNIST runs on one lent GPU host, in one command of under 10 minutes:
#
#   bash experiments/bench/accelerator_train.sh OUTDIR STEM [STEM ...]
#
# trains each experiments/configs/STEM.py, unchanged, in the work directory OUTDIR/STEM, one
# after the other, each under its own time limit ($TRAIN_LIMIT seconds, default 270): a run
# cut short keeps its checkpoints there and resumes from them on the next call. The lent
# machine cannot download, so this needs, carried from the project's machine:
#   - the Fashion-MNIST IDX files in $DATA_DIR (default ./.data/fashion-mnist):
#       mkdir -p .data/fashion-mnist && cp /usr/share/datasets/fashion-mnist/*.gz .data/fashion-mnist/
#   - the wheels the image lacks in ./.whl (experiments/bench/accelerator_wheels.sh).
# Back on the project's machine, copy OUTDIR/STEM to workdir/STEM and run
# `make converged CONVERGED=STEM`: it finds the run finished, then exports its weights,
# metrics and curves into experiments/weights/ (and re-measures nothing: evaluate the weights
# with experiments.evaluate as for a run trained here). Each run's wall time is in
# OUTDIR/STEM.wall_seconds and the whole log in OUTDIR/accelerator_train.log.
set -u
out=${1:?usage: accelerator_train.sh OUTDIR STEM [STEM ...]}
shift
[ $# -gt 0 ] || { echo "usage: accelerator_train.sh OUTDIR STEM [STEM ...]" >&2; exit 2; }
data=${DATA_DIR:-.data/fashion-mnist}
py=${PYTHON:-python3}
for stem in "$@"; do
  [ -f "experiments/configs/$stem.py" ] || { echo "no config experiments/configs/$stem.py" >&2; exit 2; }
done
[ -f "$data/train-images-idx3-ubyte.gz" ] || { echo "no Fashion-MNIST files in $data" >&2; exit 2; }
mkdir -p "$out"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MLF_JAX_ALLOCATOR=system
if [ -d .whl ]; then  # the carried wheels of what the image lacks
  "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$py" -c "import sys, jax, flax, optax; print(sys.version.split()[0], 'jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())"
  for stem in "$@"; do
    echo "== $stem ($(date +%T), limit ${TRAIN_LIMIT:-270} s)"
    start=$(date +%s)
    # the progress bar's updates as lines, the last of them kept (metrics.jsonl has them all)
    timeout "${TRAIN_LIMIT:-270}" "$py" -m experiments.train \
      --config="experiments/configs/$stem.py" --workdir="$out/$stem" \
      --config.data_dir="$data" 2>&1 | tr '\r' '\n' | grep -v '^WARNING: Location' | tail -n 40
    echo "== $stem: exit ${PIPESTATUS[0]}"
    echo $(($(date +%s) - start)) > "$out/$stem.wall_seconds"
  done
} 2>&1 | tee "$out/accelerator_train.log"
