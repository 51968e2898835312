#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with everything the demo and the
# tests need. Idempotent: a second run only checks that the install is complete.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi

stamp=.venv/.onereward-installed
want="$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup] .venv is up to date"
else
  echo "[setup] installing onereward-pipeline with dev extras (torch 2.14.1 + torchvision 0.29.1 pinned together)"
  .venv/bin/python -m pip install --upgrade --quiet "pip>=24" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip install --quiet -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -m pip check
  echo "$want" > "$stamp"
fi
