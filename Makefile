# One entry point for people and CI. Every target creates .venv on first use and installs the
# locked versions of requirements.lock (again when it or pyproject.toml changes), then mlf_jax
# itself, editable. `make lock` re-resolves the lock from pyproject.toml's ranges.
# The interpreters: .venv (the locked, newest versions; jax 0.11 and later need Python 3.12 or
# newer) is built with Python 3.12 or 3.13, .venv-min (the lowest versions) with Python 3.11,
# .venv-image (the accelerator image's versions) with Python 3.12. PYTHON=..., MIN_PYTHON=...,
# IMAGE_PYTHON=... name one; otherwise each is the first in range of pythonX.Y and python3 on
# PATH, then pyenv's installs. Looked up only when a virtualenv is (re)built.
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null)
py_version = $(shell $(1) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
find_python = $(firstword $(foreach p,$(2),$(if $(filter $(1),$(call py_version,$(p))),$(p))))
candidates = $(1) $(foreach v,$(2),python$(v)) python3 \
  $(if $(PYENV_ROOT),$(foreach v,$(2),$(wildcard $(PYENV_ROOT)/versions/$(v).*/bin/python3)))
PYTHON_VERSIONS := 3.12 3.13
MIN_PYTHON_VERSIONS := 3.11
IMAGE_PYTHON_VERSIONS := 3.12
# $(call make_venv,DIR,VERSIONS,VARIABLE): a fresh virtualenv in DIR from the first interpreter
# of VERSIONS, or one line saying what is missing and what to do. VARIABLE given on the command
# line is the only candidate; from the environment, it is tried first.
strict = $(and $($(1)),$(filter command line,$(origin $(1))))
define make_venv
	@py="$(call find_python,$(2),$(if $(call strict,$(3)),$($(3)),$(call candidates,$($(3)),$(2))))"; \
	if [ -z "$$py" ]; then \
	  if [ -n "$(call strict,$(3))" ]; then \
	    found=$$($($(3)) -c 'import sys; print("is Python %d.%d" % sys.version_info[:2])' 2>/dev/null || echo "is not found"); \
	    echo "make: $(1) needs Python $(subst $(eval) , or ,$(2)), and $(3)=$($(3)) $$found: name another, or leave $(3) unset to let make search" >&2; \
	  else \
	    echo "make: $(1) needs Python $(subst $(eval) , or ,$(2)); none is on PATH or under pyenv: install one (e.g. 'pyenv install $(firstword $(2))') or name it (make $(3)=/path/to/python$(firstword $(2)))" >&2; \
	  fi; \
	  exit 1; \
	fi; \
	echo "$(1): Python $$($$py -c 'import sys; print(sys.version.split()[0], "at", sys.executable)')"; \
	$$py -m venv --clear $(1)
endef
VENV := .venv
STAMP := $(VENV)/.installed
MIN_VENV := .venv-min
IMAGE_VENV := .venv-image
NIR_PEER_VENV := .venv-nir-peer
CONFIG ?= experiments/configs/fashion_mnist.py
WORKDIR ?= workdir/fashion_mnist
ARGS ?=
comma := ,
# The extras a clone installs (all but the accelerator runtimes).
EXTRAS := train,data,notebooks,docs,dev,nir

.PHONY: train converged test test-fast test-profile test-slow test-min test-image test-nir-peer notebooks depth_study lint typecheck format docs lock data jemalloc bench bench-official bench-peers clean

$(STAMP): pyproject.toml requirements.lock
	$(call make_venv,$(VENV),$(PYTHON_VERSIONS),PYTHON)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements.lock
	$(VENV)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

## lock: re-resolve requirements.lock from pyproject.toml's ranges (keeps current pins where
## they still fit; `make lock ARGS=--upgrade` moves every package to its newest version in range)
lock: $(STAMP)
	$(VENV)/bin/uv pip compile pyproject.toml $(foreach e,$(subst $(comma), ,$(EXTRAS)),--extra $(e)) \
	  --python-version $(firstword $(PYTHON_VERSIONS)) --no-emit-package mlf-jax --custom-compile-command "make lock" \
	  -o requirements.lock $(ARGS)

## train: DS-ResNet with MLF on Fashion-MNIST (installs the data set with apt if needed)
train: $(STAMP)
	$(VENV)/bin/python -m experiments.train --config=$(CONFIG) --workdir=$(WORKDIR) $(ARGS)

## converged: the converged Fashion-MNIST model (hours on a 2-core CPU; resumable: run it again
## after an interruption), then its weights, metrics, curves and confusion matrix (re-measured
## from the exported weights) into experiments/weights/
CONVERGED := fashion_mnist_converged
## A run stopped before it finished leaves its state (config.json, metrics.jsonl, the newest
## checkpoint) in experiments/weights/$(CONVERGED)_run/ when committed from one machine to go on
## on another; a work directory without checkpoints starts from there.
CARRIED := experiments/weights/$(CONVERGED)_run
converged: $(STAMP)
	@if [ ! -d workdir/$(CONVERGED)/checkpoints ] && [ -d $(CARRIED)/checkpoints ]; then \
	  mkdir -p workdir/$(CONVERGED) && cp -r $(CARRIED)/. workdir/$(CONVERGED)/ && \
	  echo "resuming the run carried in $(CARRIED)"; fi
	$(VENV)/bin/python -m experiments.train --config=experiments/configs/$(CONVERGED).py \
	  --workdir=workdir/$(CONVERGED) $(ARGS)
	$(VENV)/bin/python -m experiments.export --config=experiments/configs/$(CONVERGED).py \
	  --workdir=workdir/$(CONVERGED) --out=experiments/weights/$(CONVERGED)
	cp workdir/$(CONVERGED)/metrics.jsonl experiments/weights/$(CONVERGED)_metrics.jsonl
	$(VENV)/bin/python -m experiments.curves --workdir=workdir/$(CONVERGED) --table \
	  --out=experiments/weights/$(CONVERGED)_curves.png
	$(VENV)/bin/python -m experiments.evaluate --config=experiments/configs/$(CONVERGED).py \
	  --weights=experiments/weights/$(CONVERGED).msgpack \
	  --confusion_plot=experiments/weights/$(CONVERGED)_confusion.png

# Two pytest workers (one a core on the 2-core CPU CI runs on; `make test JOBS=1` for one);
# a test file stays on one worker, so its module-scoped fixtures are built once.
JOBS ?= 2
PYTEST := $(VENV)/bin/python -m pytest -q -n $(JOBS) --dist loadfile

## test: the test suite without the tests marked slow (under 10 minutes on 2 CPU cores)
test: $(STAMP)
	$(PYTEST) -m "not slow" $(ARGS)

## test-fast: the library's unit tests alone, without training runs, subprocesses and the
## authors' reference nets (under 2 minutes); for the edit-test loop
test-fast: $(STAMP)
	$(PYTEST) -m "not slow and not integration" $(ARGS)

## test-profile: `make test` recording each test's time and memory, then a table per file and
## the slowest tests (into build/test-profile.md)
test-profile: $(STAMP)
	@mkdir -p build && rm -f build/test-profile.jsonl
	MLF_JAX_TEST_PROFILE=$(CURDIR)/build/test-profile.jsonl $(PYTEST) -m "not slow" \
	  -p tests.profile_plugin $(ARGS)
	$(VENV)/bin/python -m tests.profile_report build/test-profile.jsonl | tee build/test-profile.md

## test-min: the core tests on the lowest versions pyproject.toml allows (requirements-min.txt),
## in $(MIN_VENV) with the core install only; not the Pallas kernel's CUDA lowering (Mosaic GPU),
## which needs jax 0.10 or later (test-image and test cover it at jax 0.11.2 and the lock's)
test-min: $(MIN_VENV)/.installed
	$(MIN_VENV)/bin/python -m pytest -q -n $(JOBS) --dist loadfile -m "not slow" -p no:cacheprovider \
	  tests/test_neurons.py tests/test_surrogate.py tests/nn \
	  tests/models/test_resnet.py tests/analysis tests/kernels \
	  -k "not (pallas and cuda)" $(ARGS)

$(MIN_VENV)/.installed: pyproject.toml requirements-min.txt
	$(call make_venv,$(MIN_VENV),$(MIN_PYTHON_VERSIONS),MIN_PYTHON)
	$(MIN_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MIN_VENV)/bin/python -m pip install --quiet -r requirements-min.txt -e .
	touch $@

## test-image: the kernel, export and parity tests at the JAX of the lent accelerator machine's
## image (jax 0.11.2 on Python 3.12, requirements-image.txt), in $(IMAGE_VENV), here on the CPU
test-image: $(IMAGE_VENV)/.installed
	$(IMAGE_VENV)/bin/python -m pytest -q -n $(JOBS) --dist loadfile -m "not slow" -p no:cacheprovider \
	  tests/kernels tests/models/test_official_parity.py $(ARGS)

$(IMAGE_VENV)/.installed: pyproject.toml requirements-image.txt
	$(call make_venv,$(IMAGE_VENV),$(IMAGE_PYTHON_VERSIONS),IMAGE_PYTHON)
	$(IMAGE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(IMAGE_VENV)/bin/python -m pip install --quiet -r requirements-image.txt -e .
	touch $@

## test-nir-peer: NIR across frameworks: graphs that mlf_jax.nir writes (small DS and spiking
## ResNets, the shipped main model over Fashion-MNIST's test set) run by snnTorch's importer in
## $(NIR_PEER_VENV) (Python 3.11, requirements-nir-peer.txt), against ours (tests/nir/test_peer.py)
test-nir-peer: $(STAMP) $(NIR_PEER_VENV)/.installed
	MLF_JAX_NIR_PEER=$(CURDIR)/$(NIR_PEER_VENV)/bin/python $(VENV)/bin/python -m pytest -q \
	  -p no:cacheprovider tests/nir/test_peer.py $(ARGS)

$(NIR_PEER_VENV)/.installed: requirements-nir-peer.txt
	$(call make_venv,$(NIR_PEER_VENV),$(MIN_PYTHON_VERSIONS),NIR_PEER_PYTHON)
	$(NIR_PEER_VENV)/bin/python -m pip install --quiet -r requirements-nir-peer.txt
	touch $@

## test-slow: the long tests (whole shipped models on 8 fake devices, ...), then the parity
## tests again, compiled at XLA's default optimisation level as a user's run is; CI runs both
test-slow: $(STAMP)
	$(PYTEST) -m slow $(ARGS)
	MLF_JAX_TEST_OPT=default $(PYTEST) -m parity $(ARGS)

## notebooks: execute every notebooks/[0-9]*.ipynb with small settings; fails on any error
## (ARGS="--full --write" regenerates the committed outputs, see notebooks/README.md)
notebooks: $(STAMP)
	$(VENV)/bin/python notebooks/run.py $(ARGS)

## depth_study: {spiking ResNet, DS-ResNet} x {LIF, MLF} x depths 8/32/68 on Fashion-MNIST
## (resumable: run it again after an interruption); results and plot into experiments/results/
depth_study: $(STAMP)
	$(VENV)/bin/python -m experiments.depth_study --workdir=workdir/depth_study \
	  --results_out=experiments/results/depth_study.json \
	  --plot_out=experiments/results/depth_study.png $(ARGS)

## bench: every benchmark under experiments/bench (tables on stdout, JSON in experiments/bench/results)
bench: $(STAMP)
	$(VENV)/bin/python -m experiments.bench.neuron
	$(VENV)/bin/python -m experiments.bench.train_step
	$(VENV)/bin/python -m experiments.bench.memory
	$(VENV)/bin/python -m experiments.bench.profile
	$(VENV)/bin/python -m experiments.bench.conv

## bench-official: our train step against the authors' PyTorch nets, side by side (their code's
## folder: ARGS=--official=PATH); creates .bench-venvs/official with CPU torch on first use;
## skips, saying so, without their code
bench-official: $(STAMP)
	$(VENV)/bin/python -m experiments.bench.vs_official --readme docs/results/speed.md $(ARGS)

## bench-peers: mj.lif / mj.mlf against spyx, SpikingJelly, snnTorch and norse (each in its own
## virtualenv under .bench-venvs, created on first use)
bench-peers: $(STAMP)
	$(VENV)/bin/python -m experiments.bench.peers $(ARGS)

## lint: ruff (style and format), mypy (types of the library) and the architecture contract
## (no import cycle; each layer imports only those below it: tests/test_architecture.py)
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider tests/test_architecture.py

## docs: the documentation site into build/site (warnings are errors)
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir build/site

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

## jemalloc: Debian's libjemalloc2, which the experiment commands preload (faster on CPU, see
## experiments/allocator.py); optional: without it they use the system allocator
jemalloc:
	@if ls /usr/lib/*/libjemalloc.so.2 /usr/lib/libjemalloc.so.2 >/dev/null 2>&1; then \
	  echo "jemalloc already installed"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libjemalloc2; \
	else \
	  echo "run as root: apt-get install libjemalloc2"; exit 1; \
	fi

## data: Debian's dataset-fashion-mnist (real data used by one test and by `make train`)
data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then \
	  echo "Fashion-MNIST already in /usr/share/datasets/fashion-mnist"; \
	elif [ "$$(id -u)" = 0 ]; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
	  echo "run as root: apt-get install dataset-fashion-mnist"; exit 1; \
	fi

clean:
	rm -rf $(VENV) $(MIN_VENV) $(IMAGE_VENV) $(NIR_PEER_VENV) .jax_cache .pytest_cache .bench-venvs
