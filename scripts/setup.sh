#!/usr/bin/env bash
# Create (or update) the project's virtual environment in .venv with everything the demo and the
# tests need. Idempotent: a second run only checks that the install is complete.
set -euo pipefail
cd "$(dirname "$0")/.."

# Python 3.11 is required (pyproject's requires-python); PYTHON overrides the interpreter.
PYTHON="${PYTHON:-}"
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 \
      && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON="$candidate"
      break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "[setup] error: Python 3.11 not found (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

# pip prints notes about local index mirrors that some machines configure; drop them, keep pip's status.
quiet_pip() { "$@" 2>&1 | { grep -v "^WARNING: Location" || true; }; }

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
  quiet_pip .venv/bin/python -m pip install --upgrade --quiet "pip>=24"
  quiet_pip .venv/bin/python -m pip install --quiet -e ".[dev]"
  .venv/bin/python -m pip check
  .venv/bin/python -c "import onereward, onereward_kfp.pipelines, torch, torchvision, diffusers, transformers, open_clip"
  echo "$want" > "$stamp"
fi

# The manifest tests render every kustomize overlay with `kubectl kustomize` (offline). Debian's
# kubernetes-client provides kubectl where the machine has none.
if ! command -v kubectl >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "[setup] installing kubectl (Debian kubernetes-client) for the manifest tests"
    apt-get install -y -qq kubernetes-client >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && apt-get install -y -qq kubernetes-client >/dev/null; }
  else
    echo "[setup] warning: kubectl not found; install Debian's kubernetes-client for the manifest tests" >&2
  fi
fi
