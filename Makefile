# Two commands set everything up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
DEVICE ?= cpu
CUDA ?= 12
DATASET ?= fashion-mnist
ARGS ?=

PY := $(VENV)/bin/python
# A CUDA device needs CuPy: pulled in through the matching extra.
EXTRAS := fast,test,dev$(if $(filter cuda%,$(DEVICE)),$(comma)cuda$(CUDA))
comma := ,

.PHONY: venv data train test lint bench gpu-check clean

venv: $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

$(VENV)/.installed-%: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	@touch $@

data: venv
	@DATASET=$(DATASET) PY=$(PY) sh scripts/ensure-data.sh

train: venv data
	$(VENV)/bin/mlp-train --device $(DEVICE) --dataset $(DATASET) $(ARGS)

test: venv data
	$(PY) -m pytest $(ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check backends mlp tests bench

# The benchmark (README, Benchmarks): the venv plus the `bench` extra (PyTorch, scikit-learn,
# matplotlib); real Fashion-MNIST when it can be had, else synthetic data of the same shape.
BENCH_STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))-bench
$(BENCH_STAMP): EXTRAS := $(EXTRAS),bench

bench: $(BENCH_STAMP)
	-@DATASET=fashion-mnist PY=$(PY) sh scripts/ensure-data.sh
	$(PY) -m bench $(ARGS)

# For a GPU machine: its own python3 (CuPy, NumPy, pytest already there), nothing installed.
gpu-check:
	sh scripts/gpu-check.sh

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
