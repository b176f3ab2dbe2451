#!/usr/bin/env bash
# The project's test command (README): sets up the environments if needed, lints, and runs every test:
# the engine and the add-on on bpy 5.0.1, then the add-on again on bpy 4.2 LTS.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
# Install Engine is tested for real (a fresh environment from the registries, then a repair) on both Blenders.
# PyTorch's own CPU index is not reachable from CI, so its CPU wheel comes through PyPI's index there.
export JOKR_TEST_INSTALL="${JOKR_TEST_INSTALL:-1}"
export JOKR_TEST_TORCH_INDEX="${JOKR_TEST_TORCH_INDEX:-https://pypi.org/simple}"
.venv/bin/ruff check .
.venv/bin/python -m pytest -q tests
.venv-bpy42/bin/python -m pytest -q tests/addon
