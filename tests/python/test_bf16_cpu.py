"""bfloat16 on the CPU (AVX512_BF16): swapped conv2d and linear for each
algorithm that computes it, every other operation (computed in float32 by
the generic plans), converted networks, and the errors. On a CPU with AMX
the GEMM runs on AMX tiles; the conv2d, linear and fused residual cases run
again, in a subprocess, on the AVX512_BF16 kernel (AI3_BF16_KERNEL=avx512).
Each result is compared with torch in float64 on the same bfloat16 inputs
(tolerance in conftest.py); whole networks with torch's float32 network, as
a relative error of the output's norm below 2e-2."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ai3
from ai3 import _ops
from conftest import HAS_AMX, HAS_BF16, assert_close

needs_bf16 = pytest.mark.skipif(not HAS_BF16, reason="the CPU has no AVX512_BF16")

BF16_CONV2D = ["direct", "gemm", "implicit gemm", "implicit precomp gemm", "guess", "default"]
NET_REL_ERR = 2e-2


def randn(shape, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g).bfloat16()


# (C_in, C_out, kernel, stride, padding (t, b, l, r), dilation, groups, mode, input H×W)
CONV_CASES = [
    (16, 24, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros", (13, 11)),
    (32, 64, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1), 1, "zeros", (7, 9)),
    (64, 33, (1, 1), (2, 2), (0, 0, 0, 0), (1, 1), 1, "zeros", (14, 14)),
    (8, 8, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1), 8, "zeros", (15, 10)),
    (5, 7, (5, 3), (2, 1), (2, 1, 0, 3), (1, 2), 1, "reflect", (12, 13)),
    (12, 18, (3, 3), (1, 1), (1, 1, 2, 2), (2, 1), 3, "circular", (9, 17)),
    (3, 40, (7, 7), (2, 2), (3, 3, 3, 3), (1, 1), 1, "replicate", (30, 29)),
    (64, 96, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros", (17, 19)),  # K odd pairs: 576
    (33, 17, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1), 1, "zeros", (6, 40)),  # K = 297, odd
]


def conv_reference(x, w, b, stride, pad, dilation, groups, mode):
    x = x.double()
    t, bo, l, r = pad
    if mode != "zeros":
        x = F.pad(x, (l, r, t, bo), mode=mode)
    elif any(pad):
        x = F.pad(x, (l, r, t, bo))
    return F.conv2d(x, w.double(), None if b is None else b.double(), stride, 0, dilation, groups)


@needs_bf16
@pytest.mark.parametrize("algorithm", BF16_CONV2D)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("batched", [True, False])
def test_conv2d_bf16_matches_torch(algorithm, case, batched):
    c_in, c_out, k, stride, pad, dilation, groups, mode, hw = CONV_CASES[case]
    x = randn((2, c_in, *hw) if batched else (c_in, *hw), seed=case)
    w = randn((c_out, c_in // groups, *k), seed=100 + case)
    b = randn((c_out,), seed=200 + case) if case % 2 == 0 else None
    got = _ops.conv2d(x, w, b, stride, pad, dilation, groups, mode, algorithm)
    assert got.dtype == torch.bfloat16
    want = conv_reference(x if batched else x[None], w, b, stride, pad, dilation, groups, mode)
    assert_close(got if batched else got[None], want, algorithm)


@needs_bf16
@pytest.mark.parametrize("rows, features, out", [(1, 64, 10), (5, 300, 77), (40, 129, 33),
                                                 (3, 2048, 1000)])
def test_linear_bf16_matches_torch(rows, features, out):
    x, w, b = randn((rows, features), 1), randn((out, features), 2), randn((out,), 3)
    got = _ops.linear(x, w, b, "gemm")
    assert got.dtype == torch.bfloat16
    assert_close(got, F.linear(x.double(), w.double(), b.double()))


@needs_bf16
@pytest.mark.parametrize("algorithm", ["smm", "winograd"])
def test_conv2d_algorithms_without_bf16_say_so(algorithm):
    x, w = randn((1, 16, 8, 8), 0), randn((16, 16, 3, 3), 1)
    with pytest.raises(ai3.UnsupportedError, match=f"'{algorithm}' does not compute bfloat16"):
        _ops.conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros", algorithm)


class _EveryOp(nn.Module):
    """The operations converted ResNet, MobileNetV2, VGG and EfficientNet
    networks use, the memory-bound ones computed in float32 for bfloat16."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pool = nn.MaxPool2d(3, 2, 1)
        self.avg = nn.AvgPool2d(2)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(16, 4, 1), nn.SiLU(),
                                nn.Conv2d(4, 16, 1), nn.Sigmoid())
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        y = F.relu(self.bn(self.conv(x)))
        y = F.hardswish(self.dw(y)) + F.relu6(y)
        y = y * self.se(y)
        y = self.avg(self.pool(y))
        return self.fc(torch.flatten(y, 1))


def rel_err(got, want):
    return ((got.float() - want).norm() / want.norm()).item()


class _Residuals(nn.Module):
    """conv → add of a residual → activation, which converted bfloat16 models
    run as one conv2d whose GEMM adds the residual (and clamps, for relu and
    relu6) before rounding; other activations run after it."""

    def __init__(self, act):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(16, 16, k, padding=k // 2) for k in (3, 1, 3, 1))
        self.strided = nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.down = nn.Conv2d(16, 16, 1, stride=2)
        self.act = act

    def forward(self, x):
        y = self.act(self.convs[0](x) + x)  # the residual a graph input
        y = self.act(y + self.convs[1](y))  # the add's inputs the other way round
        y = self.act(self.convs[2](y) + self.convs[3](y))  # fused into the later conv
        return self.act(self.strided(y) + self.down(y))


@needs_bf16
@pytest.mark.parametrize("act", ["none", "relu", "relu6", "silu"])
@pytest.mark.parametrize("algorithm", BF16_CONV2D)
def test_residual_adds_fused_in_bf16(algorithm, act):
    torch.manual_seed(0)
    acts = {"none": nn.Identity(), "relu": nn.ReLU(), "relu6": nn.ReLU6(), "silu": nn.SiLU()}
    net = _Residuals(acts[act]).eval().bfloat16()
    x = randn((2, 16, 13, 11), seed=7)
    model = ai3.convert(net, {"conv2d": algorithm}, dtype=torch.bfloat16)
    got = model(x)
    assert got.dtype == torch.bfloat16
    with torch.no_grad():
        want = net.double()(x.double())
    # each stored value rounds to 8 bits; a misplaced residual is off by O(1)
    err = (got.double() - want).abs().max() / want.abs().max()
    assert err < 2e-2, f"relative error {err:.3g}"


@needs_bf16
@pytest.mark.parametrize("fold_batchnorm", [True, False])
def test_every_op_converted_in_bf16(fold_batchnorm):
    net = _EveryOp().eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-1, 1)
        net.bn.running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 16, 16)
    model = ai3.convert(net, dtype=torch.bfloat16, fold_batchnorm=fold_batchnorm)
    got = model(x.bfloat16())
    assert got.dtype == torch.bfloat16
    with torch.no_grad():
        want = net.bfloat16().float()(x.bfloat16().float())  # the same bfloat16 weights
    assert rel_err(got, want) < NET_REL_ERR


@needs_bf16
def test_swapped_network_in_bf16():
    net = _EveryOp().eval().bfloat16()
    x = torch.randn(2, 3, 16, 16).bfloat16()
    with torch.no_grad():
        want = _EveryOp().eval()
        want.load_state_dict({k: v.float() for k, v in net.state_dict().items()})
        want = want(x.float())
        for op in ("conv2d", "linear", "maxpool2d", "avgpool2d", "adaptiveavgpool2d",
                   "batchnorm2d", "relu", "flatten"):
            ai3.swap_operation(op, net)
        got = net(x)
    assert got.dtype == torch.bfloat16
    assert rel_err(got, want) < NET_REL_ERR


@needs_bf16
@pytest.mark.parametrize("name", ["resnet18", "resnet50", "mobilenet_v2"])
def test_converted_network_in_bf16(name):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        want = net(x)
    model = ai3.convert(net, dtype=torch.bfloat16)
    assert model.dtype == torch.bfloat16
    got = model(x.bfloat16())
    assert got.dtype == torch.bfloat16
    assert rel_err(got, want) < NET_REL_ERR


@pytest.mark.skipif(not HAS_AMX, reason="no AMX: the GEMM runs on AVX512_BF16 already")
def test_conv2d_and_linear_bf16_on_the_avx512_kernel():
    # the kernel is chosen once per process: these cases (and the fused
    # residuals) again, in a fresh one
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
         "conv2d_bf16_matches_torch or linear_bf16_matches_torch or residual_adds_fused"],
        env={**os.environ, "AI3_BF16_KERNEL": "avx512"}, capture_output=True, text=True,
        timeout=600, cwd=os.path.dirname(__file__))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout, result.stdout[-3000:]


NO_BF16_SCRIPT = r"""
import torch, ai3
from ai3 import _ops
net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
for call in (lambda: ai3.convert(net, dtype=torch.bfloat16),
             lambda: _ops.relu(torch.randn(3).bfloat16(), "default")):
    try:
        call()
        print("no error")
    except ai3.UnsupportedError as e:
        print("UnsupportedError:", e)
"""


def test_bf16_without_avx512_bf16_is_a_clear_error():
    # AI3_ISA=avx2 leaves the AVX-512 instructions out, as a CPU without them
    result = subprocess.run([sys.executable, "-c", NO_BF16_SCRIPT],
                            env={**os.environ, "AI3_ISA": "avx2"}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 2 and all(line.startswith("UnsupportedError") for line in lines), lines
    assert all("AVX512_BF16" in line for line in lines), lines
