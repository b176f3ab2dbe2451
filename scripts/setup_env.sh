#!/usr/bin/env bash
# Creates (or repairs) the two virtual environments with the pinned packages:
#   .venv        engine + tests + real Blender 5.0.1 as the bpy module (CPU torch by default)
#   .venv-bpy42  real Blender 4.2 LTS as the bpy module, for the add-on tests on the oldest supported version
# JOKR_CUDA=1 installs the CUDA build of torch from PyPI instead of the CPU wheel.
# Then `jokr-engine setup` fetches the LPIPS weights and the u2netp matting model once into the cache
# (README; quick when present).
# `setup_env.sh demo` sets up .venv alone: the demo does not need Blender 4.2.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if ! .venv/bin/python -c "import torch, kornia, cv2, safetensors, onnxruntime, bpy, pytest, jokr_engine" >/dev/null 2>&1; then
    echo "setting up .venv (engine, tests, bpy 5.0.1) …" >&2
    "$PYTHON" -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    if [ "${JOKR_CUDA:-0}" = "1" ]; then
        # An empty find-links ignores a local CPU wheel, so PyPI's CUDA build of the same version is taken.
        PIP_FIND_LINKS= .venv/bin/pip install -q torch==2.13.0
    fi
    .venv/bin/pip install -q -r requirements.lock -r requirements-dev.lock
    .venv/bin/pip install -q --no-deps -e .
fi

# The LPIPS weights (paper/fast presets) and the matting model (mask source auto): downloaded and verified
# once; afterwards only verified.
if ! events=$(.venv/bin/python -m jokr_engine setup); then
    echo "jokr-engine setup failed: ${events##*$'\n'}" >&2
    exit 1
fi

[ "${1:-all}" = "demo" ] && exit 0

if ! .venv-bpy42/bin/python -c "import bpy, pytest" >/dev/null 2>&1; then
    echo "setting up .venv-bpy42 (bpy 4.2 LTS) …" >&2
    "$PYTHON" -m venv .venv-bpy42
    .venv-bpy42/bin/pip install -q bpy==4.2.23 numpy==1.26.4 pytest==9.2.0
fi
