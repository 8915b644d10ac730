"""The ai3 custom ops against torch.nn.functional: every op x algorithm x dtype
over randomly drawn valid parameters, and clear errors for bad ones."""

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import ai3
from ai3 import _core, _ops
from conftest import DTYPES, LIMITED_ALGORITHMS, algorithms, assert_close, randn

SWEEP = settings(max_examples=20, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def call(algorithm, fn, *inputs, may_refuse=True):
    """fn(), checking that it leaves `inputs` unmodified. An algorithm in
    LIMITED_ALGORITHMS may refuse with UnsupportedError (None is returned)
    where may_refuse; any other must compute the result."""
    before = [t.clone() for t in inputs if t is not None]
    try:
        out = fn()
    except ai3.UnsupportedError as e:
        if not may_refuse or algorithm not in LIMITED_ALGORITHMS:
            raise
        assert str(e)
        out = None
    for b, t in zip(before, [t for t in inputs if t is not None]):
        assert torch.equal(b, t), "an input was modified"
    return out


def batch_shape(draw):
    """() for an unbatched input, else (N,)."""
    return draw(st.sampled_from([(), (1,), (2,)]))


# ---------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------


@st.composite
def conv2d_cases(draw, only_3x3_stride_1=False):
    """Valid nn.Conv2d parameters and input size; only_3x3_stride_1 keeps to
    the case every algorithm (Winograd included) must compute."""
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    depthwise = groups > 1 and draw(st.booleans())
    c_in = groups * (1 if depthwise else draw(st.integers(1, 3)))
    c_out = groups * draw(st.integers(1, 3))
    kh, kw = (3, 3) if only_3x3_stride_1 else (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (1, 1) if only_3x3_stride_1 else (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    form = draw(st.sampled_from(["int", "pair", "same", "valid", "explicit"]))
    if form == "same" or only_3x3_stride_1:
        stride = (1, 1)
    else:
        stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if form == "int":
        padding = draw(st.integers(0, 2))
    elif form == "pair":
        padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    elif form == "explicit":  # (top, bottom, left, right), as ai3 takes it
        padding = tuple(draw(st.integers(0, 3)) for _ in range(4))
    else:
        padding = form
    mode = draw(st.sampled_from(PADDING_MODES))
    top, bottom, left, right = (padding if form == "explicit"
                                else _ops.conv2d_padding(padding, (kh, kw), dilation))

    def size(before, after, extent):
        smallest = max(1, extent - before - after)
        if mode == "reflect":
            smallest = max(smallest, max(before, after) + 1)
        elif mode == "circular":
            smallest = max(smallest, max(before, after))
        return draw(st.integers(smallest, smallest + 5))

    h = size(top, bottom, dilation[0] * (kh - 1) + 1)
    w = size(left, right, dilation[1] * (kw - 1) + 1)
    return dict(batch=batch_shape(draw), c_in=c_in, c_out=c_out, h=h, w=w, kernel=(kh, kw),
                stride=stride, padding=padding, explicit=(top, bottom, left, right),
                dilation=dilation, groups=groups, padding_mode=mode,
                bias=draw(st.booleans()), seed=draw(SEEDS))


def conv2d_reference(case, x, weight, bias):
    """torch's result in float64: nn.Conv2d for the padding forms it takes,
    F.pad + F.conv2d for explicit per-side padding."""
    x, weight = x.double(), weight.double()
    bias = bias.double() if bias is not None else None
    if isinstance(case["padding"], tuple) and len(case["padding"]) == 4:
        top, bottom, left, right = case["padding"]
        mode = "constant" if case["padding_mode"] == "zeros" else case["padding_mode"]
        padded = F.pad(x, (left, right, top, bottom), mode=mode)
        return F.conv2d(padded, weight, bias, case["stride"], 0, case["dilation"], case["groups"])
    m = torch.nn.Conv2d(case["c_in"], case["c_out"], case["kernel"], case["stride"],
                        case["padding"], case["dilation"], case["groups"], bias is not None,
                        case["padding_mode"], dtype=torch.float64)
    with torch.no_grad():
        m.weight.copy_(weight)
        if bias is not None:
            m.bias.copy_(bias)
        return m(x)


def conv2d_tensors(case, dtype):
    s = case["seed"]
    x = randn((*case["batch"], case["c_in"], case["h"], case["w"]), dtype, s)
    weight = randn((case["c_out"], case["c_in"] // case["groups"], *case["kernel"]), dtype, s + 1)
    bias = randn((case["c_out"],), dtype, s + 2) if case["bias"] else None
    return x, weight, bias


# torch warns that its own 'same' reference may copy the input.
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("conv2d"))
@SWEEP
@given(case=conv2d_cases())
def test_conv2d_matches_torch(algorithm, dtype, case):
    check_conv2d(algorithm, dtype, case, may_refuse=True)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("conv2d"))
@settings(max_examples=10, deadline=None)
@given(case=conv2d_cases(only_3x3_stride_1=True))
def test_conv2d_3x3_stride_1_matches_torch(algorithm, dtype, case):
    check_conv2d(algorithm, dtype, case, may_refuse=False)


def check_conv2d(algorithm, dtype, case, may_refuse):
    x, weight, bias = conv2d_tensors(case, dtype)
    out = call(algorithm, lambda: _ops.conv2d(x, weight, bias, case["stride"], case["explicit"],
                                              case["dilation"], case["groups"],
                                              case["padding_mode"], algorithm),
               x, weight, bias, may_refuse=may_refuse)
    if out is not None:
        assert out.dtype == dtype
        assert_close(out, conv2d_reference(case, x, weight, bias), algorithm)


@pytest.mark.parametrize(
    "padding, kernel, dilation, expected",
    [
        (0, (3, 3), (1, 1), (0, 0, 0, 0)),
        (2, (3, 3), (1, 1), (2, 2, 2, 2)),
        ((1, 2), (3, 3), (1, 1), (1, 1, 2, 2)),
        ("valid", (3, 3), (1, 1), (0, 0, 0, 0)),
        ("same", (3, 3), (1, 1), (1, 1, 1, 1)),
        ("same", (4, 2), (1, 1), (1, 2, 0, 1)),  # the extra goes bottom/right
        ("same", (3, 4), (2, 3), (2, 2, 4, 5)),
    ],
)
def test_conv2d_padding(padding, kernel, dilation, expected):
    assert _ops.conv2d_padding(padding, kernel, dilation) == expected
    module = torch.nn.Conv2d(1, 1, kernel, padding=padding, dilation=dilation)
    assert _ops.conv2d_padding(module) == expected


# ---------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------


@st.composite
def linear_cases(draw):
    lead = draw(st.sampled_from([(), (1,), (3,), (2, 3)]))
    return dict(lead=lead, in_features=draw(st.integers(1, 20)),
                out_features=draw(st.integers(1, 20)), bias=draw(st.booleans()),
                seed=draw(SEEDS))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("linear"))
@SWEEP
@given(case=linear_cases())
def test_linear_matches_torch(algorithm, dtype, case):
    s = case["seed"]
    x = randn((*case["lead"], case["in_features"]), dtype, s)
    weight = randn((case["out_features"], case["in_features"]), dtype, s + 1)
    bias = randn((case["out_features"],), dtype, s + 2) if case["bias"] else None
    out = call(algorithm, lambda: _ops.linear(x, weight, bias, algorithm), x, weight, bias)
    if out is not None:
        expected = F.linear(x.double(), weight.double(), bias.double() if bias is not None else None)
        assert_close(out, expected, algorithm)


# ---------------------------------------------------------------------------
# maxpool2d, avgpool2d, adaptiveavgpool2d
# ---------------------------------------------------------------------------


@st.composite
def pool_cases(draw, dilation=True):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    h, w = (draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 12))
            for k, p, d in zip(kernel, padding, dil))
    return dict(shape=(*batch_shape(draw), draw(st.integers(1, 3)), h, w), kernel=kernel,
                stride=stride, padding=padding, dilation=dil, ceil_mode=draw(st.booleans()),
                count_include_pad=draw(st.booleans()),
                divisor_override=draw(st.sampled_from([None, None, 1, 3, 7])),
                seed=draw(SEEDS))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("maxpool2d"))
@SWEEP
@given(case=pool_cases())
def test_maxpool2d_matches_torch(algorithm, dtype, case):
    x = randn(case["shape"], dtype, case["seed"])
    args = (case["kernel"], case["stride"], case["padding"], case["dilation"], case["ceil_mode"])
    out = call(algorithm, lambda: _ops.maxpool2d(x, *args, algorithm), x)
    if out is not None:
        assert_close(out, F.max_pool2d(x.double(), *args), algorithm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("avgpool2d"))
@SWEEP
@given(case=pool_cases(dilation=False))
def test_avgpool2d_matches_torch(algorithm, dtype, case):
    x = randn(case["shape"], dtype, case["seed"])
    args = (case["kernel"], case["stride"], case["padding"], case["ceil_mode"],
            case["count_include_pad"], case["divisor_override"])
    out = call(algorithm, lambda: _ops.avgpool2d(x, *args, algorithm), x)
    if out is not None:
        assert_close(out, F.avg_pool2d(x.double(), *args), algorithm)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("adaptiveavgpool2d"))
@SWEEP
@given(batch=st.sampled_from([(), (1,), (2,)]), channels=st.integers(1, 3),
       size=st.tuples(st.integers(1, 13), st.integers(1, 13)),
       output_size=st.tuples(st.integers(1, 8), st.integers(1, 8)), seed=SEEDS)
def test_adaptiveavgpool2d_matches_torch(algorithm, dtype, batch, channels, size, output_size,
                                         seed):
    x = randn((*batch, channels, *size), dtype, seed)
    out = call(algorithm, lambda: _ops.adaptiveavgpool2d(x, output_size, algorithm), x)
    if out is not None:
        assert_close(out, F.adaptive_avg_pool2d(x.double(), output_size), algorithm)


# ---------------------------------------------------------------------------
# relu, flatten
# ---------------------------------------------------------------------------

SHAPES = st.lists(st.integers(1, 5), min_size=0, max_size=4).map(tuple)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("relu"))
@SWEEP
@given(shape=SHAPES, seed=SEEDS)
def test_relu_matches_torch(algorithm, dtype, shape, seed):
    x = randn(shape, dtype, seed)
    out = call(algorithm, lambda: _ops.relu(x, algorithm), x)
    if out is not None:
        assert out.data_ptr() != x.data_ptr()
        assert_close(out, F.relu(x.double()), algorithm)


@st.composite
def flatten_cases(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
    n = len(shape)
    start = draw(st.integers(0, n - 1))
    end = draw(st.integers(start, n - 1))
    # Either form of each index: i or i - n.
    start = start - n if draw(st.booleans()) else start
    end = end - n if draw(st.booleans()) else end
    return dict(shape=shape, start=start, end=end, seed=draw(SEEDS))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("flatten"))
@SWEEP
@given(case=flatten_cases())
def test_flatten_matches_torch(algorithm, dtype, case):
    x = randn(case["shape"], dtype, case["seed"])
    out = call(algorithm, lambda: _ops.flatten(x, case["start"], case["end"], algorithm), x)
    if out is not None:
        assert out.data_ptr() != x.data_ptr()
        assert_close(out, torch.flatten(x.double(), case["start"], case["end"]), algorithm)


# ---------------------------------------------------------------------------
# Layouts and empty tensors
# ---------------------------------------------------------------------------


def test_non_contiguous_inputs_are_computed_correctly():
    x = randn((2, 9, 10, 3)).permute(0, 3, 1, 2)  # (2, 3, 9, 10), not contiguous
    assert not x.is_contiguous()
    weight = randn((4, 5, 3, 3), seed=1)[:, 1:4]  # sliced, not contiguous
    bias = randn((8,), seed=2)[::2]
    out = _ops.conv2d(x, weight, bias, (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros", "default")
    assert_close(out, F.conv2d(x, weight, bias, padding=1))
    assert_close(_ops.relu(x, "default"), F.relu(x))
    assert_close(_ops.maxpool2d(x, (2, 2), (2, 2), (0, 0), (1, 1), False, "default"),
                 F.max_pool2d(x, 2))
    assert_close(_ops.flatten(x, 1, -1, "default"), x.flatten(1))
    xt, wt = randn((5, 3), seed=3).t(), randn((5, 4), seed=5).t()
    assert_close(_ops.linear(xt, wt, bias[:4], "default"), F.linear(xt, wt, bias[:4]))
    channels_last = randn((1, 3, 6, 6), seed=4).to(memory_format=torch.channels_last)
    assert_close(_ops.adaptiveavgpool2d(channels_last, (4, 5), "default"),
                 F.adaptive_avg_pool2d(channels_last, (4, 5)))


def test_empty_batch_gives_empty_output():
    x = torch.empty(0, 3, 8, 8)
    out = _ops.conv2d(x, torch.randn(4, 3, 3, 3), None, (1, 1), (0, 0, 0, 0), (1, 1), 1, "zeros",
                      "default")
    assert out.shape == (0, 4, 6, 6)


def test_meta_tensors_propagate_shapes():
    x = torch.empty(2, 3, 16, 16, device="meta")
    weight = torch.empty(8, 3, 3, 3, device="meta")
    out = _ops.conv2d(x, weight, None, (2, 2), (1, 1, 1, 1), (1, 1), 1, "zeros", "default")
    assert out.device.type == "meta" and out.shape == (2, 8, 8, 8)
    out = _ops.maxpool2d(out, (3, 3), (2, 2), (1, 1), (1, 1), True, "default")
    assert out.shape == F.max_pool2d(torch.empty(2, 8, 8, 8), 3, 2, 1, ceil_mode=True).shape
    assert out.shape == (2, 8, 5, 5)
    assert _ops.flatten(out, 1, -1, "default").shape == (2, 8 * 5 * 5)


# ---------------------------------------------------------------------------
# Bad arguments: clear exceptions, never a crash
# ---------------------------------------------------------------------------

X = randn((1, 4, 8, 8))
W = randn((6, 4, 3, 3), seed=1)


def conv(x=X, weight=W, bias=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
         groups=1, padding_mode="zeros", algorithm="default"):
    return _ops.conv2d(x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(x=X.to(torch.int64)), TypeError, "torch.int64"),
        (dict(x=X.half(), weight=W.half()), TypeError, "torch.float16"),
        (dict(weight=W.float()), ValueError, "dtype"),
        (dict(x=X[0, 0]), ValueError, "input must be"),
        (dict(x=X[None]), ValueError, "input must be"),
        (dict(weight=W[0]), ValueError, "weight must be"),
        (dict(weight=randn((6, 3, 3, 3))), ValueError, "channels"),
        (dict(weight=randn((6, 2, 3, 3)), groups=3), ValueError, "channels"),
        (dict(weight=randn((5, 2, 3, 3)), groups=2), ValueError, "divisible"),
        (dict(bias=randn((5,))), ValueError, "bias"),
        (dict(x=randn((1, 4, 2, 8))), ValueError, "smaller than"),
        (dict(dilation=(4, 1)), ValueError, "smaller than"),
        (dict(stride=(0, 1)), ValueError, "stride"),
        (dict(padding=(-1, 0, 0, 0)), ValueError, "padding"),
        (dict(padding=(1, 1)), ValueError, "padding"),
        (dict(groups=0), ValueError, "groups"),
        (dict(padding_mode="mirror"), ValueError, "padding_mode"),
        (dict(padding=(8, 8, 0, 0), padding_mode="reflect"), ValueError, "reflect"),
        (dict(padding=(9, 0, 0, 0), padding_mode="circular"), ValueError, "circular"),
        (dict(algorithm="no such algorithm"), ValueError, "unknown algorithm"),
    ],
)
def test_conv2d_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        conv(**kwargs)


@pytest.mark.parametrize(
    "fn, error, match",
    [
        (lambda: _ops.linear(randn((3, 5)), randn((4, 6)), None, "default"), ValueError, "features"),
        (lambda: _ops.linear(randn((3, 5)), randn((4, 5, 1)), None, "default"), ValueError, "weight"),
        (lambda: _ops.linear(randn((3, 5)), randn((4, 5)), randn((3,)), "default"), ValueError, "bias"),
        (lambda: _ops.linear(randn((3, 5)).int(), randn((4, 5)), None, "default"), TypeError, "int32"),
        (lambda: _ops.maxpool2d(randn((8, 8)), (2, 2), (2, 2), (0, 0), (1, 1), False, "default"),
         ValueError, "input must be"),
        (lambda: _ops.maxpool2d(X, (2, 2), (2, 2), (2, 0), (1, 1), False, "default"),
         ValueError, "half"),
        (lambda: _ops.maxpool2d(X, (9, 2), (1, 1), (0, 0), (1, 1), False, "default"),
         ValueError, "too small"),
        (lambda: _ops.maxpool2d(X, (0, 2), (1, 1), (0, 0), (1, 1), False, "default"),
         ValueError, "kernel size"),
        (lambda: _ops.maxpool2d(X.half(), (2, 2), (2, 2), (0, 0), (1, 1), False, "default"),
         TypeError, "float16"),
        (lambda: _ops.avgpool2d(X, (2, 2), (2, 2), (0, 0), False, True, 0, "default"),
         ValueError, "divisor_override"),
        (lambda: _ops.avgpool2d(X, (2, 2), (0, 2), (0, 0), False, True, None, "default"),
         ValueError, "stride"),
        (lambda: _ops.adaptiveavgpool2d(X, (0, 2), "default"), ValueError, "output_size"),
        (lambda: _ops.adaptiveavgpool2d(randn((8,)), (2, 2), "default"), ValueError, "input must be"),
        (lambda: _ops.relu(X.to(torch.int32), "default"), TypeError, "int32"),
        (lambda: _ops.relu(X, "gemm"), ValueError, "unknown algorithm"),
        (lambda: _ops.flatten(X, 2, 1, "default"), ValueError, "after"),
        (lambda: _ops.flatten(X, 0, 4, "default"), ValueError, "out of range"),
    ],
)
def test_other_ops_reject_bad_arguments(fn, error, match):
    with pytest.raises(error, match=match):
        fn()


def test_unsupported_error_is_a_value_error():
    assert issubclass(ai3.UnsupportedError, ValueError)


def test_cuda_tensors_propagate_shapes_when_traced():
    # Fake CUDA tensors need no GPU: what torch.compile sees for a CUDA model.
    from torch._subclasses.fake_tensor import FakeTensorMode

    available, why = _ops.cuda_backend()
    with FakeTensorMode():
        x = torch.empty(1, 4, 8, 8, device="cuda")
        if not available:
            with pytest.raises(ai3.UnsupportedError, match="CUDA"):
                conv(x=x, weight=torch.empty(6, 4, 3, 3, device="cuda"))
            return
        y = conv(x=x, weight=torch.empty(6, 4, 3, 3, device="cuda"))
        assert y.shape == (1, 6, 6, 6) and y.device.type == "cuda"
        assert _ops.relu(x.half(), "default").dtype == torch.float16
        with pytest.raises(ValueError, match="unknown algorithm 'nothing' on CUDA"):
            _ops.relu(x, "nothing")


def test_float16_is_refused_on_the_cpu():
    with pytest.raises(TypeError, match="CUDA"):
        conv(x=X.half(), weight=W.half())
    with pytest.raises(TypeError, match="CUDA"):
        _ops.relu(X.half(), "default")


# The C boundary itself, called directly.

def test_core_rejects_bad_tensors():
    args = (1, 1, 0, 0, 0, 0, 1, 1, 1, "zeros")
    plan = _core.plan("conv2d", "direct", (W,), args)
    assert torch.equal(_core.run(plan, X.transpose(2, 3).contiguous().transpose(2, 3)),
                       _core.run(plan, X))  # a non-contiguous input is made contiguous
    with pytest.raises(ValueError, match="contiguous"):
        _core.plan("conv2d", "direct", (W.transpose(2, 3),), args)
    with pytest.raises(TypeError, match="torch.Tensor"):
        _core.run(plan, X.numpy())
    with pytest.raises(TypeError, match="float16"):
        _core.run(plan, X.half())
    with pytest.raises(ValueError, match="dtype"):
        _core.run(plan, X.float())
    with pytest.raises(ValueError, match="unknown algorithm"):
        _core.plan("conv2d", "no such algorithm", (W,), args)
    with pytest.raises(ai3.UnsupportedError, match="meta"):
        _core.run(_core.plan("relu", "default", (), ()), X.to("meta"))
    with pytest.raises(ValueError, match="padding_mode"):
        _core.plan("conv2d", "direct", (W,), args[:-1] + ("mirror",))
    with pytest.raises(TypeError, match="weight must be a torch.Tensor"):
        _core.plan("linear", "gemm", ("W",), ())
    with pytest.raises(ValueError, match="weight"):
        _core.plan("conv2d", "direct", (), args)
    with pytest.raises(TypeError):
        _core.plan("conv2d", "direct", (W,), args[:3])
    with pytest.raises((TypeError, ValueError)):
        _core.run("not a plan", X)
    with pytest.raises(ValueError, match="unknown operation"):
        _core.list_algorithms("conv3d")


def test_concurrent_calls_from_python_threads():
    # The GIL is released during compute: calls from several threads at once
    # must each get their own correct result.
    from concurrent.futures import ThreadPoolExecutor

    inputs = [randn((2, 4, 12, 12), seed=s) for s in range(8)]
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda x: conv(x=x, padding=(1, 1, 1, 1)), inputs))
    for x, out in zip(inputs, outs):
        assert_close(out, F.conv2d(x, W, padding=1))


def test_core_threads_and_registry():
    n = _core.get_num_threads()
    try:
        _core.set_num_threads(1)
        assert _core.get_num_threads() == 1
        with pytest.raises(ValueError):
            _core.set_num_threads(0)
    finally:
        _core.set_num_threads(n)
    for op in ("conv2d", "linear", "maxpool2d", "avgpool2d", "adaptiveavgpool2d", "relu",
               "flatten"):
        names = _core.list_algorithms(op)
        assert names and all(isinstance(name, str) for name in names)
        assert {r[0]: r[1] for r in _core.OPERATIONS}[op] in names
    with pytest.raises(ValueError, match="nonexistent"):
        _core.load_algorithms("nonexistent-ai3-algorithms.so")
