#!/usr/bin/env bash
# The project's test command (README): sets up the environments if needed, lints, and runs every test:
# the engine and the add-on on bpy 5.0.1, then the add-on again on bpy 4.2 LTS.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
.venv/bin/ruff check .
.venv/bin/python -m pytest -q tests
.venv-bpy42/bin/python -m pytest -q tests/addon
