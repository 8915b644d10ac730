#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs every test: the C unit
# tests of libai3 (also under ASan and UBSan), a short run of the C API's
# fuzzer and the Python test suite. Exits non-zero if any fails.
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

echo "== C unit tests under AddressSanitizer and UndefinedBehaviorSanitizer"
# A second build of the C tests (no CUDA backend) in which the first ASan or
# UBSan report (leaks included) stops the run with a failure.
san_flags="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow"
san_flags="$san_flags -fno-sanitize-recover=all"
if cmake -S . -B build/sanitize -DAI3_BUILD_TESTS=ON -DAI3_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug \
         -DCMAKE_C_FLAGS="$san_flags" >/dev/null &&
   cmake --build build/sanitize -j 2 --target ai3_tests >/dev/null; then
    UBSAN_OPTIONS=print_stacktrace=1 ./build/sanitize/ai3_tests
    san_status=$?
    if [ $san_status -ne 0 ]; then
        echo "C unit tests under sanitizers: FAILED (exit code $san_status; a report stops the run)"
        status=1
    fi
else
    echo "C unit tests under sanitizers: build failed"
    status=1
fi

echo "== Fuzzing the C API (libFuzzer, ${AI3_FUZZ_SECONDS:-5} s)"
# The fuzzer (tests/fuzz/) replays its corpus, then mutates it for a few
# seconds; any crash, hang, leak or sanitizer report fails the test command.
probe=$(mktemp -d)
if ! command -v clang >/dev/null; then
    echo "fuzz: skipped: clang is not installed (scripts/setup.sh installs it with apt where it can)"
elif ! echo 'int LLVMFuzzerTestOneInput(const char *d, unsigned long n) { return 0; }' |
       clang -x c -fsanitize=fuzzer,address,undefined -o "$probe/probe" - >/dev/null 2>&1; then
    echo "fuzz: skipped: this clang cannot link libFuzzer with the sanitizers"
elif cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DAI3_BUILD_FUZZ=ON -DAI3_BUILD_TESTS=OFF \
           -DAI3_CUDA=OFF -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS=-O1 >/dev/null &&
     cmake --build build/fuzz -j 2 --target ai3_fuzz >/dev/null; then
    rm -rf build/fuzz/new-inputs && mkdir -p build/fuzz/new-inputs
    ./build/fuzz/ai3_fuzz -max_total_time="${AI3_FUZZ_SECONDS:-5}" -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix=build/fuzz/ build/fuzz/new-inputs tests/fuzz/corpus \
        >build/fuzz/fuzz.log 2>&1
    fuzz_status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' build/fuzz/fuzz.log)
    if [ $fuzz_status -eq 0 ]; then
        echo "fuzz: ${runs:-?} executions, no findings"
    else
        grep -E -A25 "^==[0-9]+==|runtime error|ai3 fuzz:|ERROR: libFuzzer" build/fuzz/fuzz.log | head -60
        saved=$(sed -n 's/.*Test unit written to //p' build/fuzz/fuzz.log | tail -1)
        echo "fuzz: FAILED after ${runs:-?} executions; input ${saved:-not saved}" \
             "(replay: ./build/fuzz/ai3_fuzz ${saved:-<input>}; log: build/fuzz/fuzz.log)"
        status=1
    fi
else
    echo "fuzz: build failed"
    status=1
fi
rm -rf "$probe"

echo "== Python tests"
.venv/bin/python -m pytest -q "$@" || status=1
exit $status
