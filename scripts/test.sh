#!/usr/bin/env bash
# Set up the environment and pass the checks CI runs: lint, Dockerfile lint, and the test suite
# (which compiles every pipeline, checks the committed specs are current, runs a real Label Studio
# server and a local end-to-end pipeline run).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh

echo "[test] ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "[test] hadolint"
for f in containers/*/Dockerfile; do
  .venv/bin/hadolint --config containers/hadolint.yaml "$f"
done

echo "[test] pytest"
.venv/bin/python -m pytest "$@"
