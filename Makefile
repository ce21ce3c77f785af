# certkit: `make demo` and `make test` are the whole set-up on a fresh clone.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.certkit-installed
EXTRAS ?= dev,notebooks,llm,dist,docs,fast
PYTEST_WORKERS ?= 2

.PHONY: install demo test test-slow lint docs bench clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[$(EXTRAS)]'
	# The 'onnx' extra without torchvision: onnx2torch declares it, but torchvision's PyPI wheels are CUDA
	# builds that fail to import beside the CPU torch wheel (and then break transformers' imports).
	# certify.load_onnx needs no torchvision (see certify/onnx_io.py).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt onnx onnxruntime
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt --no-deps onnx2torch
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	PYTHONUNBUFFERED=1 $(BIN)/python -m certkit_app.demo

lint: $(STAMP)
	$(BIN)/ruff check certkit certkit_app certify smoothing conformal tests benchmarks
	$(BIN)/mypy certkit certkit_app certify smoothing conformal

# One torch thread per pytest worker: 2 workers x 2 threads on 2 cores thrash (spin-waiting OpenMP).
TEST_ENV := OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

# The documentation site (mkdocs.yml, docs/) into site/; warnings are errors. Builds offline. Not --quiet:
# it drops the warnings before --strict counts them (griffe's docstring warnings passed unnoticed).
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Default run: lint, types, the docs build, fast tests, doctests and the notebooks.
# Slow statistical tests (and every README/docs example): `make test-slow`.
test: lint docs
	$(TEST_ENV) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow" tests
	$(TEST_ENV) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) --nbmake --nbmake-timeout=900 notebooks

test-slow: $(STAMP)
	$(TEST_ENV) $(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m slow tests

bench: $(STAMP)
	PYTHONUNBUFFERED=1 $(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache site
