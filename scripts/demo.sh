#!/usr/bin/env bash
# The demo (the project's main job): sets up the environment if needed, then runs scripts/demo.py in
# real Blender (bpy) headless. Options are passed on, e.g. `scripts/demo.sh --preset paper`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh demo
exec .venv/bin/python scripts/demo.py "$@"
