#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs the demo: the seed's two
# examples on VGG16 and a small ConvNet, with a per-layer table.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python scripts/demo.py "$@"
