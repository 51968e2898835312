#!/usr/bin/env bash
# Set up the environment and run the embedded end-to-end demo (tiny profile, synthetic world,
# simulated annotators, kfp.local). Prints where the report is.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
.venv/bin/onereward demo --out "${1:-out/demo}"
