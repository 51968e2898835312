#!/usr/bin/env bash
# Freeze the tested environment into containers/constraints.txt: the container images install
# exactly these versions (pip install -c). Run after a dependency change, once the tests pass.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# The environment the test suite passed in (scripts/lock.sh); the images install with -c."
  .venv/bin/python -m pip freeze --exclude-editable --all | grep -v '^onereward-pipeline\|^pip=\|^setuptools=\|^wheel='
} > containers/constraints.txt
echo "wrote containers/constraints.txt ($(grep -vc '^#' containers/constraints.txt) packages)"
