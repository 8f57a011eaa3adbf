# Two entry points (see README): `make demo` trains the practical's NumPy MLP, `make test` runs the suite.
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?=
STAMP_DEMO := $(VENV)/.stamp-demo
STAMP_TEST := $(VENV)/.stamp-test

.PHONY: demo test test-fast lint bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(STAMP_DEMO): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[digits]'
	touch $@

$(STAMP_TEST): pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[digits,torch,test,sweep]'
	touch $@ $(STAMP_DEMO)

demo: $(STAMP_DEMO)
	$(PY) -m backproplab demo $(if $(DATA),--data_dir '$(DATA)')

lint: $(STAMP_TEST)
	$(PY) -m ruff check src tests benchmarks
	$(PY) -m ruff format --check src tests benchmarks
	$(PY) -m mypy

# Two test workers, one BLAS/OpenMP thread each: oversubscribed OpenBLAS threads spin and crawl.
PYTEST := OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadgroup

test: lint
	$(PYTEST)

# The edit-test loop: no lint, no real-data training (realdata) and no slow training runs (slow).
test-fast: $(STAMP_TEST)
	$(PYTEST) -m "not realdata and not slow"

bench: $(STAMP_TEST)
	$(PY) benchmarks/mlp_numpy_vs_torch.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
