# Two commands do all set-up on a fresh machine (prerequisites: README.md, "Prerequisites"):
#   make demo   venv with pinned deps, build (kernels for the GPU present, none without one),
#               editable install into the venv, then the main job
#   make test   same venv, build (GPU present: its arch; no GPU: CUDA compiled for 8.0 as a
#               compile check when a toolkit exists), editable install, then the tests (GPU
#               tests skip without a GPU; `make test-fast` leaves out the slow ones)
#   make wheel  the stable-ABI wheel (one per CUDA major and arch list, every torch >= 2.10, every
#               CPython >= 3.10) in $(WHEEL_DIR): CUDA for 8.0+PTX;9.0a when a toolkit exists
#   make test-abi  opt-in: a CPU-only wheel built here, installed into a fresh venv with an older
#               torch and another CPython, runs the op tests there (downloads a torch wheel)
# ADASPA_BUILD_CUDA, TORCH_CUDA_ARCH_LIST, ADASPA_STABLE_ABI and MAX_JOBS set by the user
# (environment or make command line) win over the defaults below.
PYTHON ?= python3
# resolved before PATH below puts the venv first, so the venv is always made from this Python
BASE_PYTHON := $(or $(shell command -v $(PYTHON) 2>/dev/null),$(PYTHON))
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.adaspa-deps
# compute capability of the first GPU, e.g. 9.0; empty without one
GPU_CC := $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ')
# the arch to compile for it: sm_90 needs the arch-specific 9.0a target
GPU_ARCH := $(if $(filter 9.0,$(GPU_CC)),9.0a,$(GPU_CC))
NVCC_FOUND := $(shell ls /usr/local/cuda/bin/nvcc 2>/dev/null || command -v nvcc 2>/dev/null)
MAX_JOBS ?= $(shell nproc)
# The venv's tools first (its pinned ninja, as in a shell with the venv active): a build log
# written by another ninja version would make the next build recompile everything.
export PATH := $(abspath $(VENV))/bin:$(PATH)

# Defaults per target, each used only when the user did not set the variable.
DEMO_CUDA := $(or $(ADASPA_BUILD_CUDA),$(if $(GPU_CC),1,0))
DEMO_ARCHS := $(or $(TORCH_CUDA_ARCH_LIST),$(GPU_ARCH))
TEST_CUDA := $(or $(ADASPA_BUILD_CUDA),$(if $(or $(GPU_CC),$(NVCC_FOUND)),1,0))
TEST_ARCHS := $(or $(TORCH_CUDA_ARCH_LIST),$(GPU_ARCH),8.0)
WHEEL_CUDA := $(or $(ADASPA_BUILD_CUDA),$(if $(NVCC_FOUND),1,0))
WHEEL_ARCHS := $(or $(TORCH_CUDA_ARCH_LIST),8.0+PTX;9.0a)
WHEEL_DIR ?= dist

# Builds adaspa_ext._C in place (objects kept in build/) and installs the package into the venv in
# editable mode, so `import adaspa_ext` works from any directory with the venv active. (setuptools'
# generic warning about editable installs is silenced: the package directory is the source.)
INSTALL = PYTHONWARNINGS="ignore:Editable installation$${PYTHONWARNINGS:+,$$PYTHONWARNINGS}" \
  $(PY) -m pip install -q --no-build-isolation --no-deps -e .

.PHONY: demo test test-fast test-abi wheel build-demo build-test clean

$(STAMP): requirements.txt
	$(BASE_PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps nvidia-cutlass==4.2.0.0
	touch $@

build-demo: $(STAMP)
	MAX_JOBS='$(MAX_JOBS)' ADASPA_BUILD_CUDA='$(DEMO_CUDA)' $(if $(DEMO_ARCHS),TORCH_CUDA_ARCH_LIST='$(DEMO_ARCHS)') \
	  $(INSTALL)

build-test: $(STAMP)
	MAX_JOBS='$(MAX_JOBS)' ADASPA_BUILD_CUDA='$(TEST_CUDA)' TORCH_CUDA_ARCH_LIST='$(TEST_ARCHS)' $(INSTALL)

demo: build-demo
	$(PY) -m adaspa_ext.demo

test: build-test
	$(PY) -m pytest tests -q -rs

test-fast: build-test
	$(PY) -m pytest tests -q -rs -m 'not slow'

# pip wheel builds in this tree (objects in build/, shared with the editable install's build).
wheel: $(STAMP)
	MAX_JOBS='$(MAX_JOBS)' ADASPA_BUILD_CUDA='$(WHEEL_CUDA)' TORCH_CUDA_ARCH_LIST='$(WHEEL_ARCHS)' \
	  ADASPA_STABLE_ABI='$(or $(ADASPA_STABLE_ABI),1)' \
	  $(PY) -m pip wheel -q --no-build-isolation --no-deps -w '$(WHEEL_DIR)' .
	@ls -l '$(WHEEL_DIR)'/adaspa_ext-*.whl

# tests/test_abi.py says what it builds, downloads and runs (ADASPA_ABI_TORCH, ADASPA_ABI_PYTHON).
test-abi: $(STAMP)
	MAX_JOBS='$(MAX_JOBS)' ADASPA_TEST_ABI=1 $(PY) -m pytest tests/test_abi.py -q -rs -s

clean:
	rm -rf build adaspa_ext/_C*.so out *.egg-info
