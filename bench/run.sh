#!/usr/bin/env bash
# Runs every benchmark (after scripts/setup.sh), each printing a table and
# writing JSON (and plots) under bench/results/. Not tests: nothing asserts
# a time. Pass --quick for fewer repeats.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
py=.venv/bin/python
$py -c "import matplotlib" 2>/dev/null || $py -m pip install --quiet matplotlib
# OpenBLAS is the GEMM benchmark's yardstick only, never a dependency of ai3.
if ! ldconfig -p | grep -q libopenblas && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get install -y -q libopenblas0 >/dev/null || echo "bench: no OpenBLAS; its column is left out"
fi
repeats=10
[ "${1:-}" = "--quick" ] && repeats=3
gpu=$($py -c "import torch; print(int(torch.cuda.is_available()))")
for script in bench/*.py; do
    case "$script" in
    bench/gpu_*.py)  # on a GPU only; they size their own repeats
        if [ "$gpu" = 1 ]; then
            echo "== $script"
            $py "$script" $([ "$repeats" = 3 ] && echo --quick)
        fi ;;
    bench/call_overhead.py) echo "== $script"; $py "$script" ;;
    *) echo "== $script"; $py "$script" --repeats "$repeats" ;;
    esac
done
