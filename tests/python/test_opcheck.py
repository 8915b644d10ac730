"""torch.library.opcheck on every ai3 custom op ``ai3::<op>``, over a sweep
of parameters, in float32 and float64 on the CPU (and float32, float16,
bfloat16 and float64 on a GPU). opcheck tests the schema, the fake
(meta) implementation against the real one, the autograd registration and
AOT dispatch with dynamic shapes: what torch.compile and torch's other
transforms rely on."""

import pytest
import torch

from ai3 import UnsupportedError, _ops
from conftest import randn

GPU = torch.cuda.is_available() and _ops.cuda_backend()[0]


class T:
    """A tensor argument to make per dtype and device: its shape, and
    `positive` for values that must be positive (variances)."""

    def __init__(self, *shape, positive=False):
        self.shape, self.positive = shape, positive


def case(op, *args):
    return (op, args)


X = T(2, 4, 8, 8)
CONV2D = [
    # input, weight, bias, stride, padding (top, bottom, left, right), dilation, groups,
    # padding_mode, algorithm, keep_plan
    case("conv2d", X, T(6, 4, 3, 3), T(6), [1, 1], [1, 1, 1, 1], [1, 1], 1, "zeros", "direct",
         True),
    case("conv2d", T(2, 4, 9, 7), T(6, 2, 3, 2), T(6), [2, 1], [1, 0, 2, 1], [1, 2], 2,
         "reflect", "smm", True),
    case("conv2d", T(1, 3, 8, 8), T(4, 3, 1, 1), None, [1, 1], [0, 0, 0, 0], [1, 1], 1, "zeros",
         "gemm", True),
    case("conv2d", T(2, 4, 10, 10), T(4, 1, 3, 3), T(4), [2, 2], [1, 1, 1, 1], [1, 1], 4,
         "replicate", "implicit gemm", True),
    case("conv2d", T(4, 7, 9), T(6, 4, 3, 3), T(6), [1, 2], [2, 1, 0, 1], [2, 1], 1, "circular",
         "implicit precomp gemm", True),
    case("conv2d", X, T(5, 4, 3, 3), T(5), [1, 1], [1, 1, 1, 1], [1, 1], 1, "zeros", "winograd",
         True),
    case("conv2d", X, T(4, 4, 4, 4), None, [1, 1], [1, 2, 1, 2], [1, 1], 1, "zeros", "guess",
         True),  # padding='same' with an even kernel
    case("conv2d", T(1, 4, 11, 12), T(6, 2, 5, 3), T(6), [3, 2], [2, 2, 1, 1], [2, 1], 2,
         "zeros", "default", False),
    case("conv2d", T(6, 10, 10), T(9, 2, 2, 3), None, [2, 3], [0, 0, 0, 0], [2, 2], 3, "zeros",
         "direct", True),
    case("conv2d", T(2, 4, 6, 6), T(4, 4, 3, 3), T(4), [1, 1], [2, 2, 2, 2], [1, 1], 1,
         "reflect", "winograd", False),
    case("conv2d", T(0, 4, 6, 6), T(4, 4, 3, 3), T(4), [1, 1], [1, 1, 1, 1], [1, 1], 1, "zeros",
         "gemm", True),  # an empty batch
]
LINEAR = [
    case("linear", T(3, 5), T(4, 5), None, "default", False),
    case("linear", T(5), T(4, 5), T(4), "gemm", True),
    case("linear", T(2, 3, 5), T(7, 5), T(7), "default", True),
    case("linear", T(2, 1, 3, 6), T(1, 6), None, "gemm", False),
    case("linear", T(0, 5), T(4, 5), T(4), "gemm", True),  # an empty batch
]
POOLS = [
    # kernel, stride, padding, dilation, ceil_mode
    case("maxpool2d", X, [3, 3], [2, 2], [1, 1], [1, 1], True, "default"),
    case("maxpool2d", T(3, 7, 9), [2, 3], [1, 2], [0, 1], [2, 1], False, "direct"),
    case("maxpool2d", T(1, 2, 9, 9), [3, 2], [3, 2], [1, 0], [1, 1], True, "direct"),
    # kernel, stride, padding, ceil_mode, count_include_pad, divisor_override
    case("avgpool2d", X, [3, 2], [2, 2], [1, 0], False, False, None, "default"),
    case("avgpool2d", T(3, 7, 9), [3, 3], [2, 2], [1, 1], True, True, None, "direct"),
    case("avgpool2d", X, [2, 2], [1, 2], [0, 1], True, False, 3, "direct"),
    case("adaptiveavgpool2d", X, [3, 5], "default"),
    case("adaptiveavgpool2d", T(3, 7, 9), [7, 2], "direct"),
    case("adaptiveavgpool2d", T(1, 2, 3, 3), [5, 4], "direct"),  # upsampling
    case("maxpool2d", T(0, 2, 5, 5), [2, 2], [2, 2], [0, 0], [1, 1], False, "direct"),
]
ELEMENTWISE = [
    case("relu", X, "default"),
    case("relu", T(3, 5), "direct"),
    case("relu", T(0, 3), "direct"),
    case("flatten", X, 1, -1, "default"),
    case("flatten", X, 0, 2, "direct"),
    case("flatten", T(3, 4), -1, -1, "direct"),
    case("hardtanh", X, -1.0, 1.0, "default"),
    case("hardtanh", T(5, 6), 0.0, 6.0, "direct"),
    case("sigmoid", X, "default"),
    case("hardsigmoid", X, "direct"),
    case("hardswish", T(3, 8), "default"),
    case("silu", X, "default"),
    case("gelu", X, "none", "default"),
    case("gelu", T(4, 5), "tanh", "direct"),
]
NORMS = [
    # running_mean, running_var, weight, bias, eps
    case("batchnorm2d", X, T(4), T(4, positive=True), T(4), T(4), 1e-5, "default"),
    case("batchnorm2d", T(4, 5, 6), T(4), T(4, positive=True), None, None, 1e-3, "direct"),
    case("batchnorm2d", X, T(4), T(4, positive=True), T(4), None, 0.1, "direct"),
    # normalized_ndim, weight, bias, eps
    case("layernorm", T(2, 3, 8), 1, T(8), T(8), 1e-5, "default"),
    case("layernorm", T(2, 3, 4), 2, None, None, 1e-6, "direct"),
    case("layernorm", T(2, 3, 4), 3, T(2, 3, 4), None, 1e-5, "direct"),
]
NETWORK_OPS = [
    case("add", X, X, "default"),
    case("add", X, T(4, 1, 1), "direct"),  # broadcast b
    case("add", T(1, 8), T(3, 1), "direct"),  # broadcast both
    case("mul", X, T(2, 4, 1, 1), "default"),  # squeeze-and-excitation
    case("mul", T(5), T(3, 5), "direct"),
    case("cat", [X, T(2, 3, 8, 8)], 1, "default"),
    case("cat", [T(3, 4), T(3, 4), T(3, 4)], -1, "direct"),
    case("cat", [T(1, 2, 3)], 0, "direct"),
    case("mean", X, [2, 3], False, "default"),
    case("mean", X, [-1], True, "direct"),
    case("mean", T(3, 4), [], False, "direct"),  # every dimension
    case("permute", X, [0, 2, 3, 1], "default"),
    case("permute", T(3, 4, 5), [2, 0, 1], "direct"),
    case("softmax", X, 1, "default"),
    case("softmax", T(3, 7), -1, "direct"),
]
CASES = CONV2D + LINEAR + POOLS + ELEMENTWISE + NORMS + NETWORK_OPS


def test_every_custom_op_is_swept():
    registered = {name for name, _ in _ops._IMPLS.values()}
    assert registered == {op for op, _ in CASES}


def case_id(c):
    op, args = c
    shown = []
    for a in args:
        if isinstance(a, T):
            shown.append("x".join(map(str, a.shape)))
        elif isinstance(a, list) and a and isinstance(a[0], T):
            shown.append("+".join("x".join(map(str, t.shape)) for t in a))
        else:
            shown.append(str(a).replace(" ", ""))
    return f"{op}-" + "-".join(shown)


def materialise(args, dtype, device, seed=0):
    """The op's arguments: every T as a fresh random tensor that requires
    grad (so the autograd registration is checked too)."""
    def make(a):
        nonlocal seed
        if isinstance(a, list):
            return [make(t) for t in a]
        if not isinstance(a, T):
            return a
        seed += 1
        t = randn(a.shape, torch.float64, seed)
        if a.positive:
            t = t.abs() + 0.5
        return t.to(dtype=dtype, device=device).requires_grad_()
    return tuple(make(a) for a in args)


def opcheck(op, args, dtype, device):
    torch.library.opcheck(getattr(torch.ops.ai3, op), materialise(args, dtype, device))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_opcheck(c, dtype):
    opcheck(*c, dtype, "cpu")


GPU_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64]


@pytest.mark.cuda
@pytest.mark.skipif(not GPU, reason="needs a CUDA device and ai3's CUDA backend")
@pytest.mark.parametrize("dtype", GPU_DTYPES, ids=str)
@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_opcheck_cuda(c, dtype):
    op, args = c
    if op == "conv2d":
        # cuDNN's named algorithms may refuse a layer (with a clear error,
        # tested in test_cuda.py); opcheck needs one that computes it.
        try:
            with torch.no_grad():
                getattr(torch.ops.ai3, op)(*materialise(args, dtype, "cuda"))
        except UnsupportedError as e:
            pytest.skip(str(e))
    opcheck(op, args, dtype, "cuda")
