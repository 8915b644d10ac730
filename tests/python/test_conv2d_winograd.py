"""conv2d 'winograd': both tile sizes against torch, and the clear error for
what it cannot compute (kernels other than 3x3, stride or dilation other
than 1), through the custom op and through a swapped network."""

import pytest
import torch
import torch.nn.functional as F

import ai3
from ai3 import _ops
from conftest import DTYPES, assert_close, randn


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tile", ["2", "4"])
@pytest.mark.parametrize("groups, padding_mode", [(1, "zeros"), (2, "reflect"), (8, "circular")])
def test_winograd_tiles_match_torch(monkeypatch, dtype, tile, groups, padding_mode):
    # AI3_WINOGRAD_TILE is read when a plan is made: fresh weights, so a new plan.
    monkeypatch.setenv("AI3_WINOGRAD_TILE", tile)
    x = randn((2, 16, 19, 13), dtype, 1)
    weight = randn((24, 16 // groups, 3, 3), dtype, 2)
    bias = randn((24,), dtype, 3)
    padded = F.pad(x.double(), (1, 2, 2, 1), mode="constant" if padding_mode == "zeros"
                   else padding_mode)
    expected = F.conv2d(padded, weight.double(), bias.double(), groups=groups)
    for _ in range(2):  # the second call runs the kept plan
        out = _ops.conv2d(x, weight, bias, (1, 1), (2, 1, 1, 2), (1, 1), groups, padding_mode,
                          "winograd")
        assert_close(out, expected, "winograd")


REFUSED = [
    (dict(kernel_size=5, padding=2), "kernel size"),
    (dict(kernel_size=(3, 1)), "kernel size"),
    (dict(kernel_size=3, stride=2), "stride"),
    (dict(kernel_size=3, dilation=2), "dilation"),
]


@pytest.mark.parametrize("kwargs, parameter", REFUSED)
def test_winograd_refuses_clearly_through_the_op(kwargs, parameter):
    conv = torch.nn.Conv2d(4, 6, **kwargs)
    x = torch.randn(1, 4, 12, 12)
    with pytest.raises(ai3.UnsupportedError, match=f"winograd.*{parameter}"):
        _ops.conv2d(x, conv.weight.detach(), conv.bias.detach(), conv.stride,
                    _ops.conv2d_padding(conv), conv.dilation, conv.groups, "zeros", "winograd")


@pytest.mark.parametrize("kwargs, parameter", REFUSED)
def test_winograd_refuses_clearly_through_swap(kwargs, parameter):
    net = torch.nn.Sequential(torch.nn.Conv2d(4, 6, **kwargs), torch.nn.ReLU())
    x = torch.randn(1, 4, 12, 12)
    with pytest.raises(ai3.UnsupportedError, match=f"winograd.*{parameter}"):
        ai3.swap_conv2d(net, "winograd")
        net(x)


def test_winograd_swapped_network_matches_torch():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(8, 32, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(32, 32, 3, padding=1, groups=4,
                                              padding_mode="replicate"))
    x = torch.randn(3, 8, 22, 17)
    with torch.no_grad():
        expected = net.double()(x.double())
        net.float()
        ai3.swap_conv2d(net, "winograd")
        assert all(m.algorithm == "winograd" for m in net if isinstance(m, torch.nn.Conv2d))
        assert_close(net(x), expected, "winograd")
