#!/usr/bin/env bash
# Fetches into .whl/ (git-ignored) the wheels the lent GPU machine lacks, for its Python 3.12 on x86-64:
# kornia and kornia_rs, at the versions requirements.lock pins. scripts/gpu_check.sh installs them there.
# Everything else the engine needs (torch with CUDA, numpy, OpenCV, safetensors, pytest) is on that machine.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .whl
for wheel in kornia==0.9.0 kornia_rs==0.2.0; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "$wheel"
done
ls -l .whl
