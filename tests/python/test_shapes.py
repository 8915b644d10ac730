"""The pure-Python shape functions that the custom ops' fake implementations
use under torch.compile agree with the C core's output shapes (which the
eager path uses), on random sweeps of valid parameters; and where one
rejects a configuration, so does the other."""

import random

import pytest
import torch

from ai3 import _core, _ops


def agree(op, python_shape, plan_args, *shapes):
    """Both give the same shape, or both raise ValueError."""
    try:
        want = tuple(python_shape())
    except ValueError:
        want = None
    try:
        got = _core.output_shape(_core.plan(op, *plan_args), *shapes)
    except ValueError:
        got = None
    assert got == want, (op, plan_args, shapes)
    return want is not None


def meta(shape):
    return torch.empty(shape, device="meta")


def test_conv2d_shapes_agree():
    rng = random.Random(0)
    valid = 0
    for _ in range(300):
        groups = rng.choice([1, 1, 2, 3])
        c_in, c_out = groups * rng.randint(1, 3), groups * rng.randint(1, 3)
        kh, kw = rng.randint(1, 5), rng.randint(1, 5)
        shape = (rng.randint(1, 2), c_in, rng.randint(1, 12), rng.randint(1, 12))
        if rng.random() < 0.2:
            shape = shape[1:]
        stride, dilation = (rng.randint(1, 3), rng.randint(1, 3)), (rng.randint(1, 2), 1)
        padding = tuple(rng.randint(0, 3) for _ in range(4))
        mode = rng.choice(["zeros", "reflect", "replicate", "circular"])
        weight = torch.randn(c_out, c_in // groups, kh, kw)
        params = (*stride, *padding, *dilation, groups, mode)
        valid += agree("conv2d",
                       lambda: _ops._conv2d_shape(meta(shape), weight.to("meta"), None, stride,
                                                  padding, dilation, groups, mode, "default"),
                       ("default", (weight,), params), shape)
    assert valid > 100


def test_pool_shapes_agree():
    rng = random.Random(1)
    valid = 0
    for _ in range(300):
        shape = (rng.randint(1, 2), rng.randint(1, 3), rng.randint(1, 14), rng.randint(1, 14))
        kernel = (rng.randint(1, 4), rng.randint(1, 4))
        stride = (rng.randint(1, 3), rng.randint(1, 3))
        padding = (rng.randint(0, kernel[0] // 2), rng.randint(0, kernel[1] // 2))
        dilation = (rng.randint(1, 2), rng.randint(1, 2))
        ceil = rng.random() < 0.5
        valid += agree("maxpool2d",
                       lambda: _ops._maxpool2d_shape(meta(shape), kernel, stride, padding,
                                                     dilation, ceil, "default"),
                       ("default", (), _ops._maxpool2d_params(kernel, stride, padding, dilation,
                                                              ceil)), shape)
        valid += agree("avgpool2d",
                       lambda: _ops._avgpool2d_shape(meta(shape), kernel, stride, padding, ceil,
                                                     True, None, "default"),
                       ("default", (), _ops._avgpool2d_params(kernel, stride, padding, ceil,
                                                              True, None)), shape)
    assert valid > 200


def test_reshaping_ops_agree():
    rng = random.Random(2)
    for _ in range(200):
        nd = rng.randint(1, 5)
        shape = tuple(rng.randint(1, 4) for _ in range(nd))
        start, end = rng.randint(-nd, nd - 1), rng.randint(-nd, nd - 1)
        agree("flatten", lambda: _ops._flatten_shape(meta(shape), start, end, "default"),
              ("default", (), (start, end)), shape)
        dims = rng.sample(range(nd), rng.randint(1, nd))
        keep = rng.random() < 0.5
        agree("mean", lambda: _ops._mean_shape(meta(shape), dims, keep, "default"),
              ("default", (), (tuple(dims), keep)), shape)
        perm = rng.sample(range(nd), nd)
        agree("permute", lambda: _ops._permute_shape(meta(shape), perm, "default"),
              ("default", (), (tuple(perm),)), shape)
        other = tuple(s if rng.random() < 0.7 else 1 for s in shape[rng.randint(0, nd - 1):])
        agree("add", lambda: _ops._broadcast_shape("add", meta(shape), meta(other), "default"),
              ("default", (), ()), shape, other)
        dim = rng.randint(-nd, nd - 1)
        second = tuple(s + (1 if i == dim % nd else 0) for i, s in enumerate(shape))
        agree("cat", lambda: _ops._cat_shape([meta(shape), meta(second)], dim, "default"),
              ("default", (), (dim,)), shape, second)


@pytest.mark.parametrize("output_size", [(1, 1), (3, 2), (7, 7)])
def test_adaptiveavgpool2d_shapes_agree(output_size):
    for shape in [(1, 3, 8, 8), (3, 5, 9), (2, 1, 1, 1)]:
        assert agree("adaptiveavgpool2d",
                     lambda: _ops._adaptiveavgpool2d_shape(meta(shape), output_size, "default"),
                     ("default", (), output_size), shape)
