# Two commands do all set-up on a fresh machine:
#   make demo   venv with pinned deps, build (kernels for the GPU present, none without one), main job
#   make test   same venv, build (GPU present: its arch; no GPU: CUDA compiled for 8.0 as a
#               compile check when a toolkit exists), then every test (GPU tests skip without a GPU)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.adaspa-deps
# compute capability of the first GPU, e.g. 9.0; empty without one
GPU_CC := $(shell nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n 1 | tr -d ' ')
NVCC_FOUND := $(shell ls /usr/local/cuda/bin/nvcc 2>/dev/null || command -v nvcc 2>/dev/null)
JOBS ?= $(shell nproc)

.PHONY: demo test build-demo build-test clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps nvidia-cutlass==4.2.0.0
	touch $@

build-demo: $(STAMP)
	MAX_JOBS=$(JOBS) ADASPA_BUILD_CUDA=$(if $(GPU_CC),1,0) $(if $(GPU_CC),TORCH_CUDA_ARCH_LIST=$(GPU_CC)) \
	  $(PY) setup.py -q build_ext --inplace

build-test: $(STAMP)
	MAX_JOBS=$(JOBS) ADASPA_BUILD_CUDA=$(if $(or $(GPU_CC),$(NVCC_FOUND)),1,0) \
	  TORCH_CUDA_ARCH_LIST=$(or $(GPU_CC),8.0) $(PY) setup.py -q build_ext --inplace

demo: build-demo
	$(PY) -m adaspa_ext.demo

test: build-test
	$(PY) -m pytest tests -q -rs

clean:
	rm -rf build adaspa_ext/_C*.so adaspa_ext/_build_config.py out
