# Two entry points that work on a fresh machine: `make demo` and `make test` (`make lint` is its first step).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ORACLE := .oracle/sm101
ORACLE_STAMP := $(ORACLE)/.installed
# Two workers (pytest-xdist) for the two cores. Whole files go to one worker (`loadfile`), so a module-scoped
# fixture (an oracle subprocess, a model built once) is made once; files go out heaviest first (tests/conftest.py
# HEAVIEST_FIRST; xdist's own reordering by test count is turned off). (`loadgroup` would balance better but does
# nothing under pytest 9: xdist 3.8 tags the node ids through an attribute pytest 9 no longer reads.)
# One OpenMP thread per worker: two workers on two cores each spinning two torch threads made the torch pass
# 3x slower (test_unet + test_smp_architectures: 151 s -> 53 s); TF and JAX timings do not change.
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --no-loadscope-reorder --durations=10
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: install demo lint test test-tensorflow test-jax test-torch test-min-keras bench-env clean

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

# The peers of benchmarks/run.py and benchmarks/accuracy.py: 1.0.1 (the oracle above) and segmentation-models-pytorch
# 0.6.0 in .bench/smp, put on sys.path by benchmarks/smp_env.py only (torchvision, not installable here, is stubbed
# there; huggingface_hub 0.26.5 because 1.x needs httpx2).
SMP_DIR := .bench/smp
SMP_STAMP := $(SMP_DIR)/.installed

$(SMP_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps --target $(SMP_DIR) \
	    segmentation-models-pytorch==0.6.0 timm==1.0.31 huggingface_hub==0.26.5 tqdm
	touch $@

# MONAI (its sliding_window_inference is benchmarks/sliding_windows.py's peer) in .bench/monai, put on sys.path by
# that script only; its core needs torch and numpy, both in the venv.
MONAI_DIR := .bench/monai
MONAI_STAMP := $(MONAI_DIR)/.installed

$(MONAI_STAMP): $(STAMP)
	$(PY) -m pip install -q --no-deps --target $(MONAI_DIR) monai==1.6.1
	touch $@

bench-env: $(ORACLE_STAMP) $(SMP_STAMP) $(MONAI_STAMP)

demo: $(STAMP)
	$(PY) -m segmentation_models demo

# Style first, so that it fails fast (ruff's settings: pyproject.toml).
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

test: lint test-tensorflow test-jax test-torch test-min-keras

test-tensorflow: $(STAMP) $(ORACLE_STAMP)
	KERAS_BACKEND=tensorflow $(PYTEST) tests

# JAX test settings (they change no model computation):
# - one persistent compilation cache for both workers and the subprocesses they start (fresh-process reloads, CLI
#   runs): a kernel compiled in one process is not compiled again in another. Git-ignored; a fresh clone starts cold.
# - the non-partitionable threefry PRNG (JAX's default before 0.5): other random initial values, same models, and
#   a Unet-ResNet18 builds in 3.2 s instead of 6.8 s (each new initializer shape is an XLA compilation, and the
#   partitionable threefry program takes twice as long to compile on CPU).
JAX_TEST_ENV := JAX_COMPILATION_CACHE_DIR=$(CURDIR)/.cache/jax JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 \
    JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0 JAX_THREEFRY_PARTITIONABLE=0

test-jax: $(STAMP) $(ORACLE_STAMP)
	KERAS_BACKEND=jax $(JAX_TEST_ENV) $(PYTEST) tests

test-torch: $(STAMP) $(ORACLE_STAMP)
	KERAS_BACKEND=torch $(PYTEST) tests

# The oldest supported Keras (pyproject: keras>=3.8) in its own small venv, on JAX: the core API tests, and that
# keras-hub (not installed there) stays optional.
MIN_VENV := .venv-min-keras
MIN_STAMP := $(MIN_VENV)/.installed
MIN_PINS := "keras==3.8.0" "jax[cpu]==0.4.38" "numpy==2.1.3" "h5py>=3.7" "pillow>=9.0" "safetensors>=0.4" "pytest>=8"

$(MIN_STAMP): Makefile
	test -x $(MIN_VENV)/bin/python || $(PYTHON) -m venv $(MIN_VENV)
	$(MIN_VENV)/bin/python -m pip install -q $(MIN_PINS)
	touch $@

test-min-keras: $(MIN_STAMP)
	KERAS_BACKEND=jax $(JAX_TEST_ENV) PYTHONPATH=$(CURDIR) $(MIN_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	    tests/test_api_compat.py tests/test_unet.py tests/test_hub_optional.py \
	    -k "not backbone_block or (resnet18 and upsampling)"

clean:
	rm -rf $(VENV) $(MIN_VENV) .oracle .bench .cache build *.egg-info
