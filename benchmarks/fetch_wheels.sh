#!/usr/bin/env bash
# Download the wheels a GPU machine without network needs for the diffusers integration, its
# tests and bench_e2e.py, into .whl/ (gitignored); benchmarks/run_device.sh installs whatever it
# finds there (pip --no-index, --no-deps, into /tmp/site ahead of the machine's own packages).
#
# Target: CPython 3.12, manylinux x86_64, a machine that already has torch, transformers (with
# huggingface_hub 1.x), numpy and the rest of diffusers' requirements (filelock, regex, requests,
# safetensors >= 0.8, Pillow), but not diffusers. So only what is missing travels: diffusers 0.42.1
# (the version the integration is pinned to) and the nvidia-cutlass wheel whose headers the CUDA
# build compiles against. Not carried, on purpose:
#   huggingface_hub: diffusers 0.42.1 needs >= 1.32; the machine's own 1.x (the one its transformers
#     was installed with) satisfies that, and a carried copy would shadow it;
#   importlib_metadata: declared by diffusers but imported only on Python < 3.8 (3.12 uses the
#     standard library's importlib.metadata); its 10.x also needs lazy-importer.
# Usage: bash benchmarks/fetch_wheels.sh [DIR]   (default .whl; run from the repository root)
set -euo pipefail
dir=${1:-.whl}
mkdir -p "$dir"
pkgs=(diffusers==0.42.1 nvidia-cutlass==4.2.0.0)
# one version of each: two wheels of one package stop the install there
for p in "${pkgs[@]}"; do
  name=${p%%==*}
  rm -f "$dir"/"${name//-/_}"-*.whl "$dir"/"$name"-*.whl
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d "$dir" "${pkgs[@]}"
ls -l "$dir"/*.whl
echo "$(du -sh "$dir" | cut -f1) in $dir (the device tool carries at most 64 MiB in all)"
