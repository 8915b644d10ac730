"""ai3.convert on a CUDA device: the torchvision zoo against torch on the GPU,
CUDA-graph replay (new shapes, inputs at other addresses, capture off),
dtypes, moves between devices, and bad input. Marked `cuda`: they skip
without a GPU and ai3's CUDA backend.

Tolerances (relative error of the output, L2): float32 without TF32 1e-3
(as on the CPU), float64 1e-9; a float16 / bfloat16 model against torch in
float32 on the same weights: 3e-2 / 1e-1, or twice the error of torch's own
network in that dtype where that is larger (deep bfloat16 networks)."""

import copy

import pytest
import torch

import ai3
from test_cuda import HAS_GPU, cuda
from test_zoo import CNNS, build, check_output, rel_error, sample

HALF_TOLERANCE = {torch.float16: 3e-2, torch.bfloat16: 1e-1}


# float32 without TF32 unless a test turns it on (conftest.no_tf32)
pytestmark = pytest.mark.usefixtures("no_tf32")


@cuda
@pytest.mark.parametrize("name", list(CNNS))
def test_zoo_converts_on_cuda_and_matches_torch(name):
    size, kwargs = CNNS[name]
    net = build(name, kwargs, size).cuda()
    x = sample(size).cuda()
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net)
    assert model.device.type == "cuda"
    first = model(x)   # operation by operation
    second = model(x)  # captured as a CUDA graph
    third = model(x.clone())  # replayed, the input at another address
    assert first.is_cuda
    check_output(first, expected)
    for out in (second, third):
        assert rel_error(out, first) < 1e-6


class Fusions(torch.nn.Module):
    """Every activation after a conv2d and after a linear (fused into their
    epilogue on CUDA), and ConvNeXt's permute / layernorm / linear / permute
    / layer scale / residual pattern (fused), next to variants of it that
    must not be fused: a scale that is no constant, a broadcast residual, a
    permuted value also read elsewhere."""

    ACTS = (torch.nn.ReLU(), torch.nn.Hardtanh(-0.5, 0.75), torch.nn.ReLU6(), torch.nn.Sigmoid(),
            torch.nn.Hardsigmoid(), torch.nn.Hardswish(), torch.nn.SiLU(), torch.nn.GELU(),
            torch.nn.GELU(approximate="tanh"))

    def __init__(self, c=24):
        super().__init__()
        self.convs = torch.nn.ModuleList(torch.nn.Conv2d(c, c, 3, padding=1) for _ in self.ACTS)
        self.acts = torch.nn.ModuleList(self.ACTS)
        self.fc1 = torch.nn.ModuleList(torch.nn.Linear(c, 2 * c) for _ in self.ACTS)
        self.fc2 = torch.nn.Linear(2 * c, c)
        self.norm = torch.nn.LayerNorm(c, eps=1e-6)
        self.scale = torch.nn.Parameter(torch.rand(c, 1, 1) + 0.5)

    def block(self, x, i):
        y = self.norm(x.permute(0, 2, 3, 1))
        y = self.fc2(self.acts[i](self.fc1[i](y)))
        return y.permute(0, 3, 1, 2)

    def forward(self, x):
        for i, (conv, act) in enumerate(zip(self.convs, self.acts)):
            x = act(conv(x))
            x = x + self.scale * self.block(x, i)  # fused
        x = x + self.block(x, 0) * x  # scale no constant
        x = x.mean((2, 3), keepdim=True) + self.scale * self.block(x, 1)  # broadcast residual
        p = x.permute(0, 2, 3, 1)
        return self.norm(p).permute(0, 3, 1, 2) + p.permute(0, 3, 1, 2)  # p read twice


@cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_fused_epilogues_and_permutes_match_torch(dtype):
    torch.manual_seed(0)
    net = Fusions().cuda().eval()
    x = torch.randn(2, 24, 9, 7, device="cuda")
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net, dtype=dtype)
    for _ in range(3):  # op by op, captured, replayed
        out = model(x.to(dtype))
        assert rel_error(out.float(), expected) < (1e-4 if dtype == torch.float32 else 2e-2)


@cuda
def test_cuda_graphs_follow_shapes_and_can_be_turned_off():
    net = build("resnet18", {}, 64).cuda()
    model = ai3.convert(net)
    eager = ai3.convert(net, cuda_graph=False)
    shapes = [(1, 3, 64, 64), (3, 3, 80, 72), (1, 3, 64, 64), (2, 3, 32, 32), (3, 3, 80, 72)]
    for shape in shapes * 2:
        x = torch.randn(shape, device="cuda")
        with torch.no_grad():
            expected = net(x)
        assert rel_error(model(x), expected) < 1e-3
        assert rel_error(eager(x), expected) < 1e-3


@cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "convnext_tiny"])
def test_convert_dtypes_on_cuda(name, dtype):
    size, kwargs = CNNS[name]
    net = build(name, kwargs, size).cuda()
    x = sample(size).cuda()
    with torch.no_grad():
        expected = net.double()(x.double()) if dtype == torch.float64 else net(x)
        # a half network's own distance from float32 sets the scale: ai3's
        # output must be within twice torch's (or the fixed tolerance)
        torch_err = 0.0 if dtype == torch.float64 else rel_error(
            copy.deepcopy(net).to(dtype)(x.to(dtype)), expected)
    model = ai3.convert(net, dtype=dtype)
    for _ in range(2):
        out = model(x.to(dtype))
        assert out.dtype == dtype
        err = rel_error(out, expected)
        assert err < max(HALF_TOLERANCE.get(dtype, 1e-9), 2 * torch_err), (err, torch_err)


@cuda
def test_model_moves_between_devices():
    net = build("mobilenet_v3_small", {}, 64)
    x = sample(64)
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net)
    assert model.device.type == "cpu"
    model.cuda()
    assert model.device.type == "cuda"
    check_output(model(x.cuda()).cpu(), expected)
    np_out = model.predict(x.numpy(), out_type=__import__("numpy").ndarray)
    assert rel_error(torch.from_numpy(np_out), expected) < 1e-3
    model.to("cpu")
    check_output(model(x), expected)


@cuda
def test_bad_input_to_a_cuda_model_is_refused_and_the_next_call_works():
    net = build("resnet18", {}, 64).cuda()
    model = ai3.convert(net)
    x = sample(64).cuda()
    good = model(x)
    model(x)  # captured
    with pytest.raises(ValueError, match="cpu"):
        model(x.cpu())
    with pytest.raises((ValueError, TypeError)):
        model(torch.randn(2, 4, 64, 64, device="cuda"))  # channels
    with pytest.raises((ValueError, TypeError)):
        model(torch.randn(2, 3, 64, device="cuda"))  # rank
    assert rel_error(model(x), good) < 1e-6


@cuda
def test_swapped_ops_of_converted_networks_on_cuda():
    # the graph's own operations through swap-free convert of a network
    # with add, mul, cat, mean, permute, layernorm, softmax, chunk
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.norm = torch.nn.LayerNorm(8)

        def forward(self, x):
            y = self.conv(x)
            a, b = torch.chunk(y, 2, dim=1)
            z = torch.cat([a * torch.sigmoid(b), a + b], dim=1)
            z = z.permute(0, 2, 3, 1)
            z = self.norm(z)
            z = torch.softmax(z, dim=-1)
            return z.mean((1, 2))

    net = Net().cuda().eval()
    x = torch.randn(2, 3, 16, 16, device="cuda")
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net)
    for _ in range(3):
        assert rel_error(model(x), expected) < 1e-4


def test_moving_a_model_to_a_missing_gpu_fails_clearly():
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU())
    model = ai3.convert(net)
    with pytest.raises(ai3.UnsupportedError, match="(?i)cuda"):
        model.to("cuda")
    assert model.device.type == "cpu"  # unchanged, and still computing
    x = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        assert rel_error(model(x), net(x)) < 1e-5
