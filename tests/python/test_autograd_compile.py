"""The ai3 custom ops under autograd and torch.compile: gradients equal
torch's, and compiled functions (also fullgraph, also with dynamic shapes)
compute what eager does. (torch.library.opcheck of every op:
test_opcheck.py.)"""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from ai3 import _ops
from conftest import TOLERANCES, assert_close, randn

F64 = TOLERANCES[torch.float64]
SEEDS = st.integers(0, 2**31 - 1)


def grads_of(fn, inputs, seed):
    """fn(*inputs) and the gradients of <fn(*inputs), g> for a random g
    with respect to every input that is not None."""
    leaves = [t.detach().clone().requires_grad_() if t is not None else None for t in inputs]
    out = fn(*leaves)
    g = randn(out.shape, out.dtype, seed + 99)
    used = [t for t in leaves if t is not None]
    return out, torch.autograd.grad(out, used, g)


def assert_same_grads(ai3_fn, torch_fn, inputs, seed):
    out, grads = grads_of(ai3_fn, inputs, seed)
    ref_out, ref_grads = grads_of(torch_fn, inputs, seed)
    torch.testing.assert_close(out, ref_out, **F64)
    for got, expected in zip(grads, ref_grads):
        torch.testing.assert_close(got, expected, **F64)


# ---------------------------------------------------------------------------
# Gradients against torch's, float64
# ---------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(padding_mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
       padding=st.tuples(*[st.integers(0, 2)] * 4), stride=st.sampled_from([(1, 1), (2, 1)]),
       dilation=st.sampled_from([(1, 1), (1, 2)]), groups=st.sampled_from([1, 2]),
       batched=st.booleans(), bias=st.booleans(), seed=SEEDS)
def test_conv2d_gradients(padding_mode, padding, stride, dilation, groups, batched, bias, seed):
    x = randn((2, 4, 6, 7) if batched else (4, 6, 7), seed=seed)
    weight = randn((4, 4 // groups, 3, 2), seed=seed + 1)
    b = randn((4,), seed=seed + 2) if bias else None
    top, bottom, left, right = padding
    mode = "constant" if padding_mode == "zeros" else padding_mode

    def reference(x, weight, b):
        padded = F.pad(x, (left, right, top, bottom), mode=mode)
        return F.conv2d(padded, weight, b, stride, 0, dilation, groups)

    def ai3_conv(x, weight, b):
        return _ops.conv2d(x, weight, b, stride, padding, dilation, groups, padding_mode, "default")

    assert_same_grads(ai3_conv, reference, (x, weight, b), seed)


@pytest.mark.parametrize("padding_mode", ["zeros", "reflect", "replicate", "circular"])
def test_conv2d_gradcheck(padding_mode):
    x = randn((1, 2, 4, 5), seed=1).requires_grad_()
    weight = randn((2, 1, 2, 3), seed=2).requires_grad_()
    bias = randn((2,), seed=3).requires_grad_()
    torch.autograd.gradcheck(
        lambda x, w, b: _ops.conv2d(x, w, b, (1, 2), (1, 0, 2, 1), (1, 1), 2, padding_mode,
                                    "default"),
        (x, weight, bias))


@pytest.mark.parametrize("lead", [(), (3,), (2, 3)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear_gradients(lead, bias):
    x, weight = randn((*lead, 5), seed=1), randn((4, 5), seed=2)
    b = randn((4,), seed=3) if bias else None
    assert_same_grads(lambda x, w, b: _ops.linear(x, w, b, "default"), F.linear, (x, weight, b), 7)


@settings(max_examples=20, deadline=None)
@given(kernel=st.sampled_from([(2, 2), (3, 2), (3, 3)]), stride=st.sampled_from([(1, 1), (2, 2), (2, 1)]),
       padding=st.sampled_from([(0, 0), (1, 1), (1, 0)]), dilation=st.sampled_from([(1, 1), (2, 1)]),
       ceil_mode=st.booleans(), batched=st.booleans(), seed=SEEDS)
def test_maxpool2d_gradients(kernel, stride, padding, dilation, ceil_mode, batched, seed):
    x = randn((2, 3, 7, 8) if batched else (3, 7, 8), seed=seed)
    args = (kernel, stride, padding, dilation, ceil_mode)
    assert_same_grads(lambda x: _ops.maxpool2d(x, *args, "default"),
                      lambda x: F.max_pool2d(x, *args), (x,), seed)


@settings(max_examples=20, deadline=None)
@given(kernel=st.sampled_from([(2, 2), (3, 2), (3, 3)]), stride=st.sampled_from([(1, 1), (2, 2), (2, 1)]),
       padding=st.sampled_from([(0, 0), (1, 1), (1, 0)]), ceil_mode=st.booleans(),
       count_include_pad=st.booleans(), divisor_override=st.sampled_from([None, 2]),
       batched=st.booleans(), seed=SEEDS)
def test_avgpool2d_gradients(kernel, stride, padding, ceil_mode, count_include_pad,
                             divisor_override, batched, seed):
    x = randn((2, 3, 7, 8) if batched else (3, 7, 8), seed=seed)
    args = (kernel, stride, padding, ceil_mode, count_include_pad, divisor_override)
    assert_same_grads(lambda x: _ops.avgpool2d(x, *args, "default"),
                      lambda x: F.avg_pool2d(x, *args), (x,), seed)


@pytest.mark.parametrize("shape, output_size", [((2, 3, 7, 9), (3, 4)), ((3, 5, 5), (5, 2)),
                                                ((1, 2, 4, 4), (6, 7))])
def test_adaptiveavgpool2d_gradients(shape, output_size):
    assert_same_grads(lambda x: _ops.adaptiveavgpool2d(x, output_size, "default"),
                      lambda x: F.adaptive_avg_pool2d(x, output_size), (randn(shape, seed=4),), 4)


def test_relu_and_flatten_gradients():
    x = randn((2, 3, 4, 5), seed=5)
    assert_same_grads(lambda x: _ops.relu(x, "default"), F.relu, (x,), 5)
    assert_same_grads(lambda x: _ops.flatten(x, 1, 2, "default"),
                      lambda x: torch.flatten(x, 1, 2), (x,), 5)


# ---------------------------------------------------------------------------
# torch.compile
# ---------------------------------------------------------------------------


def small_network(x, conv_w, conv_b, fc_w, fc_b):
    """Every op once, as a swapped network would call them."""
    y = _ops.conv2d(x, conv_w, conv_b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros", "default")
    y = _ops.relu(y, "default")
    y = _ops.maxpool2d(y, (2, 2), (2, 2), (0, 0), (1, 1), False, "default")
    y = _ops.avgpool2d(y, (3, 3), (1, 1), (1, 1), True, False, None, "default")
    y = _ops.adaptiveavgpool2d(y, (3, 3), "default")
    y = _ops.flatten(y, 1, -1, "default")
    return _ops.linear(y, fc_w, fc_b, "default")


def torch_network(x, conv_w, conv_b, fc_w, fc_b):
    y = F.relu(F.conv2d(x, conv_w, conv_b, padding=1))
    y = F.max_pool2d(y, 2)
    y = F.avg_pool2d(y, 3, 1, 1, True, False)
    y = torch.flatten(F.adaptive_avg_pool2d(y, 3), 1)
    return F.linear(y, fc_w, fc_b)


def network_inputs(dtype=torch.float32, batch=2, size=10):
    return (randn((batch, 3, size, size), dtype, 21), randn((4, 3, 3, 3), dtype, 22),
            randn((4,), dtype, 23), randn((5, 36), dtype, 24), randn((5,), dtype, 25))


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("backend", ["aot_eager", "inductor"])
def test_compile_fullgraph_matches_eager(backend):
    inputs = network_inputs()
    compiled = torch.compile(small_network, backend=backend, fullgraph=True)
    expected = small_network(*inputs)
    assert_close(compiled(*inputs), expected)
    assert_close(expected, torch_network(*inputs))


def test_compile_dynamic_shapes():
    compiled = torch.compile(small_network, backend="aot_eager", fullgraph=True, dynamic=True)
    for batch, size in ((1, 10), (3, 12), (2, 9)):
        inputs = network_inputs(torch.float64, batch, size)
        assert_close(compiled(*inputs), torch_network(*inputs))


def test_compile_backward_matches_torch():
    inputs = network_inputs(torch.float64)
    compiled = torch.compile(small_network, backend="aot_eager", fullgraph=True)
    assert_same_grads(compiled, torch_network, inputs, 31)


def test_compile_reports_bad_arguments_clearly():
    compiled = torch.compile(small_network, backend="aot_eager", fullgraph=True)
    inputs = list(network_inputs())
    inputs[1] = randn((4, 2, 3, 3), torch.float32, 1)  # 2 input channels for a 3-channel input
    # Dynamo wraps the fake implementation's ValueError in a RuntimeError that quotes it.
    with pytest.raises((ValueError, RuntimeError), match="input has 3 channels"):
        compiled(*inputs)


class _NoOpMode(torch.overrides.TorchFunctionMode):
    def __torch_function__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("through_custom_op", [False, True])
def test_eager_paths_give_torch_gradients(through_custom_op):
    """Eager autograd runs ai3's autograd.Function; under a torch function
    mode it runs the custom op instead. Both give torch's gradients."""
    x = randn((2, 4, 9, 9), torch.float64, 7).requires_grad_()
    w = randn((6, 4, 3, 3), torch.float64, 8).requires_grad_()
    b = randn((6,), torch.float64, 9).requires_grad_()
    lin = randn((5, 6 * 3 * 3), torch.float64, 10).requires_grad_()

    def net(conv, pool, relu, linear):
        y = relu(pool(conv(x, w, b)))
        return linear(y.flatten(1), lin).sum()

    ours = (lambda x, w, b: _ops.conv2d(x, w, b, (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros",
                                        "default"),
            lambda y: _ops.maxpool2d(y, (3, 3), (3, 3), (0, 0), (1, 1), False, "default"),
            lambda y: _ops.relu(y, "default"),
            lambda y, weight: _ops.linear(y, weight, None, "default"))
    theirs = (lambda x, w, b: F.conv2d(x, w, b, padding=1), lambda y: F.max_pool2d(y, 3),
              torch.relu, lambda y, weight: F.linear(y, weight))
    if through_custom_op:
        with _NoOpMode():
            assert _ops._path(x, w) == _ops._CUSTOM_OP
            grads = torch.autograd.grad(net(*ours), (x, w, b, lin))
    else:
        assert _ops._path(x, w) == _ops._AUTOGRAD
        grads = torch.autograd.grad(net(*ours), (x, w, b, lin))
    want = torch.autograd.grad(net(*theirs), (x, w, b, lin))
    for g, t in zip(grads, want):
        assert_close(g, t, torch.float64)
