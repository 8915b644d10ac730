"""Any input, in a hypothesis sweep: random shapes (zero-size ones too),
memory layouts (non-contiguous, channels-last, expanded, offset), dtypes and
parameters (invalid ones too), against swapped modules and converted
models. Every case gives torch's result (within the tolerance of its
dtype) or a clear exception (ValueError, TypeError or RuntimeError with a
message), never a crash; where torch refuses, ai3 refuses too; and neither
the input nor the weights are ever modified."""

import copy
import warnings

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import nn

import ai3
from ai3 import UnsupportedError, swap
from conftest import HAS_BF16, LIMITED_ALGORITHMS, tolerance

SWEEP = settings(max_examples=100, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
CLEAR = (ValueError, TypeError, RuntimeError)
COMPUTED = (torch.float32, torch.float64)  # what ai3 computes on the CPU
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64,
          torch.int32, torch.uint8, torch.bool, torch.complex64]
LAYOUTS = ["contiguous", "channels_last", "transposed", "strided", "offset", "expanded"]


# ---------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------


def values(shape, dtype, seed):
    g = torch.Generator().manual_seed(seed)
    if dtype.is_complex:
        return torch.randn(shape, generator=g, dtype=dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=g).bool()
    if not dtype.is_floating_point:
        return torch.randint(0 if dtype == torch.uint8 else -5, 6, shape, generator=g).to(dtype)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(dtype)


def make_input(shape, dtype, layout, seed):
    """A tensor of `shape` laid out in memory as `layout` says."""
    shape = tuple(shape)
    nd = len(shape)
    if layout == "channels_last" and nd == 4:
        return values(shape, dtype, seed).contiguous(memory_format=torch.channels_last)
    if layout == "transposed" and nd >= 2:
        return values((*shape[:-2], shape[-1], shape[-2]), dtype, seed).transpose(-1, -2)
    if layout == "strided" and nd >= 1:
        return values((*shape[:-1], 2 * shape[-1]), dtype, seed)[..., ::2]
    if layout == "offset" and nd >= 1:
        return values((shape[0] + 1, *shape[1:]), dtype, seed)[1:]
    if layout == "expanded" and nd >= 1:
        return values((1, *shape[1:]), dtype, seed).expand(shape)
    return values(shape, dtype, seed)


@st.composite
def input_for(draw, shape, dtype=torch.float32):
    """An input of about `shape`: often exactly it, else with zero-size,
    missing, extra or resized dimensions; in any layout, and mostly in
    `dtype`, else any."""
    shape = list(shape)
    change = draw(st.sampled_from(["none"] * 4 + ["zero batch", "zero dim", "resize", "drop",
                                                  "add"]))
    if change == "zero batch" and shape:
        shape[0] = 0
    elif change == "zero dim" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = 0
    elif change == "resize" and shape:
        shape[draw(st.integers(0, len(shape) - 1))] = draw(st.integers(1, 7))
    elif change == "drop" and shape:
        del shape[0]
    elif change == "add" and len(shape) < 6:
        shape.insert(0, draw(st.integers(1, 2)))
    dtype = draw(st.sampled_from((dtype,) * 8 + tuple(DTYPES)))
    layout = draw(st.sampled_from(LAYOUTS))
    return make_input(shape, dtype, layout, draw(st.integers(0, 2**31 - 1)))


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------


def snapshot(*tensors):
    return [t.clone() for t in tensors]


def assert_unchanged(tensors, before, what):
    for t, b in zip(tensors, before):
        assert t.dtype == b.dtype and t.shape == b.shape
        assert torch.equal(t, b), f"ai3 modified the {what}"


def outcome(fn, errors=CLEAR):
    """(result, None), or (None, the exception) for one of `errors` (ai3's
    must be clear: a ValueError, TypeError or RuntimeError with a message).
    Any other exception propagates and fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(), None
    except errors as e:
        assert str(e).strip(), f"{type(e).__name__} without a message"
        return None, e


def check(torch_fn, ai3_fn, reference_fn, x, tensors, dtype, algorithm=None, allowed=None,
          beyond=None):
    """ai3_fn(x) against torch_fn(x): the same verdict, the same result.

    reference_fn(x) computes torch's result in float64 for the comparison;
    tensors are the weights, which nothing may modify; allowed(e) says
    whether ai3 may refuse what torch computes (ai3's documented limits),
    beyond(x, torch_error, result) whether ai3 may compute what torch
    refuses (and checks that result)."""
    before = snapshot(x, *tensors)
    want, torch_error = outcome(lambda: torch_fn(x), Exception)  # (torch's IndexError too)
    got, ai3_error = outcome(lambda: ai3_fn(x))
    assert_unchanged([x], before[:1], "input")
    assert_unchanged(tensors, before[1:], "weights")
    event(f"torch {'refuses' if torch_error else 'computes'}, "
          f"ai3 {'refuses' if ai3_error else 'computes'}")  # (--hypothesis-show-statistics)
    if torch_error is not None:
        if ai3_error is None:
            assert beyond is not None and beyond(x, torch_error, got), \
                f"torch refuses ({torch_error}) but ai3 computes"
        return
    if ai3_error is not None:
        assert (allowed is not None and allowed(ai3_error)) or \
            refuses_as_if_not_empty(torch_fn, x, ai3_error), \
            f"ai3 refuses what torch computes: {type(ai3_error).__name__}: {ai3_error}"
        return
    outputs = got if isinstance(got, tuple) else (got,)
    wanted = want if isinstance(want, tuple) else (want,)
    references = reference_fn(x)
    references = references if isinstance(references, tuple) else (references,)
    for out, w, ref in zip(outputs, wanted, references):
        assert out.shape == w.shape, (out.shape, w.shape)
        assert out.dtype == w.dtype == dtype, (out.dtype, w.dtype)
        assert out.device == w.device
        torch.testing.assert_close(out.double(), ref.double(), **tolerance(dtype, algorithm))


def refuses_as_if_not_empty(torch_fn, x, ai3_error):
    """Whether ai3 may refuse an empty input that torch computes. torch
    skips some of its checks (dtypes, shapes, parameters) when there is
    nothing to compute, and is not consistent across operations about
    empty channels or planes; ai3 checks every input. An empty batch must
    compute, though, unless torch refuses the same input with a batch of
    one."""
    if x.numel() == 0 and (x.dim() == 0 or x.shape[0] != 0 or 0 in x.shape[1:]):
        return True  # other dimensions than the batch are empty
    if x.numel() != 0:
        return False
    analog = make_input((1, *x.shape[1:]), x.dtype, "contiguous", 0)
    return outcome(lambda: torch_fn(analog), Exception)[1] is not None


def ai3_limit(x_dtype, algorithm=None):
    """What ai3 may refuse that torch computes: dtypes other than float32
    and float64 (on the CPU), with a TypeError, or bfloat16 on a CPU without
    AVX512_BF16 with an UnsupportedError saying so; the limited algorithms'
    parameters (winograd: 3x3, stride 1), with an UnsupportedError."""
    def allowed(e):
        if x_dtype == torch.bfloat16 and not HAS_BF16 and isinstance(e, UnsupportedError):
            return "AVX512_BF16" in str(e)
        if x_dtype not in COMPUTED:
            return isinstance(e, TypeError) and "dtype" in str(e)
        return algorithm in LIMITED_ALGORITHMS and isinstance(e, UnsupportedError)
    return allowed


# ---------------------------------------------------------------------------
# Swapped modules
# ---------------------------------------------------------------------------


def pair(draw, lo, hi):
    a = draw(st.integers(lo, hi))
    return a if draw(st.booleans()) else (a, draw(st.integers(lo, hi)))


@st.composite
def conv2d_case(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    c_in, c_out = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    kernel = pair(draw, 1, 4)
    padding = draw(st.one_of(st.just("valid"), st.just("same"), st.integers(0, 2),
                             st.tuples(st.integers(0, 2), st.integers(0, 2))))
    stride = 1 if padding == "same" else pair(draw, 1, 3)
    m = nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding,
                  dilation=pair(draw, 1, 2), groups=groups, bias=draw(st.booleans()),
                  padding_mode=draw(st.sampled_from(["zeros", "reflect", "replicate",
                                                     "circular"])))
    bad = draw(st.sampled_from([None] * 12 + ["stride", "padding", "dilation"]))
    if bad:  # a parameter torch refuses, set after construction
        setattr(m, bad, (0, 1) if bad != "padding" else (-1, 0))
        m.bad_parameter = bad
    shape = (draw(st.integers(1, 3)), c_in, draw(st.integers(2, 10)), draw(st.integers(2, 10)))
    if draw(st.booleans()):
        shape = shape[1:]  # unbatched
    algorithm = draw(st.sampled_from(ai3.SUPPORTED_ALGORITHMS["conv2d"] + ["default"]))
    return m, shape, algorithm


@st.composite
def linear_case(draw):
    m = nn.Linear(draw(st.integers(1, 6)), draw(st.integers(1, 6)), bias=draw(st.booleans()))
    lead = draw(st.lists(st.integers(1, 3), max_size=3))
    return m, (*lead, m.in_features), draw(st.sampled_from(["gemm", "default"]))


@st.composite
def pool_case(draw):
    kind = draw(st.sampled_from(["max", "avg", "adaptive"]))
    if kind == "adaptive":
        size = draw(st.one_of(st.integers(1, 4), st.tuples(st.one_of(st.none(), st.integers(1, 4)),
                                                           st.one_of(st.none(),
                                                                     st.integers(1, 4)))))
        m = nn.AdaptiveAvgPool2d(size)
    else:
        kernel = pair(draw, 1, 3)
        k = kernel if isinstance(kernel, tuple) else (kernel, kernel)
        padding = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
        if draw(st.integers(0, 7)) == 0:
            padding = (k[0] // 2 + 1, 0)  # more than half the kernel: torch refuses
        stride = draw(st.one_of(st.none(), st.integers(1, 3)))
        if kind == "max":
            m = nn.MaxPool2d(kernel, stride, padding, dilation=pair(draw, 1, 2),
                             ceil_mode=draw(st.booleans()))
        else:
            m = nn.AvgPool2d(kernel, stride, padding, ceil_mode=draw(st.booleans()),
                             count_include_pad=draw(st.booleans()),
                             divisor_override=draw(st.sampled_from([None, 1, 3])))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 8)),
             draw(st.integers(1, 8)))
    if draw(st.booleans()):
        shape = shape[1:]
    return m, shape, draw(st.sampled_from(["direct", "default"]))


ELEMENTWISE = [nn.ReLU, lambda: nn.ReLU(inplace=True), nn.Sigmoid, nn.Hardsigmoid,
               nn.Hardswish, lambda: nn.Hardswish(inplace=True), nn.SiLU, nn.GELU,
               lambda: nn.GELU("tanh"), nn.ReLU6, lambda: nn.Hardtanh(-0.5, 2.0),
               lambda: nn.Hardtanh(0.0, 6.0, inplace=True)]


@st.composite
def elementwise_case(draw):
    m = draw(st.sampled_from(ELEMENTWISE))()
    shape = draw(st.lists(st.integers(1, 5), max_size=5))
    return m, shape, draw(st.sampled_from(["direct", "default"]))


@st.composite
def flatten_case(draw):
    nd = draw(st.integers(0, 5))
    start = draw(st.integers(-max(nd, 1), max(nd, 1) - 1))
    end = draw(st.integers(-max(nd, 1), max(nd, 1) - 1))
    m = nn.Flatten(start, end)
    return m, draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd)), "default"


@st.composite
def batchnorm_case(draw):
    c = draw(st.integers(1, 4))
    m = nn.BatchNorm2d(c, affine=draw(st.booleans())).eval()
    with torch.no_grad():
        g = torch.Generator().manual_seed(draw(st.integers(0, 1000)))
        m.running_mean.normal_(generator=g)
        m.running_var.uniform_(0.5, 2.0, generator=g)
        if m.affine:
            m.weight.normal_(generator=g)
            m.bias.normal_(generator=g)
    shape = (draw(st.integers(1, 3)), c, draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    return m, shape if draw(st.booleans()) else shape[1:], draw(st.sampled_from(["direct",
                                                                                 "default"]))


def check_swapped(data, case):
    m, shape, algorithm = data.draw(case)
    module_dtype = data.draw(st.sampled_from(COMPUTED))
    m = m.to(module_dtype)
    x = data.draw(input_for(shape, module_dtype))
    weights = list(m.parameters()) + list(m.buffers())

    def swapped(x):
        return swap.SWAPPED[_op_of(m)].from_torch(m, algorithm)(x)

    # ai3's modules always return a new tensor; torch's inplace=True ones
    # would write into the input
    reference = copy.deepcopy(m)
    if getattr(reference, "inplace", False):
        reference.inplace = False
    reference64 = copy.deepcopy(reference).double()
    limit = ai3_limit(x.dtype, algorithm)
    bad = getattr(m, "bad_parameter", None)
    if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size in (1, (1, 1)):
        # torch's adaptive pooling to 1x1 is a mean over the last two
        # dimensions, of any input; ai3 takes what nn.AdaptiveAvgPool2d
        # documents, (N, C, H, W) or (C, H, W)
        def limit(e, limit=limit):
            return limit(e) or (isinstance(e, ValueError) and "3-d (C, H, W)" in str(e))
    if bad:
        # torch checks parameters only for non-empty inputs; ai3 always
        def limit(e):
            return isinstance(e, ValueError) and bad in str(e)
    check(reference, swapped, lambda x: reference64(x.double()), x, weights, x.dtype,
          algorithm, limit)


def _op_of(m):
    for op, cls in ai3.OPERATIONS.items():
        if isinstance(m, cls):
            return op
    raise AssertionError(type(m))


@SWEEP
@given(st.data())
def test_swapped_conv2d(data):
    with torch.no_grad():
        check_swapped(data, conv2d_case())


@SWEEP
@given(st.data())
def test_swapped_linear(data):
    with torch.no_grad():
        check_swapped(data, linear_case())


@SWEEP
@given(st.data())
def test_swapped_pools(data):
    check_swapped(data, pool_case())


@SWEEP
@given(st.data())
def test_swapped_elementwise(data):
    check_swapped(data, elementwise_case())


@SWEEP
@given(st.data())
def test_swapped_flatten_and_batchnorm(data):
    check_swapped(data, st.one_of(flatten_case(), batchnorm_case()))


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_swapped_conv2d_with_autograd(data):
    """The autograd path (grad enabled, trainable weights) takes the same
    inputs and refuses the same ones."""
    check_swapped(data, conv2d_case())


# ---------------------------------------------------------------------------
# Converted models
# ---------------------------------------------------------------------------


ACTIVATIONS = [nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Sigmoid, nn.SiLU, nn.GELU, nn.Hardsigmoid]


@st.composite
def network(draw):
    """A random stack: convolutions (batch norm after some), pools and
    activations, then a head of adaptive pooling, flatten and linear; and
    the input shape it was made for."""
    c_in = c = draw(st.integers(1, 4))
    layers = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["conv", "conv", "pool", "act"]))
        if kind == "conv":
            groups = draw(st.sampled_from([1, 1, c]))
            out = groups * draw(st.integers(1, 3))
            layers.append(nn.Conv2d(c, out, draw(st.integers(1, 3)), draw(st.integers(1, 2)),
                                    draw(st.integers(0, 1)), groups=groups,
                                    bias=draw(st.booleans()),
                                    padding_mode=draw(st.sampled_from(["zeros", "reflect"]))))
            c = out
            if draw(st.booleans()):
                layers.append(nn.BatchNorm2d(c))
        elif kind == "pool":
            layers.append(draw(st.sampled_from([
                nn.MaxPool2d(2, ceil_mode=True), nn.MaxPool2d(3, 1, 1),
                nn.AvgPool2d(2, padding=1, count_include_pad=False)])))
        else:
            layers.append(draw(st.sampled_from(ACTIVATIONS))())
    if draw(st.booleans()):
        k = draw(st.integers(1, 2))
        layers += [nn.AdaptiveAvgPool2d(k), nn.Flatten(), nn.Linear(c * k * k, 3)]
    net = nn.Sequential(*layers).eval()
    g = torch.Generator().manual_seed(draw(st.integers(0, 1000)))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return net, (draw(st.integers(1, 3)), c_in, draw(st.integers(4, 10)),
                 draw(st.integers(4, 10)))


class _BatchOfOne(nn.Module):
    """A BatchNorm2d that computes a 3-d (unbatched) input as a batch of one."""

    def __init__(self, bn):
        super().__init__()
        self.bn = bn

    def forward(self, x):
        return self.bn(x[None])[0] if x.dim() == 3 else self.bn(x)


def unbatched_batchnorm(net):
    """A copy of the Sequential net whose BatchNorm2d layers take unbatched input."""
    return nn.Sequential(*(_BatchOfOne(m) if isinstance(m, nn.BatchNorm2d) else m
                           for m in copy.deepcopy(net)))


@SWEEP
@given(st.data())
def test_converted_models(data):
    net, shape = data.draw(network())
    dtype = data.draw(st.sampled_from(COMPUTED))
    model = ai3.convert(net, {"conv2d": data.draw(st.sampled_from(
        ["direct", "smm", "gemm", "implicit gemm", "implicit precomp gemm", "default"]))},
        dtype=dtype)
    x = data.draw(input_for(shape, dtype))
    net_d = copy.deepcopy(net).to(dtype)
    reference = copy.deepcopy(net).double()

    def torch_fn(x):
        # A Model takes any real dtype but float16/bfloat16 (cast to its own);
        # complex and half inputs are refused.
        if x.dtype.is_complex or x.dtype in (torch.float16, torch.bfloat16):
            raise TypeError(f"not a dtype a Model takes: {x.dtype}")
        return net_d(x.to(dtype))

    def beyond(x, torch_error, got):
        # nn.BatchNorm2d refuses an unbatched input; a Model computes it as
        # a batch of one, the rest of the network unbatched as torch would
        # (so a Flatten(start_dim=1) after it keeps the channels apart)
        if "expected 4D input (got 3D input)" not in str(torch_error):
            return False
        want = unbatched_batchnorm(reference)(x.double())
        assert got.shape == want.shape
        torch.testing.assert_close(got.double(), want, **tolerance(dtype))
        return True

    def allowed(e):
        # torch's adaptive pooling to 1x1 takes any input (see check_swapped)
        return "adaptiveavgpool2d" in str(e) and "3-d (C, H, W)" in str(e) and \
            any(isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size == 1 for m in net)

    with torch.no_grad():
        check(torch_fn, model, lambda x: reference(x.to(torch.float64)), x,
              list(net.parameters()) + list(net.buffers()), dtype, allowed=allowed,
              beyond=beyond)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_converted_model_inputs_in_any_layout(data):
    """One converted network, many inputs (the plans cached per input shape
    are reused and replaced)."""
    x = data.draw(input_for((2, 3, 9, 9)))
    model, net, reference = _fixed_model()

    def torch_fn(x):
        if x.dtype.is_complex or x.dtype in (torch.float16, torch.bfloat16):
            raise TypeError(f"not a dtype a Model takes: {x.dtype}")
        return net(x.float())

    with torch.no_grad():
        check(torch_fn, model, lambda x: reference(x.double()), x,
              list(net.parameters()) + list(net.buffers()), torch.float32)


_FIXED = []


def _fixed_model():
    if not _FIXED:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(),
                            nn.MaxPool2d(2, ceil_mode=True), nn.Conv2d(6, 6, 3, groups=3),
                            nn.Hardswish(), nn.AdaptiveAvgPool2d(2), nn.Flatten(),
                            nn.Linear(24, 5)).eval()
        _FIXED.append((ai3.convert(net), net, copy.deepcopy(net).double()))
    return _FIXED[0]


def test_model_refuses_complex_input():
    model, _, _ = _fixed_model()
    x = torch.randn(1, 3, 9, 9, dtype=torch.complex64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "discards the imaginary part" warning either
        try:
            model(x)
        except TypeError as e:
            assert "complex" in str(e)
        else:
            raise AssertionError("a complex input was computed")


def test_empty_batches_give_empty_outputs():
    """As torch: a zero-size batch computes to a zero-size output of the
    right shape, for every swapped operation and algorithm and for a
    converted model."""
    model, net, _ = _fixed_model()
    x = torch.randn(0, 3, 9, 9)
    with torch.no_grad():
        assert model(x).shape == net(x).shape == (0, 5)
    for op, cls in ai3.OPERATIONS.items():
        for algorithm in ai3.SUPPORTED_ALGORITHMS[op] + ["default"]:
            m = {"conv2d": lambda: nn.Conv2d(3, 4, 3), "linear": lambda: nn.Linear(9, 4),
                 "maxpool2d": lambda: nn.MaxPool2d(2), "avgpool2d": lambda: nn.AvgPool2d(2),
                 "adaptiveavgpool2d": lambda: nn.AdaptiveAvgPool2d(2),
                 "flatten": nn.Flatten, "batchnorm2d": lambda: nn.BatchNorm2d(3).eval(),
                 "hardtanh": nn.Hardtanh, "gelu": nn.GELU}.get(op, cls)()
            want = m(x)
            got = swap.SWAPPED[op].from_torch(m, algorithm)(x)
            assert got.shape == want.shape, (op, algorithm, got.shape, want.shape)
            assert want.numel() == 0


# Empty dimensions other than the batch: torch computes some and refuses
# others, and ai3 does as torch.
EMPTY = [
    (lambda: nn.MaxPool2d(2), (1, 0, 4, 4)),
    (lambda: nn.MaxPool2d(2, padding=1), (1, 1, 0, 3)),  # (padding is no window)
    (lambda: nn.MaxPool2d(2), (0, 3, 3)),  # unbatched: no batch to be empty
    (lambda: nn.AvgPool2d(2, padding=1), (2, 1, 3, 0)),
    (lambda: nn.AvgPool2d(3, 1, 1, ceil_mode=True), (1, 0, 3, 3)),
    (lambda: nn.AdaptiveAvgPool2d(2), (1, 0, 4, 4)),
    (lambda: nn.AdaptiveAvgPool2d((2, 3)), (1, 1, 0, 4)),
    (lambda: nn.Conv2d(3, 4, 3, padding=1), (1, 3, 0, 5)),
    (lambda: nn.Conv2d(3, 4, 1, padding=1), (2, 3, 4, 0)),
    (lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular"), (3, 0, 5)),
    (lambda: nn.Linear(4, 2), (2, 0, 4)),
    (lambda: nn.Linear(4, 2, bias=False), (0, 4)),
    (lambda: nn.BatchNorm2d(3).eval(), (2, 3, 0, 4)),
    (nn.ReLU, (2, 0, 3)),
    (nn.Hardswish, (0,)),
    (lambda: nn.Flatten(0, -1), (3, 0, 4)),
]


@pytest.mark.parametrize("make, shape", EMPTY, ids=[f"{make()._get_name()}-{shape}"
                                                    for make, shape in EMPTY])
def test_empty_dimensions_as_torch(make, shape):
    m = make()
    x = torch.randn(shape)
    want, torch_error = outcome(lambda: m(x), Exception)
    op = _op_of(m)
    for algorithm in ai3.SUPPORTED_ALGORITHMS[op]:
        got, ai3_error = outcome(lambda: swap.SWAPPED[op].from_torch(m, algorithm)(x))
        if torch_error is not None:
            assert ai3_error is not None, (algorithm, torch_error)
        else:
            assert ai3_error is None, (algorithm, ai3_error)
            assert got.shape == want.shape
