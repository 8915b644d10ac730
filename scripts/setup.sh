#!/usr/bin/env bash
# Creates (or reuses) the virtual environment .venv and installs torch,
# torchvision, the test tools and ai3 itself (built from source) into it.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet --disable-pip-version-check)
if ! .venv/bin/python -c "import torch, torchvision, pytest, hypothesis" 2>/dev/null; then
    echo "setup: installing torch, torchvision, pytest, hypothesis into .venv"
    "${pip[@]}" torch torchvision pytest hypothesis numpy
fi
echo "setup: building and installing ai3 into .venv"
"${pip[@]}" .
