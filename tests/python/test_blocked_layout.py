"""Converted float32 models on the CPU keep activations channel-blocked
(NCHW16c with AVX-512, NCHW8c with AVX2) between the operations that compute
on that layout, converting at the edges: the results must be those of the
plain layout, and the layout must really be used where it can be."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import ai3
from ai3 import _core

from test_zoo import CNNS, build, rel_error, sample

TOL = 1e-4


def blocked_available():
    return "avx2" in open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else False


needs_blocked = pytest.mark.skipif(not blocked_available() or
                                   os.environ.get("AI3_LAYOUT") == "plain" or
                                   os.environ.get("AI3_ISA") == "generic",
                                   reason="the blocked layout needs AVX2 or AVX-512")


def counts(model, shape):
    return _core.graph_layout_counts(model._graph, (tuple(shape),))


def both_layouts(module, x):
    """(blocked output, plain output, blocked nodes, conversions)."""
    model = ai3.convert(module)
    blocked = model(x)
    n_blocked, conversions = counts(model, x.shape)
    _core.graph_set_blocked_layout(model._graph, False)
    plain = model(x)
    assert counts(model, x.shape) == (0, 0)
    _core.graph_set_blocked_layout(model._graph, True)
    assert torch.equal(model(x), blocked)
    return blocked, plain, n_blocked, conversions


@needs_blocked
@pytest.mark.parametrize("name", list(CNNS))
def test_zoo_blocked_matches_plain_and_torch(name):
    size, kwargs = CNNS[name]
    net = build(name, kwargs, size)
    x = sample(size)
    with torch.no_grad():
        expected = net(x)
    blocked, plain, n_blocked, _ = both_layouts(net, x)
    # deep networks: the summation order differs (as between algorithms)
    assert rel_error(blocked, expected) < 1e-3
    assert rel_error(blocked, plain) < 1e-3
    assert n_blocked > 0


class Block(nn.Module):
    """conv → bn → relu6, a depthwise conv, a residual add, squeeze and
    excitation, pooling: the patterns the layout computes on."""

    def __init__(self, c=24, act=nn.ReLU6):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.act = act()
        self.dw = nn.Conv2d(c, c, 3, stride=1, padding=1, groups=c)
        self.pw = nn.Conv2d(c, c, 1)
        self.se_pool = nn.AdaptiveAvgPool2d(1)
        self.se_down = nn.Conv2d(c, 8, 1)
        self.se_up = nn.Conv2d(8, c, 1)
        self.pool = nn.MaxPool2d(3, stride=2, padding=1)
        self.avg = nn.AvgPool2d(2, ceil_mode=True)

    def forward(self, x):
        y = self.act(self.bn(self.stem(x)))
        z = self.pw(self.dw(y)) + y
        s = torch.sigmoid(self.se_up(torch.relu(self.se_down(self.se_pool(z)))))
        z = nn.functional.silu(z * s)
        return self.avg(self.pool(z))


@needs_blocked
@pytest.mark.parametrize("c", [8, 16, 24, 40])
@pytest.mark.parametrize("act", [nn.ReLU6, nn.Hardswish, nn.SiLU])
@pytest.mark.parametrize("batch,size", [(1, 17), (3, 12)])
def test_patterns_match_torch(c, act, batch, size):
    torch.manual_seed(c + batch)
    net = Block(c, act).eval()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 1.5)
        x = torch.randn(batch, 3, size, size)
        expected = net(x)
    blocked, plain, n_blocked, _ = both_layouts(net, x)
    assert rel_error(blocked, expected) < TOL
    assert rel_error(blocked, plain) < TOL
    assert n_blocked >= 8


@needs_blocked
def test_layers_report_the_blocked_convolutions():
    net = Block().eval()
    x = torch.randn(1, 3, 9, 9)
    model = ai3.convert(net)
    model(x)
    convs = [layer for layer in model.layers if layer.op == "conv2d"]
    assert all(layer.resolved.startswith("direct (NCHW") for layer in convs), convs
    assert "direct (NCHW" in repr(convs[0])
    _core.graph_set_blocked_layout(model._graph, False)
    model(x)
    assert not any(layer.resolved.startswith("direct (NCHW") for layer in convs)


class Residual(nn.Module):
    """A residual block of two 3x3 convolutions, then a 1x1 one (which keeps
    the block's output blocked)."""

    def __init__(self, c):
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)
        self.c = nn.Conv2d(c, 8, 1)

    def forward(self, x):
        return self.c(torch.relu(self.b(torch.relu(self.a(x))) + x))


# (batch, channels, size) of a Residual block whose 3x3 convolutions run
# F(4x4, 3x3) (the first two) or F(2x2, 3x3) on the blocked values, the
# epilogue (bias, relu, the residual add) on their output tiles. Each tiling
# once with many tiles (each task transforms its own group of tiles) and once
# with few (the tiles transformed once into values the threads share).
WINOGRAD_CASES = [(2, 64, 56), (1, 64, 28), (1, 384, 14), (1, 64, 14)]


def winograd_error(n, c, size):
    """Relative error of the converted block, and whether its 3x3
    convolutions both ran Winograd on the blocked layout."""
    torch.manual_seed(n * c + size)
    net = Residual(c).eval()
    x = torch.randn(n, c, size, size)
    model = ai3.convert(net)
    with torch.no_grad():
        expected = net(x)
        out = model(x)
    convs = [layer for layer in model.layers if layer.op == "conv2d"]
    blocked = all(layer.resolved.startswith("winograd (NCHW") for layer in convs[:2])
    return rel_error(out, expected), blocked


@needs_blocked
@pytest.mark.parametrize("n,c,size", WINOGRAD_CASES)
def test_3x3_convolutions_run_winograd_on_the_blocked_layout(n, c, size):
    err, blocked = winograd_error(n, c, size)
    assert err < TOL
    assert blocked


@needs_blocked
def test_blocked_winograd_with_avx2():
    script = (f"import sys; sys.path.insert(0, {os.path.dirname(__file__)!r})\n"
              "from test_blocked_layout import WINOGRAD_CASES, winograd_error\n"
              "for case in WINOGRAD_CASES: print(*winograd_error(*case))\n")
    result = subprocess.run([sys.executable, "-c", script],
                            env={**os.environ, "AI3_ISA": "avx2"}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(WINOGRAD_CASES)
    for line in lines:
        err, blocked = line.split()
        assert float(err) < TOL
        assert blocked == "True"


class Outputs(nn.Module):
    """Outputs taken straight from convolutions and activations (views of
    a fused operation), a value read by a conv and by flatten, and a conv
    with a named algorithm between blocked ones."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(16, 32, 3, padding=1)
        self.b = nn.Conv2d(32, 32, 1)
        self.c = nn.Conv2d(32, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 6 * 6, 10)

    def forward(self, x):
        a = torch.relu(self.a(x))
        b = self.b(a)
        c = self.c(b) + a
        return b, torch.relu(c), self.fc(torch.flatten(a, 1))


@needs_blocked
def test_graph_outputs_views_and_named_algorithms_stay_plain():
    torch.manual_seed(0)
    net = Outputs().eval()
    x = torch.randn(2, 16, 6, 6)
    with torch.no_grad():
        expected = net(x)
    for algos in (None, {"conv2d": ["guess", "gemm", "guess"]}):
        model = ai3.convert(net, algos)
        got = model(x)
        for g, e in zip(got, expected):
            assert rel_error(g, e) < TOL
        n_blocked, conversions = counts(model, x.shape)
        assert n_blocked >= 1 and conversions >= 1


def test_empty_batches_and_odd_sizes():
    torch.manual_seed(0)
    net = Block().eval()
    model = ai3.convert(net)
    for shape in [(0, 3, 9, 9), (2, 3, 1, 1), (1, 3, 2, 13)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            expected = net(x)
        got = model(x)
        assert got.shape == expected.shape
        if expected.numel():
            assert rel_error(got, expected) < TOL
    assert counts(model, (0, 3, 9, 9)) == (0, 0)


def test_turning_the_layout_off_is_plain_everywhere():
    torch.manual_seed(0)
    net = Block().eval()
    x = torch.randn(1, 3, 9, 9)
    model = ai3.convert(net)
    _core.graph_set_blocked_layout(model._graph, False)
    assert counts(model, x.shape) == (0, 0)
    with torch.no_grad():
        assert rel_error(model(x), net(x)) < TOL


def test_float64_and_bfloat16_graphs_stay_plain():
    net = Block().eval()
    x = torch.randn(1, 3, 9, 9, dtype=torch.float64)
    model = ai3.convert(net, dtype=torch.float64)
    assert counts(model, x.shape) == (0, 0)


SCRIPT = r"""
import torch, torchvision, ai3
from ai3 import _core
torch.manual_seed(0)
net = torchvision.models.mobilenet_v2(weights=None).eval()
x = torch.randn(2, 3, 64, 64)
model = ai3.convert(net)
with torch.no_grad():
    want = net(x)
got = model(x)
print(_core.graph_layout_counts(model._graph, (tuple(x.shape),))[0],
      ((got - want).norm() / want.norm()).item())
"""


@needs_blocked
@pytest.mark.parametrize("env,blocked", [({"AI3_ISA": "avx2"}, True),
                                         ({"AI3_ISA": "generic"}, False),
                                         ({"AI3_LAYOUT": "plain"}, False)])
def test_isa_and_environment_choose_the_layout(env, blocked):
    result = subprocess.run([sys.executable, "-c", SCRIPT], env={**os.environ, **env},
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    n_blocked, err = result.stdout.split()
    assert (int(n_blocked) > 0) == blocked
    assert float(err) < 1e-3


class InvertedResidual(nn.Module):
    """MobileNetV2's block: a 1x1 expansion, a depthwise conv, a 1x1
    projection (and the shortcut at stride 1); `stem`: a conv before it, else
    the expansion reads the network's input."""

    def __init__(self, c, k, stride, act, stem):
        super().__init__()
        self.stem = nn.Conv2d(c, c, 3, padding=1) if stem else nn.Identity()
        self.expand = nn.Sequential(nn.Conv2d(c, 6 * c, 1), nn.BatchNorm2d(6 * c), act())
        self.dw = nn.Sequential(nn.Conv2d(6 * c, 6 * c, k, stride, k // 2, groups=6 * c),
                                nn.BatchNorm2d(6 * c), act())
        self.project = nn.Conv2d(6 * c, c, 1)
        self.shortcut = stride == 1

    def forward(self, x):
        x = self.stem(x)
        y = self.project(self.dw(self.expand(x)))
        return y + x if self.shortcut else y


@needs_blocked
@pytest.mark.parametrize("stem", [False, True])
@pytest.mark.parametrize("k,stride", [(3, 1), (3, 2), (5, 2)])
@pytest.mark.parametrize("act", [nn.ReLU6, nn.Hardswish, nn.SiLU])
@pytest.mark.parametrize("batch,size", [(1, 15), (2, 28)])
def test_expansion_runs_inside_the_depthwise_conv(stem, k, stride, act, batch, size):
    torch.manual_seed(k + stride + batch)
    net = InvertedResidual(8, k, stride, act, stem).eval()
    with torch.no_grad():
        for bn in (net.expand[1], net.dw[1]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 1.5)
        x = torch.randn(batch, 8, size, size)
        expected = net(x)
    blocked, plain, _, _ = both_layouts(net, x)
    assert rel_error(blocked, expected) < TOL
    assert rel_error(blocked, plain) < TOL
    model = ai3.convert(net)
    model(x)
    expand = next(layer for layer in model.layers if layer.weight_shape == (48, 8, 1, 1))
    assert "inside the depthwise conv2d" in expand.resolved, model


@needs_blocked
def test_the_expansion_computed_inside_takes_no_memory():
    # the expanded tensor (the block's largest) is never stored: the arena
    # holds less than it and the depthwise conv's output, which a plan
    # storing it would hold at once
    torch.manual_seed(0)
    net = nn.Sequential(InvertedResidual(16, 3, 1, nn.ReLU6, True),
                        nn.Conv2d(16, 16, 3, padding=1)).eval()
    model = ai3.convert(net)
    x = torch.randn(1, 16, 32, 32)
    model(x)
    assert any("inside the depthwise" in (layer.resolved or "") for layer in model.layers), model
    expanded_bytes = 96 * 32 * 32 * 4
    assert model.memory(x.shape)["peak"] < 2 * expanded_bytes
    with torch.no_grad():
        assert rel_error(model(x), net(x)) < TOL


class SharedExpansion(nn.Module):
    """An expansion also read by another operation, and a depthwise conv
    whose output is the network's: neither runs fused."""

    def __init__(self):
        super().__init__()
        self.expand = nn.Conv2d(8, 32, 1)
        self.dw = nn.Conv2d(32, 32, 3, padding=1, groups=32)
        self.expand2 = nn.Conv2d(8, 32, 1)
        self.dw2 = nn.Conv2d(32, 32, 3, padding=1, groups=32)

    def forward(self, x):
        e = torch.relu(self.expand(x))
        return self.dw(e) + e, self.dw2(self.expand2(x))


@needs_blocked
def test_expansions_read_twice_or_ending_the_network_run_on_their_own():
    torch.manual_seed(0)
    net = SharedExpansion().eval()
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net)
    out = model(x)
    for a, b in zip(out, expected):
        assert rel_error(a, b) < TOL
    assert not any("inside" in (layer.resolved or "") for layer in model.layers), model
