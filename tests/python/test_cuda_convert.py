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
