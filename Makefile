# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ORACLE := .oracle/sm101
ORACLE_STAMP := $(ORACLE)/.installed
PYTEST := $(PY) -m pytest -q -p no:cacheprovider
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: install demo test test-tensorflow test-jax test-torch clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch 2.13.0 first: its CPU build lies on this machine's disk; the extras then add nothing more.
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -e ".[tensorflow,jax,torch,dev]"
	touch $@

# segmentation_models 1.0.1, the oracle for equivalence tests: its own folder, used from a subprocess only.
$(ORACLE_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps --target $(ORACLE) \
	    segmentation-models==1.0.1 image-classifiers==1.0.0 efficientnet==1.0.0 keras-applications==1.0.8 \
	    scikit-image==0.26.0 lazy_loader==0.6 imageio==2.38.1 tifffile==2026.3.3
	touch $@

demo: $(STAMP)
	$(PY) -m segmentation_models demo

test: test-tensorflow test-jax test-torch

test-tensorflow: $(STAMP) $(ORACLE_STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) tests

test-jax: $(STAMP) $(ORACLE_STAMP)
	KERAS_BACKEND=jax $(PYTEST) tests

test-torch: $(STAMP) $(ORACLE_STAMP)
	KERAS_BACKEND=torch $(PYTEST) tests

clean:
	rm -rf $(VENV) .oracle build *.egg-info
