"""The torchvision zoo: each CNN converts with default selectors and matches
PyTorch, and swap_conv2d works on every network (transformers included).

Networks are built with weights=None (nothing is downloaded). Fresh
initialisation leaves batchnorm statistics at (0, 1), which can make a
network's features vanish so that its output is just the classifier's
bias; so batchnorm statistics are measured on a random batch, affine
parameters randomised, linear biases zeroed (and zero-initialised
linear weights made random), and the test checks that
the output depends on the input. Inputs are small where the network allows (64x64; inception_v3
needs 75x75 at least), batch 2, float32, eval mode.
"""

import copy

import pytest
import torch
from torch import nn

import ai3

torchvision = pytest.importorskip("torchvision")

REL_TOL = 1e-3
BATCH = 2

# name: (input size, builder keyword arguments)
CNNS = {
    "alexnet": (64, {}),
    "vgg11": (64, {}),
    "vgg16_bn": (64, {}),
    "resnet18": (64, {}),
    "resnet50": (64, {}),
    "resnext50_32x4d": (64, {}),
    "wide_resnet50_2": (64, {}),
    "densenet121": (64, {}),
    "googlenet": (64, {"init_weights": True, "aux_logits": False, "transform_input": False}),
    "inception_v3": (75, {"init_weights": True, "aux_logits": False,
                          "transform_input": False}),
    "mobilenet_v2": (64, {}),
    "mobilenet_v3_large": (64, {}),
    "mobilenet_v3_small": (64, {}),
    "shufflenet_v2_x1_0": (64, {}),
    "squeezenet1_1": (64, {}),
    "mnasnet1_0": (64, {}),
    "efficientnet_b0": (64, {}),
    "regnet_y_400mf": (64, {}),
    "regnet_x_400mf": (64, {}),
    "convnext_tiny": (64, {}),
}
TRANSFORMERS = {
    "vit_b_16": (32, {"image_size": 32}),
    "swin_t": (64, {}),
    "maxvit_t": (224, {}),  # its 7x7 partitions need 224
}


def build(name, kwargs, size, seed=0):
    """The network in eval mode, with batchnorm statistics measured on a
    random batch (as training would set them) and random affine parameters."""
    torch.manual_seed(seed)
    net = getattr(torchvision.models, name)(weights=None, **kwargs)
    g = torch.Generator().manual_seed(seed)
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for m in bns:
            m.momentum = None  # a cumulative average: the statistics of the batch
            m.weight.copy_(0.5 + torch.rand(m.num_features, generator=g))
            m.bias.copy_(0.1 * torch.randn(m.num_features, generator=g))
        for m in net.modules():
            if isinstance(m, nn.Linear):
                if not m.weight.any():  # ViT's head starts at zero
                    m.weight.normal_(0, 0.02, generator=g)
                if m.bias is not None:
                    m.bias.zero_()
        if bns:
            net.train()
            net(torch.randn(4, 3, size, size, generator=g))
    return net.eval()


def sample(size, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(BATCH, 3, size, size, generator=g)


def rel_error(actual, expected):
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    return ((actual.double() - expected.double()).norm() / expected.double().norm()).item()


def check_output(actual, expected):
    assert torch.isfinite(expected).all()
    # the output depends on the input: the two samples differ
    assert (expected[0] - expected[1]).abs().max() > 1e-4 * expected.abs().max()
    err = rel_error(actual, expected)
    assert err < REL_TOL, err
    return err


@pytest.mark.parametrize("name", list(CNNS))
def test_convert_matches_torch(name):
    size, kwargs = CNNS[name]
    net = build(name, kwargs, size)
    x = sample(size)
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net)
    check_output(model(x), expected)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "vgg16_bn"])
def test_convert_without_folding_batchnorm(name):
    size, kwargs = CNNS[name]
    net = build(name, kwargs, size)
    x = sample(size)
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net, fold_batchnorm=False)
    assert any(layer.op == "batchnorm2d" for layer in model.layers)
    folded = ai3.convert(net)
    assert not any(layer.op == "batchnorm2d" for layer in folded.layers)
    check_output(model(x), expected)


def test_convert_runs_other_batch_and_spatial_sizes():
    net = build("resnet18", {}, 64)
    model = ai3.convert(net)
    for shape in [(1, 3, 64, 64), (3, 3, 97, 80), (2, 3, 32, 32), (1, 3, 64, 64)]:
        x = torch.randn(shape)
        with torch.no_grad():
            expected = net(x)
        assert rel_error(model(x), expected) < REL_TOL
    mem = model.memory((1, 3, 224, 224))
    assert 0 < mem["peak"] < mem["total"]


@pytest.mark.parametrize("name", list(CNNS) + list(TRANSFORMERS))
def test_swap_conv2d(name):
    size, kwargs = {**CNNS, **TRANSFORMERS}[name]
    net = build(name, kwargs, size)
    x = sample(size)
    with torch.no_grad():
        expected = net(x)
    swapped = copy.deepcopy(net)
    ai3.swap_conv2d(swapped)
    assert any(isinstance(m, ai3.swap.Conv2d) for m in swapped.modules())
    with torch.no_grad():
        check_output(swapped(x), expected)
