"""Shared test helpers: tolerances (the one place they are stated), the
algorithms to sweep, and seeded random tensors."""

import pytest
import torch

from ai3 import _core

DTYPES = (torch.float32, torch.float64)

# Tolerances by dtype, for ai3's output against torch's float64 result on the
# same inputs. Algorithms that trade accuracy for speed scale them up.
TOLERANCES = {
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.float64: dict(rtol=1e-9, atol=1e-9),
    # float32 sums of bfloat16 inputs, rounded once to bfloat16 (relative
    # error at most 2^-9), against float64 on the same bfloat16 inputs
    torch.bfloat16: dict(rtol=2**-8, atol=1e-3),
}
LOOSER_ALGORITHMS = {"winograd": 20}

# Algorithms that may refuse some valid parameters with ai3.UnsupportedError
# (e.g. Winograd handles 3x3, stride 1 only). Every other algorithm must
# compute everything torch does.
LIMITED_ALGORITHMS = {"winograd"}

# What the CPU has: ai3 computes bfloat16 on the CPU only with AVX512_BF16
# (else ai3.UnsupportedError), and uses AMX where it is there.
try:
    with open("/proc/cpuinfo") as f:
        CPU_FLAGS = f.read()
except OSError:
    CPU_FLAGS = ""
HAS_BF16 = "avx512_bf16" in CPU_FLAGS
HAS_AMX = HAS_BF16 and "amx_bf16" in CPU_FLAGS and "amx_tile" in CPU_FLAGS


def algorithms(op):
    """Every algorithm of `op`, plus 'default'."""
    return list(_core.list_algorithms(op)) + ["default"]


def tolerance(dtype, algorithm=None):
    scale = LOOSER_ALGORITHMS.get(algorithm, 1)
    return {k: v * scale for k, v in TOLERANCES[dtype].items()}


def assert_close(actual, expected, algorithm=None):
    """ai3's `actual` against `expected` computed by torch, compared in float64
    with the tolerance of actual's dtype."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    torch.testing.assert_close(actual.double(), expected.double(),
                               **tolerance(actual.dtype, algorithm))


def randn(shape, dtype=torch.float64, seed=0):
    """A reproducible standard normal tensor (never all zeros)."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(tuple(shape), generator=g, dtype=torch.float64).to(dtype)



@pytest.fixture
def no_tf32():
    """float32 without TF32 on CUDA (torch's flags, which ai3 follows),
    restored after the test."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul
