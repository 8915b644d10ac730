"""ai3.convert and ai3.Model: whole networks computed by ai3, compared with
PyTorch on random inputs."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ai3
from nets import SEVEN_SHAPE, TOL, ConvNet, SevenOps, close, randn

CONV_ALGOS = ai3.SUPPORTED_ALGORITHMS["conv2d"]


@pytest.mark.slow
def test_seed_readme_convert_example_vgg16():
    torchvision = pytest.importorskip("torchvision")

    def auto_selector(orig: torch.nn.Conv2d, input_shape) -> str:
        out_channels = orig.weight.shape[0]
        if (out_channels < 50 and
                input_shape[1] < 50 and
                input_shape[2] > 150 and
                input_shape[3] > 150):
            return 'direct'
        return 'smm'

    input_data = torch.randn(1, 3, 224, 224)
    vgg16 = torchvision.models.vgg16(weights=None)
    vgg16 = vgg16.eval()
    with torch.inference_mode():
        torch_out = vgg16(input_data)
        model: ai3.Model = ai3.convert(vgg16, {'conv2d': auto_selector,
                                               'maxpool2d': 'default'},
                                       sample_input_shape=(1, 3, 224, 224))
        sb_out = model(input_data)
        assert torch.allclose(torch_out, sb_out, atol=1e-4)
    convs = [layer.algorithm for layer in model.layers if layer.op == "conv2d"]
    assert convs == ["smm"] * 13  # every VGG16 conv has 64 or more output channels


@pytest.mark.parametrize("conv_algo", CONV_ALGOS)
@pytest.mark.parametrize("batch", [1, 3])
def test_convnet_functional_ops(conv_algo, batch):
    torch.manual_seed(0)
    net = ConvNet().eval()
    model = ai3.convert(net, {"conv2d": conv_algo})
    ops = [layer.op for layer in model.layers]
    assert ops == ["conv2d", "relu", "maxpool2d", "conv2d", "relu", "maxpool2d", "flatten",
                   "linear", "relu", "linear"]
    x = randn((batch, 3, 224, 224), seed=batch)
    with torch.no_grad():
        assert close(model(x), net(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_seven_ops_modules(dtype):
    torch.manual_seed(1)
    net = SevenOps().to(dtype).eval()
    model = ai3.convert(net)
    assert model.dtype == dtype
    assert [layer.name for layer in model.layers] == [
        "conv1", "relu1", "pool1", "block.0", "block.1", "block.2", "adapt", "flatten", "fc"]
    for seed in range(3):
        x = randn(SEVEN_SHAPE, dtype, seed)
        x_before = x.clone()
        with torch.no_grad():
            assert close(model(x), net(x), dtype)
        assert torch.equal(x, x_before)


def test_dtype_override_and_own_weights():
    torch.manual_seed(2)
    net = SevenOps().eval()
    model = ai3.convert(net, dtype=torch.float64)
    assert model.dtype == torch.float64
    conv = model.layers[0]
    assert conv.weight_shape == tuple(net.conv1.weight.shape) and conv.has_bias
    ref = copy.deepcopy(net).double()
    x = randn(SEVEN_SHAPE, torch.float64, 3)
    with torch.no_grad():
        expected = ref(x)
        assert close(model(x), expected, torch.float64)
        net.conv1.weight.add_(1.0)  # the Model holds its own copy
        assert close(model(x), expected, torch.float64)
    # float32 input to a float64 model is cast
    assert model(x.float()).dtype == torch.float64
    same = ai3.convert(net, dtype="float32")  # the C graph copies float32 weights too
    x32 = x.float()
    before = same(x32)
    with torch.no_grad():
        net.conv1.weight.sub_(1.0)
    assert torch.equal(same(x32), before)


def test_numpy_in_and_out():
    torch.manual_seed(3)
    net = SevenOps().eval()
    model = ai3.convert(net)
    x = randn(SEVEN_SHAPE, seed=4)
    arr = x.numpy().copy()
    with torch.no_grad():
        expected = net(x)
    out = model.predict(arr, out_type=np.ndarray)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert np.allclose(out, expected.numpy(), **TOL[torch.float32])
    assert isinstance(model.predict(arr), torch.Tensor)
    assert isinstance(model.predict(x, out_type=torch.Tensor), torch.Tensor)
    assert np.array_equal(arr, x.numpy())
    # a float64 array goes into a float32 model
    assert close(model(arr.astype(np.float64)), expected)


def test_unbatched_input():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.AvgPool2d(2), nn.AdaptiveAvgPool2d((2, 3)))
    model = ai3.convert(net)
    x = randn((3, 12, 12), seed=5)
    with torch.no_grad():
        assert close(model(x), net(x))


def test_input_requiring_grad_is_fine():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU())
    model = ai3.convert(net)
    x = randn((2, 4), seed=6).requires_grad_()
    out = model(x)
    assert not out.requires_grad
    assert close(out, net(x).detach())


class Functional(nn.Module):
    """Function and method calls convert uses, with identities in between."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, stride=2, dilation=2, padding=2)
        self.drop = nn.Dropout(0.3)
        self.ident = nn.Identity()
        self.seq = nn.Sequential(nn.Sequential(nn.Linear(6 * 2 * 2, 8)), nn.Dropout())
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = F.relu(self.conv(x), inplace=True)
        x = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
        x = F.avg_pool2d(x, kernel_size=2, stride=2, divisor_override=3)
        x = F.adaptive_avg_pool2d(x, (2, 2))
        x = self.ident(self.drop(x))
        x = x.contiguous()
        x = x.view(x.size(0), -1)
        x = F.dropout(x, 0.5, training=False)
        x = torch.relu(self.seq(x))
        x = x.relu()
        x = x.reshape(-1, 8)
        x = self.fc(x)
        return x.flatten(1)


def test_functional_calls_and_identities():
    torch.manual_seed(4)
    net = Functional().eval()
    model = ai3.convert(net, {"relu": ["direct", "default", "default"]},
                        sample_input_shape=(2, 3, 15, 15))
    assert [layer.op for layer in model.layers] == [
        "conv2d", "relu", "maxpool2d", "avgpool2d", "adaptiveavgpool2d", "reshape", "linear",
        "relu", "relu", "reshape", "linear", "flatten"]
    for batch in (1, 2, 5):
        x = randn((batch, 3, 15, 15), seed=batch)
        with torch.no_grad():
            assert close(model(x), net(x))


def test_view_minus_one_checks_features_at_run_time():
    class Lenetish(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x):
            return self.conv(x).view(-1, 2 * 4 * 4)

    net = Lenetish()
    model = ai3.convert(net)
    x = randn((3, 1, 6, 6))
    with torch.no_grad():
        assert close(model(x), net(x))
    with pytest.raises(ValueError, match="view"):
        model(randn((3, 1, 7, 7)))


def test_selectors_count_function_calls_and_see_shapes():
    seen = []

    def pool_selector(module, input_shape):
        seen.append((type(module).__name__, module.kernel_size, input_shape))
        return "default"

    net = ConvNet()
    model = ai3.convert(net, {"conv2d": lambda m: CONV_ALGOS[-1], nn.MaxPool2d: pool_selector,
                              "linear": ["default", "default"]},
                        sample_input_shape=(4, 3, 224, 224))
    assert seen == [("MaxPool2d", 2, (4, 16, 224, 224)), ("MaxPool2d", 2, (4, 32, 112, 112))]
    assert [layer.algorithm for layer in model.layers if layer.op == "conv2d"] == \
        [CONV_ALGOS[-1]] * 2


def test_convert_swapped_network():
    torch.manual_seed(5)
    net = SevenOps().eval()
    swapped = copy.deepcopy(net)
    for op in ai3.OPERATIONS:
        ai3.swap_operation(op, swapped, "default")
    ai3.swap_conv2d(swapped, CONV_ALGOS[0])
    model = ai3.convert(swapped)
    assert model.layers[0].algorithm == "default"  # convert's selectors decide
    x = randn(SEVEN_SHAPE, seed=6)
    with torch.no_grad():
        assert close(model(x), net(x))


class Branchy(nn.Module):
    """Branches, joins, a value used three times, chunk, a channel shuffle
    with sizes read from the input, squeeze-and-excitation broadcasting, a
    parameter read with get_attr, and two outputs."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.left = nn.Conv2d(4, 4, 1)
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(8, 8, 1), nn.Hardsigmoid())
        self.scale = nn.Parameter(torch.rand(8, 1, 1) + 0.5)
        self.norm = nn.LayerNorm(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        y = F.relu6(self.bn(self.conv(x)))
        a, b = y.chunk(2, dim=1)
        y = torch.cat([F.silu(self.left(a)), b], 1) + y
        n, c, h, w = y.size()
        y = y.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, -1, h, w)
        y = y * self.se(y) * self.scale
        z = self.norm(y.permute(0, 2, 3, 1)).mean([1, 2])
        return torch.softmax(self.fc(F.gelu(z)), dim=1), y


@pytest.mark.parametrize("fold", [True, False])
def test_graph_with_branches_joins_and_two_outputs(fold):
    torch.manual_seed(7)
    net = Branchy()
    with torch.no_grad():
        net.bn.running_mean.uniform_(-0.5, 0.5)
        net.bn.running_var.uniform_(0.5, 1.5)
    net.eval()
    model = ai3.convert(net, fold_batchnorm=fold)
    ops = [layer.op for layer in model.layers]
    assert ("batchnorm2d" in ops) == (not fold)
    assert {"chunk", "cat", "add", "mul", "transpose", "permute", "layernorm", "mean",
            "softmax", "gelu", "hardtanh", "silu", "hardsigmoid"} <= set(ops)
    adds = [layer for layer in model.layers if layer.op == "add"]
    assert len(adds) == 1 and len(adds[0].inputs) == 2
    for shape in [(2, 3, 8, 8), (1, 3, 5, 7), (3, 3, 8, 8)]:
        x = randn(shape, seed=shape[0])
        with torch.no_grad():
            expected = net(x)
        got = model(x)
        assert isinstance(got, tuple) and len(got) == 2
        for g, e in zip(got, expected):
            assert close(g, e)


def test_memory_of_the_plan():
    model = ai3.convert(Branchy().eval())
    mem = model.memory((2, 3, 16, 16))
    assert 0 < mem["peak"] < mem["total"]
    assert model.output_shapes((2, 3, 16, 16)) == ((2, 5), (2, 8, 16, 16))


def test_identity_network_copies_its_input():
    model = ai3.convert(nn.Sequential(nn.Dropout(), nn.Identity()))
    x = randn((2, 3))
    out = model(x)
    assert torch.equal(out, x) and out.data_ptr() != x.data_ptr()


def test_input_of_the_wrong_shape_names_the_node():
    model = ai3.convert(ConvNet())
    with pytest.raises(ValueError, match="'conv1' \\(conv2d\\).*channels"):
        model(randn((1, 4, 224, 224)))
    with pytest.raises(ValueError, match="'fc1' \\(linear\\)"):
        model(randn((1, 3, 64, 64)))


def test_repr_lists_layers_and_algorithms():
    model = ai3.convert(ConvNet(), {"conv2d": [CONV_ALGOS[0], CONV_ALGOS[-1]]})
    # without sample_input_shape, 'guess' chooses at the first input
    assert model.layers[3].resolved == "guess"
    model(randn((1, 3, 224, 224), seed=0))
    text = repr(model)
    assert text.startswith("Model(dtype=torch.float32")
    assert f"conv1: conv2d(3, 16" in text and f"algorithm='{CONV_ALGOS[0]}'" in text
    # 'guess' is shown with the algorithm it chose, e.g. "algorithm='guess (winograd)'"
    assert f"conv2: conv2d(16, 32" in text and f"algorithm='{CONV_ALGOS[-1]} (" in text
    default = {r[0]: r[1] for r in ai3._core.OPERATIONS}["linear"]
    assert f"fc1: linear(100352, 128, bias=True, algorithm='default ({default})')" in text
    assert text.count("\n") == len(model.layers) + 1


def test_half_input_to_a_float32_model_is_refused():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    model = ai3.convert(net)
    x = torch.randn(1, 3, 8, 8)
    for dtype in (torch.float16, torch.bfloat16):
        with pytest.raises(TypeError, match="float32"):
            model(x.to(dtype))
    with torch.no_grad():  # other dtypes are cast, as documented
        torch.testing.assert_close(model(x.double()), net(x), rtol=1e-5, atol=1e-5)


class _ClampAfterConv(nn.Module):
    """conv→relu (fused), conv→relu6 (fused), a conv output read twice (not)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.c = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = torch.relu(self.a(x))
        y = nn.functional.relu6(self.b(y))
        z = self.c(y)
        return torch.relu(z) + z


@pytest.mark.parametrize("algorithm", ai3.SUPPORTED_ALGORITHMS["conv2d"])
def test_clamps_fused_into_convolutions_match_torch(algorithm):
    torch.manual_seed(0)
    net = _ClampAfterConv().eval()
    x = torch.randn(2, 3, 12, 12) * 3
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net, {"conv2d": algorithm if algorithm != "winograd" else "guess"})
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)


def test_clamps_fused_into_winograd_match_torch():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3),
                        nn.ReLU6(), nn.Conv2d(8, 4, 3, padding=1), nn.Hardtanh(-0.5, 0.25)).eval()
    x = torch.randn(2, 3, 13, 11) * 3
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net, {"conv2d": "winograd"})
    torch.testing.assert_close(model(x), expected, rtol=1e-3, atol=1e-3)


class _Widening(nn.Module):
    """3 → 16 → 8 channels at 64×64: 384 KiB of activations per image in
    its largest layer; `mix` ends in a softmax over the images."""

    def __init__(self, mix=False):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 8, 1)
        self.mix = mix

    def forward(self, x):
        y = self.b(F.relu(self.a(x)))
        return F.softmax(y, dim=0) if self.mix else y


@pytest.mark.parametrize("mix", [False, True])
def test_large_batch_runs_in_slices_with_torch_results(mix):
    """48 images (18 MiB in the largest layer) run as two slices of 24,
    unless an operation mixes the images; either way torch's results."""
    net = _Widening(mix).eval()
    x = randn((48, 3, 64, 64))
    model = ai3.convert(net)
    assert model.sub_batch(x.shape) == (48 if mix else 24)
    assert model.sub_batch((8, 3, 64, 64)) == 8  # small enough as a whole
    with torch.no_grad():
        assert close(model(x), net(x))
