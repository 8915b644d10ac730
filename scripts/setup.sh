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
# clang, for the fuzzer of the C API (scripts/test.sh skips it without
# clang): installed with apt-get where it is missing and this user may.
if ! command -v clang >/dev/null; then
    as_root=()
    if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        as_root=(sudo -n)
    fi
    if ! command -v apt-get >/dev/null; then
        echo "setup: clang is missing and there is no apt-get to install it; fuzzing will be skipped"
    elif [ "$(id -u)" != 0 ] && [ ${#as_root[@]} -eq 0 ]; then
        echo "setup: clang is missing and installing it needs root; fuzzing will be skipped"
    else
        echo "setup: installing clang (for the fuzzer) with apt-get"
        if ! { "${as_root[@]}" apt-get update -qq &&
               "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang; } \
               >/dev/null 2>&1; then
            echo "setup: apt-get could not install clang; fuzzing will be skipped"
        fi
    fi
fi

echo "setup: building and installing ai3 into .venv"
"${pip[@]}" .
