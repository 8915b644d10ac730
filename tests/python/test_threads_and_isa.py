"""The same results whichever thread pool and instruction set runs them:
ai3's own pthread pool (AI3_THREAD_POOL=own) and each ISA the CPU has
(AI3_ISA), each in a fresh process since both are chosen once."""
import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import torch, torch.nn.functional as F
import ai3
from ai3 import _ops
torch.manual_seed(0)
worst = 0.0
for algorithm in ai3.SUPPORTED_ALGORITHMS["conv2d"]:
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(2, 16, 13, 11, dtype=dtype)
        w = torch.randn(24, 16, 3, 3, dtype=dtype)
        b = torch.randn(24, dtype=dtype)
        want = F.conv2d(x, w, b, padding=1)
        got = _ops.conv2d(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros", algorithm)
        worst = max(worst, ((got - want).abs().max() / want.abs().max()).item())
lin = _ops.linear(torch.randn(5, 40), torch.randn(30, 40), torch.randn(30), "gemm")
print(worst)
"""


def _run(env):
    result = subprocess.run([sys.executable, "-c", SCRIPT], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return float(result.stdout.strip().splitlines()[-1])


def test_own_thread_pool_gives_the_same_results():
    assert _run({"AI3_THREAD_POOL": "own", "AI3_NUM_THREADS": "2"}) < 1e-3


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_each_isa_gives_the_same_results(isa):
    # An ISA the CPU lacks falls back to the best it has: still correct.
    assert _run({"AI3_ISA": isa}) < 1e-3
