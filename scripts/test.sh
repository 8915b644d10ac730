#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs every test: the C unit
# tests of libai3 and the Python test suite. Exits non-zero if any fails.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

status=0
echo "== C unit tests"
# (.venv's Python finds torch's cuDNN and cuBLAS for the CUDA backend's tests)
if cmake -S . -B build/ctest -DAI3_BUILD_TESTS=ON -DCMAKE_BUILD_TYPE=Release \
         -DPython_EXECUTABLE="$PWD/.venv/bin/python" >/dev/null &&
   cmake --build build/ctest -j 2 >/dev/null; then
    ./build/ctest/ai3_tests || status=1
    if [ -x build/ctest/ai3_cuda_tests ]; then
        echo "== CUDA kernel tests"
        ./build/ctest/ai3_cuda_tests || status=1
    fi
else
    echo "C unit tests: build failed"
    status=1
fi

echo "== Python tests"
.venv/bin/python -m pytest -q "$@" || status=1
exit $status
