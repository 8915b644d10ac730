"""Epilogues fused into convolutions and linear layers by converted models on
the CPU: an activation alone reading a conv2d's (linear's) output, an add of
such an output and another value (the residual), and an activation after
that add run inside the conv2d (linear). Each network is compared with torch
on fresh random inputs, float32 and float64, including the patterns that
must not fuse."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ai3
from conftest import DTYPES, randn

# float32: relative to the largest output; float64: as conftest's tolerance.
REL_ERR = {torch.float32: 1e-5, torch.float64: 1e-9}
LOOSER = {"winograd": 20}

ACTIVATIONS = {
    "relu": nn.ReLU(),
    "relu6": nn.ReLU6(),
    "hardtanh": nn.Hardtanh(-0.5, 0.25),
    "hardswish": nn.Hardswish(),
    "hardsigmoid": nn.Hardsigmoid(),
    "silu": nn.SiLU(),
    "sigmoid": nn.Sigmoid(),
    "gelu": nn.GELU(),
    "gelu_tanh": nn.GELU(approximate="tanh"),
}

CONV_ALGOS = [a for a in ai3.SUPPORTED_ALGORITHMS["conv2d"]
              if a not in ("torch", "custom", "mps", "metal")]


def check(net, x, dtype, algos=None, scale=1):
    """The converted net against torch's on x, in dtype; returns the output."""
    net = net.eval().to(dtype)
    x = x.to(dtype)
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net, algos)
    got = model(x)
    expected = expected if isinstance(expected, tuple) else (expected,)
    got = got if isinstance(got, tuple) else (got,)
    for g, e in zip(got, expected, strict=True):
        assert g.dtype == dtype and g.shape == e.shape
        err = (g.double() - e.double()).abs().max() / e.double().abs().max().clamp_min(1e-30)
        assert err < REL_ERR[dtype] * scale, f"relative error {err:.3g}"
    return got


def _bn(c):
    """A BatchNorm2d with running statistics of its own (folded into the conv
    before it when converted)."""
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.5, 0.5)
    return bn


class ConvAct(nn.Module):
    """conv → bn → activation, twice (the second depthwise), then 1×1."""

    def __init__(self, act, stride=1):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.bn = _bn(16)
        self.b = nn.Conv2d(16, 16, 3, stride=stride, padding=1, groups=16)
        self.c = nn.Conv2d(16, 24, 1)
        self.act = act

    def forward(self, x):
        y = self.act(self.bn(self.a(x)))
        y = self.act(self.b(y))
        return self.act(self.c(y))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ACTIVATIONS)
@pytest.mark.parametrize("algorithm", CONV_ALGOS)
def test_every_activation_fused_into_every_conv_algorithm(algorithm, name, dtype):
    torch.manual_seed(0)
    # winograd computes the 3x3 stride-1 layers, 'guess' the others
    algos = {"conv2d": lambda m: algorithm if algorithm != "winograd" or
             (m.kernel_size == (3, 3) and m.stride == (1, 1) and m.groups == 1) else "guess"}
    check(ConvAct(ACTIVATIONS[name]), randn((2, 3, 13, 11), seed=1) * 2, dtype, algos,
          LOOSER.get(algorithm, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_functional_activations_fused(dtype):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.convs = nn.ModuleList(nn.Conv2d(8, 8, 3, padding=1) for _ in range(5))

        def forward(self, x):
            x = F.silu(self.convs[0](x))
            x = torch.sigmoid(self.convs[1](x)) * x
            x = F.gelu(self.convs[2](x))
            x = F.hardswish(self.convs[3](x))
            return F.relu6(self.convs[4](x))

    torch.manual_seed(0)
    check(Net(), randn((1, 8, 17, 9), seed=2), dtype)


class Residual(nn.Module):
    """conv → bn → add(conv output, residual) → activation, in every arrangement
    of the add's inputs and of where the residual is computed."""

    def __init__(self, arrangement, act):
        super().__init__()
        self.arrangement = arrangement
        self.conv1 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn1 = _bn(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = _bn(8)
        self.act = act

    def forward(self, x):
        a = self.arrangement
        if a == "input_first":  # add(residual, conv): the residual a graph input
            return self.act(x + self.bn1(self.conv1(x)))
        if a == "input_second":
            return self.act(self.bn1(self.conv1(x)) + x)
        if a == "before":  # the residual computed by a node before the conv
            y = F.relu(self.conv2(x))
            return self.act(self.bn1(self.conv1(y)) + y)
        if a == "after":  # computed by a conv after it: fused into that one
            y = self.bn1(self.conv1(x))
            z = self.bn2(self.conv2(x))
            return self.act(y + z)
        if a == "after_not_conv":  # computed after, by no conv: not fused
            y = self.bn1(self.conv1(x))
            return self.act(y + torch.sigmoid(x))
        if a == "read_twice":  # the residual read by another node too
            y = F.relu(self.conv2(x))
            z = self.act(self.conv1(y) + y)
            return z * y
        if a == "add_read_twice":  # the sum read by two nodes: the add fused, no activation
            s = self.conv1(x) + x
            return self.act(s) + s
        if a == "chain":  # one conv's fused sum is the next one's residual
            s = F.relu(self.conv1(x) + x)
            return self.act(self.conv2(s) + s)
        raise ValueError(a)


ARRANGEMENTS = ["input_first", "input_second", "before", "after", "after_not_conv",
                "read_twice", "add_read_twice", "chain"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["none", "relu", "silu", "gelu"])
@pytest.mark.parametrize("arrangement", ARRANGEMENTS)
def test_residual_add_fused(arrangement, act, dtype):
    torch.manual_seed(0)
    net = Residual(arrangement, nn.Identity() if act == "none" else ACTIVATIONS[act])
    check(net, randn((2, 8, 10, 12), seed=3), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", CONV_ALGOS)
def test_residual_add_fused_into_every_conv_algorithm(algorithm, dtype):
    torch.manual_seed(0)
    net = Residual("before", nn.ReLU6())
    check(net, randn((2, 8, 10, 12), seed=4), dtype, {"conv2d": algorithm},
          LOOSER.get(algorithm, 1))


@pytest.mark.parametrize("dtype", DTYPES)
def test_depthwise_and_strided_residuals(dtype):
    """Depthwise (direct's own path) and strided 1×1 convolutions with a
    residual, as in MobileNet and ResNet's downsampling."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
            self.dw2 = nn.Conv2d(8, 8, 5, stride=2, padding=2, groups=8)
            self.down = nn.Conv2d(8, 8, 1, stride=2)

        def forward(self, x):
            y = F.hardswish(self.dw(x) + x)
            return F.relu(self.dw2(y) + self.down(y))

    torch.manual_seed(0)
    for algorithm in CONV_ALGOS:
        if algorithm != "winograd":
            check(Net(), randn((2, 8, 21, 70), seed=5), dtype, {"conv2d": algorithm})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", ["gemm", "implicit gemm", "implicit precomp gemm"])
def test_epilogue_after_a_sum_over_k_in_blocks(algorithm, dtype):
    """A 3×3 conv over 1200 channels (K = 10800, 1.4 MB of weights): gemm
    unrolls it band by band and sums K in blocks, the bias in the first
    block, the residual add and the activation after the last."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.pre = nn.Conv2d(1200, 32, 1)
            self.conv = nn.Conv2d(1200, 32, 3, padding=1)
            self.bn = _bn(32)

        def forward(self, x):
            r = F.relu(self.pre(x))
            return F.silu(self.bn(self.conv(x)) + r)

    torch.manual_seed(0)
    check(Net(), randn((2, 1200, 6, 20), seed=6), dtype, {"conv2d": algorithm}, 10)


def test_not_fused_where_the_conv_output_is_read_twice():
    """A conv output read by two nodes, or by a node and as a graph output,
    and an add that broadcasts: computed unfused, still right."""

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 3, padding=1)
            self.b = nn.Conv2d(4, 4, 1)
            self.scale = nn.Parameter(torch.randn(1, 4, 1, 1))

        def forward(self, x):
            c = self.a(x)
            s = F.relu(c + x) + c  # c read by two adds
            d = self.b(s)
            return F.silu(d + self.scale), d  # a broadcast add; d is an output too

    torch.manual_seed(0)
    for dtype in DTYPES:
        check(Net(), randn((2, 4, 9, 9), seed=6), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 5, 40])
def test_linear_epilogues(rows, dtype):
    """linear → activation and linear → add of the block's input (a
    transformer's MLP), 2-d and 3-d; few rows take the GEMM's dot-product
    path, more the blocked one."""

    class MLP(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(48, 96)
            self.fc2 = nn.Linear(96, 48)
            self.fc3 = nn.Linear(48, 48)

        def forward(self, x):
            x = x + self.fc2(F.gelu(self.fc1(x)))
            return torch.sigmoid(x + self.fc3(x))

    torch.manual_seed(0)
    check(MLP(), randn((rows, 48), seed=7), dtype)
    check(MLP(), randn((2, rows, 48), seed=8), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_torchvision_residual_blocks(dtype):
    """ResNet's blocks: BasicBlock, and Bottleneck with a downsample (whose
    conv runs after the main branch's last conv)."""
    resnet = pytest.importorskip("torchvision.models.resnet")
    torch.manual_seed(0)
    down = nn.Sequential(nn.Conv2d(16, 32, 1, stride=2, bias=False), _bn(32))
    blocks = nn.Sequential(resnet.BasicBlock(16, 16), resnet.Bottleneck(16, 8, 2, down))
    for m in blocks.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.load_state_dict(_bn(m.num_features).state_dict())
    check(blocks, randn((1, 16, 20, 20), seed=9), dtype)


PLUGIN = r"""
#include "ai3.h"

/* conv2d "via direct": ai3's direct convolution, as a registered algorithm
 * (which computes no epilogue: the graph applies it in a pass after). */
static ai3_status via_direct(const ai3_tensor *input, const ai3_tensor *weight,
                             const ai3_tensor *bias, const ai3_conv2d_params *params,
                             ai3_tensor *output) {
    return ai3_conv2d("direct", input, weight, bias, params, output);
}

/* relu "doubled": 2·max(x, 0), to tell that it ran rather than a fused relu. */
static ai3_status doubled(const ai3_tensor *input, ai3_tensor *output) {
    int64_t n = ai3_tensor_numel(input);
    for (int64_t i = 0; i < n; i++)
        if (input->dtype == AI3_FLOAT32) {
            float x = ((const float *)input->data)[i];
            ((float *)output->data)[i] = x > 0 ? 2 * x : 0;
        } else {
            double x = ((const double *)input->data)[i];
            ((double *)output->data)[i] = x > 0 ? 2 * x : 0;
        }
    return AI3_OK;
}

AI3_PLUGIN_EXPORT ai3_status ai3_init_algorithms(int abi_version) {
    ai3_status s = ai3_plugin_check_abi(abi_version);
    if (s == AI3_OK)
        s = ai3_register_algorithm(AI3_OP_CONV2D, "via direct", AI3_DEVICE_CPU,
                                   (ai3_algorithm_fn)via_direct);
    if (s == AI3_OK)
        s = ai3_register_algorithm(AI3_OP_RELU, "doubled", AI3_DEVICE_CPU,
                                   (ai3_algorithm_fn)doubled);
    return s;
}
"""


def test_registered_algorithms_and_epilogues(tmp_path):
    """A registered conv2d gets its epilogue in a pass after it; a registered
    activation is never fused away (it runs, as itself)."""
    from test_selectors_errors import build_plugin

    ai3.load_algorithms(build_plugin(tmp_path, "epilogue_plugin", PLUGIN))
    torch.manual_seed(0)
    x = randn((2, 8, 10, 12), seed=10)
    for dtype in DTYPES:
        for act in ("none", "silu"):
            net = Residual("before", nn.Identity() if act == "none" else nn.SiLU())
            check(net, x, dtype, {"conv2d": "via direct"})
        net = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()).eval().to(dtype)
        model = ai3.convert(net, {"relu": "doubled"})
        with torch.no_grad():
            torch.testing.assert_close(model(x.to(dtype)), 2 * net(x.to(dtype)))
