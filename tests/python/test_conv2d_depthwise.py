"""Depthwise conv2d (one input channel per group) against torch: the layers of
MobileNetV2 and EfficientNet-B0, the edges of the tiles and of the copy into
the padded planes (rows narrower than a vector, odd sizes, strides, dilation,
padding, channel multipliers), and a relu/relu6/hardtanh fused into the
convolution by ai3.convert."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import ai3
from ai3 import _ops
from conftest import DTYPES, assert_close, randn

# (channels, kernel, stride, padding, input size) of every distinct depthwise
# layer in the two networks at 224x224.
MOBILENET_V2 = [(32, 3, 1, 1, 112), (96, 3, 2, 1, 112), (144, 3, 1, 1, 56), (144, 3, 2, 1, 56),
                (192, 3, 1, 1, 28), (192, 3, 2, 1, 28), (384, 3, 1, 1, 14), (576, 3, 1, 1, 14),
                (576, 3, 2, 1, 14), (960, 3, 1, 1, 7)]
EFFICIENTNET_B0 = [(144, 5, 2, 2, 56), (240, 5, 1, 2, 28), (240, 3, 2, 1, 28), (480, 3, 1, 1, 14),
                   (480, 5, 1, 2, 14), (672, 5, 1, 2, 14), (672, 5, 2, 2, 14), (1152, 5, 1, 2, 7),
                   (1152, 3, 1, 1, 7)]


def depthwise(x, weight, bias, stride, padding, dilation, algorithm, groups=None):
    """ai3's conv2d with padding (top, bottom, left, right) against torch's
    in float64; returns nothing, asserts."""
    groups = groups or x.shape[-3]
    out = _ops.conv2d(x, weight, bias, stride, padding, dilation, groups, "zeros", algorithm)
    top, bottom, left, right = padding
    padded = F.pad(x.double(), (left, right, top, bottom))
    expected = F.conv2d(padded, weight.double(), None if bias is None else bias.double(), stride,
                        0, dilation, groups)
    assert out.dtype == x.dtype
    assert_close(out, expected)


@pytest.mark.parametrize("algorithm", ["direct", "default"])
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("c, k, s, p, size", MOBILENET_V2 + EFFICIENTNET_B0)
def test_network_layers_match_torch(c, k, s, p, size, batch, algorithm):
    seed = c + k + s + size + batch
    x = randn((batch, c, size, size), torch.float32, seed)
    weight = randn((c, 1, k, k), torch.float32, seed + 1)
    bias = randn((c,), torch.float32, seed + 2) if batch == 3 else None
    depthwise(x, weight, bias, (s, s), (p,) * 4, (1, 1), algorithm)


# Rows narrower than, as wide as and wider than each tile (vectors of 2 to 16
# elements, tiles of up to two), odd sizes, a stride-2 input of odd width.
EDGES = [
    # (h, w, kernel, stride, padding (t, b, l, r), dilation)
    (1, 1, (1, 1), (1, 1), (0, 0, 0, 0), (1, 1)),
    (5, 3, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    (3, 5, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    (7, 7, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    (9, 15, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    (11, 17, (3, 3), (1, 1), (0, 0, 0, 0), (1, 1)),
    (13, 31, (3, 3), (2, 2), (0, 0, 0, 0), (1, 1)),
    (6, 33, (3, 3), (1, 1), (1, 1, 1, 1), (1, 1)),
    (4, 65, (3, 3), (2, 2), (1, 1, 1, 1), (1, 1)),
    (9, 70, (3, 3), (1, 1), (1, 1, 1, 1), (2, 2)),
    (10, 23, (5, 5), (1, 1), (2, 2, 2, 2), (1, 1)),
    (15, 15, (5, 5), (2, 2), (2, 2, 2, 2), (1, 1)),
    (12, 12, (3, 3), (1, 1), (2, 2, 2, 2), (2, 2)),
    (8, 19, (3, 5), (2, 1), (0, 2, 1, 3), (1, 2)),
    (14, 29, (3, 3), (3, 3), (1, 1, 1, 1), (1, 1)),
    (2, 40, (2, 2), (1, 2), (0, 1, 1, 0), (1, 1)),
]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h, w, kernel, stride, padding, dilation", EDGES)
def test_edges_match_torch(h, w, kernel, stride, padding, dilation, dtype):
    for batch, c, has_bias in ((1, 3, False), (2, 5, True)):
        x = randn((batch, c, h, w), dtype, h * w + c)
        weight = randn((c, 1, *kernel), dtype, h + w)
        bias = randn((c,), dtype, c) if has_bias else None
        depthwise(x, weight, bias, stride, padding, dilation, "direct")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("multiplier", [2, 3])
def test_channel_multiplier_matches_torch(multiplier, dtype):
    for size, stride in ((7, 1), (14, 2), (40, 1)):
        x = randn((2, 6, size, size), dtype, size)
        weight = randn((6 * multiplier, 1, 3, 3), dtype, size + 1)
        bias = randn((6 * multiplier,), dtype, size + 2)
        depthwise(x, weight, bias, (stride, stride), (1, 1, 1, 1), (1, 1), "direct")


def test_unbatched_input_matches_torch():
    x = randn((16, 9, 20), torch.float32, 0)
    weight = randn((16, 1, 3, 3), torch.float32, 1)
    depthwise(x, weight, None, (2, 2), (1, 1, 1, 1), (1, 1), "direct")


@settings(max_examples=60, deadline=None)
@given(c=st.integers(1, 6), multiplier=st.sampled_from([1, 1, 2]), h=st.integers(1, 20),
       w=st.integers(1, 80), kh=st.integers(1, 5), kw=st.integers(1, 5),
       stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
       dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
       padding=st.tuples(*[st.integers(0, 3)] * 4), bias=st.booleans(),
       batch=st.integers(1, 3), dtype=st.sampled_from(DTYPES), seed=st.integers(0, 2**31 - 1))
def test_random_depthwise_matches_torch(c, multiplier, h, w, kh, kw, stride, dilation, padding,
                                        bias, batch, dtype, seed):
    top, bottom, left, right = padding
    if (h + top + bottom < dilation[0] * (kh - 1) + 1 or
            w + left + right < dilation[1] * (kw - 1) + 1):
        return
    x = randn((batch, c, h, w), dtype, seed)
    weight = randn((c * multiplier, 1, kh, kw), dtype, seed + 1)
    b = randn((c * multiplier,), dtype, seed + 2) if bias else None
    depthwise(x, weight, b, stride, padding, dilation, "direct")


@pytest.mark.parametrize("activation", [nn.ReLU(), nn.ReLU6(), nn.Hardtanh(-0.5, 0.25)])
@pytest.mark.parametrize("c, k, s, p, size", [(144, 3, 2, 1, 56), (192, 3, 1, 1, 28),
                                              (576, 3, 2, 1, 14), (960, 3, 1, 1, 7),
                                              (8, 5, 1, 2, 5), (4, 3, 2, 1, 75)])
def test_clamp_fused_into_depthwise_matches_torch(c, k, s, p, size, activation):
    torch.manual_seed(c + size)
    net = nn.Sequential(nn.Conv2d(c, c, k, s, p, groups=c), activation).eval()
    x = torch.randn(2, c, size, size) * 3
    with torch.no_grad():
        expected = net(x)
    model = ai3.convert(net, {"conv2d": "direct"})
    torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-4)
