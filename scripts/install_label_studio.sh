#!/usr/bin/env bash
# Install the Label Studio server into its own virtual environment (its pins clash with ours).
#
# Usage: scripts/install_label_studio.sh [VENV_DIR]
#   VENV_DIR defaults to $ONEREWARD_LABEL_STUDIO_VENV or <repo>/.venv-labelstudio (ignored by git).
# Idempotent: a venv whose label-studio already has the pinned version is left alone (a marker
# file records a completed install, so an interrupted install is redone, not trusted).
# Takes about 1 minute on a fresh machine (PyPI only); the venv is about 1 GB.
set -euo pipefail

LABEL_STUDIO_VERSION="${LABEL_STUDIO_VERSION:-1.23.2}"
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV_DIR="${1:-${ONEREWARD_LABEL_STUDIO_VENV:-$REPO_ROOT/.venv-labelstudio}}"
MARKER="$VENV_DIR/.onereward-label-studio-$LABEL_STUDIO_VERSION"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

if [[ -f "$MARKER" && -x "$VENV_DIR/bin/label-studio" ]]; then
  echo "label-studio $LABEL_STUDIO_VERSION already installed in $VENV_DIR"
  exit 0
fi

echo "installing label-studio $LABEL_STUDIO_VERSION into $VENV_DIR (about 1 minute)"
rm -rf "$VENV_DIR"
"$PYTHON" -m venv "$VENV_DIR"
# (grep drops pip's notes about local index mirrors that some machines configure and lack)
"$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
"$VENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check "label-studio==$LABEL_STUDIO_VERSION" 2>&1 \
  | { grep -v "^WARNING: Location" || true; }
test -x "$VENV_DIR/bin/label-studio"
touch "$MARKER"
echo "label-studio $LABEL_STUDIO_VERSION installed in $VENV_DIR"
