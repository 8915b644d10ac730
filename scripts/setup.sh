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
# The CUDA backend is built where nvcc is found, against the cuDNN and
# cuBLAS of torch's nvidia-* wheels (pip builds in an isolated environment,
# so their folder is passed on).
if nvidia=$(.venv/bin/python -c "import nvidia, os; print(os.path.dirname(nvidia.__file__) if nvidia.__file__ else list(nvidia.__path__)[0])" 2>/dev/null); then
    export AI3_NVIDIA_ROOT=$nvidia
fi
echo "setup: building and installing ai3 into .venv"
"${pip[@]}" .
