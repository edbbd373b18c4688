# Two commands set everything up on a fresh machine: `make train` and `make test`.
PYTHON ?= python3
VENV ?= .venv
DEVICE ?= cpu
CUDA ?= 12
DATASET ?= fashion-mnist
ARGS ?=

PY := $(VENV)/bin/python
comma := ,
# A CUDA device needs CuPy: pulled in through the matching extra.
EXTRAS := fast,test,dev,dist$(if $(filter cuda%,$(DEVICE)),$(comma)cuda$(CUDA))

.PHONY: venv data train test lint bench gpu-check gpu-check-data clean

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

# The benchmark (docs/benchmarks.md): Numba, the `bench` extra (matplotlib, threadpoolctl,
# psutil) and only the peers that ARGS' --peers runs (`bench-torch`, `bench-sklearn`: asked of
# bench/extras.py, on $(PYTHON) since the venv may not exist yet; all of them if it cannot
# answer), none of `test`'s; one stamp per set. Real Fashion-MNIST when it can be had, else
# synthetic data of the same shape.
ifneq ($(filter bench,$(MAKECMDGOALS)),)
BENCH_EXTRAS := $(or $(shell $(PYTHON) -m bench.extras $(ARGS)),bench$(comma)bench-torch$(comma)bench-sklearn)
endif
BENCH_STAMP := $(VENV)/.installed-fast-$(subst $(comma),-,$(BENCH_EXTRAS))$(if $(filter cuda%,$(DEVICE)),-cuda$(CUDA))
$(BENCH_STAMP): EXTRAS := fast,$(BENCH_EXTRAS)$(if $(filter cuda%,$(DEVICE)),$(comma)cuda$(CUDA))

bench: $(BENCH_STAMP)
	-@DATASET=fashion-mnist PY=$(PY) sh scripts/ensure-data.sh
	$(PY) -m bench $(ARGS)

# For a GPU machine: its own python3 (CuPy, NumPy, pytest already there), nothing installed.
gpu-check:
	sh scripts/gpu-check.sh

# Here, before a GPU run: Fashion-MNIST into data/fashion-mnist (ignored by git, 30 MB) for the
# run to carry, so that gpu-check compares CPU and GPU accuracy on the real test set; and the
# dist extra's wheels for the GPU machine's Python 3.12 into .whl (15 MB, carried too), used
# there only if its own mpi4py cannot start MPI.
gpu-check-data: venv data
	mkdir -p data/fashion-mnist
	cp "$$($(PY) -c 'from mlp.data import find_dataset; print(find_dataset("fashion-mnist"))')"/*-ubyte* data/fashion-mnist/
	$(PY) -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
		--implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_5_x86_64 \
		-d .whl mpi4py==4.1.2 mpich==5.0.2

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache build *.egg-info
