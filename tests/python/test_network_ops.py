"""The operations whole networks need (batchnorm2d, add, mul, cat, the
activations, mean, permute, layernorm, softmax) as ai3 custom ops against
torch on randomly drawn inputs and parameters, for every algorithm and dtype;
their gradients; torch.compile; the swappable module types (BatchNorm2d,
Hardtanh/ReLU6, Sigmoid, Hardsigmoid, Hardswish, SiLU, GELU) in a small
model; and clear errors for bad arguments."""

import copy

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import ai3
from ai3 import _core, _ops, swap
from conftest import DTYPES, algorithms, assert_close, randn

SWEEP = settings(max_examples=25, deadline=None)
SEEDS = st.integers(0, 2**31 - 1)


def shapes(min_dims=0, max_dims=5, max_size=6):
    return st.lists(st.integers(1, max_size), min_size=min_dims, max_size=max_dims).map(tuple)


def unchanged(fn, *inputs):
    """fn(), checking that it leaves `inputs` unmodified."""
    before = [t.clone() for t in inputs if t is not None]
    out = fn()
    for b, t in zip(before, [t for t in inputs if t is not None]):
        assert torch.equal(b, t), "an input was modified"
    return out


# ---------------------------------------------------------------------------
# Forward against torch
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("batchnorm2d"))
@SWEEP
@given(data=st.data(), seed=SEEDS)
def test_batchnorm2d_matches_torch(dtype, algorithm, data, seed):
    batch = data.draw(st.sampled_from([(), (1,), (3,)]))
    c, h, w = data.draw(st.integers(1, 8)), data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9))
    affine = data.draw(st.booleans())
    eps = data.draw(st.sampled_from([1e-5, 1e-3, 0.1]))
    x = randn(batch + (c, h, w), dtype, seed)
    mean, var = randn((c,), dtype, seed + 1), randn((c,), dtype, seed + 2).abs() + 0.1
    weight = randn((c,), dtype, seed + 3) if affine else None
    bias = randn((c,), dtype, seed + 4) if affine else None
    out = unchanged(lambda: _ops.batchnorm2d(x, mean, var, weight, bias, eps, algorithm), x)
    expected = F.batch_norm(x.double().unsqueeze(0) if not batch else x.double(), mean.double(),
                            var.double(), None if weight is None else weight.double(),
                            None if bias is None else bias.double(), False, 0.0, eps)
    assert_close(out, expected.squeeze(0) if not batch else expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("op", ["add", "mul"])
@SWEEP
@given(data=st.data(), seed=SEEDS)
def test_add_mul_broadcast_match_torch(dtype, op, data, seed):
    out_shape = data.draw(shapes(1, 5))
    def operand():
        n = data.draw(st.integers(0, len(out_shape)))
        tail = out_shape[len(out_shape) - n:]
        return tuple(s if data.draw(st.booleans()) else 1 for s in tail)
    a = randn(operand(), dtype, seed)
    b = randn(operand(), dtype, seed + 1)
    out = unchanged(lambda: getattr(_ops, op)(a, b, data.draw(st.sampled_from(algorithms(op)))),
                    a, b)
    expected = a.double() + b.double() if op == "add" else a.double() * b.double()
    assert_close(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mul_squeeze_excitation(dtype):
    x, s = randn((2, 16, 7, 7), dtype, 0), torch.sigmoid(randn((2, 16, 1, 1), dtype, 1))
    assert_close(_ops.mul(x, s, "default"), x.double() * s.double())
    assert_close(_ops.mul(s, x, "direct"), x.double() * s.double())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("cat"))
@SWEEP
@given(data=st.data(), seed=SEEDS)
def test_cat_matches_torch(dtype, algorithm, data, seed):
    base = data.draw(shapes(1, 5, 4))
    dim = data.draw(st.integers(-len(base), len(base) - 1))
    n = data.draw(st.integers(1, 4))
    tensors = []
    for k in range(n):
        shape = list(base)
        shape[dim] = data.draw(st.integers(1 if k == 0 else 0, 4))
        tensors.append(randn(shape, dtype, seed + k))
    out = unchanged(lambda: _ops.cat(tensors, dim, algorithm), *tensors)
    assert torch.equal(out, torch.cat(tensors, dim))


ACTIVATIONS = {
    "hardtanh": (lambda x, a: _ops.hardtanh(x, -1.5, 2.0, a), lambda x: F.hardtanh(x, -1.5, 2.0)),
    "relu6": (lambda x, a: _ops.hardtanh(x, 0.0, 6.0, a), F.relu6),
    "sigmoid": (_ops.sigmoid, torch.sigmoid),
    "hardsigmoid": (_ops.hardsigmoid, F.hardsigmoid),
    "hardswish": (_ops.hardswish, F.hardswish),
    "silu": (_ops.silu, F.silu),
    "gelu": (lambda x, a: _ops.gelu(x, "none", a), F.gelu),
    "gelu_tanh": (lambda x, a: _ops.gelu(x, "tanh", a), lambda x: F.gelu(x, approximate="tanh")),
}


def _act_op(name):
    return {"relu6": "hardtanh", "gelu_tanh": "gelu"}.get(name, name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(ACTIVATIONS))
@SWEEP
@given(shape=shapes(0, 4, 7), seed=SEEDS)
def test_activations_match_torch(dtype, name, shape, seed):
    ours, theirs = ACTIVATIONS[name]
    x = randn(shape, dtype, seed) * 4  # reaches every clamp and both tails
    for algorithm in algorithms(_act_op(name)):
        out = unchanged(lambda: ours(x, algorithm), x)
        assert_close(out, theirs(x.double()))


def test_activations_large_and_special_values():
    x = torch.tensor([float("nan"), -float("inf"), float("inf"), -1e4, 1e4, -3.0, 3.0, 0.0])
    for name, (ours, theirs) in ACTIVATIONS.items():
        # against float64 torch: torch's own float32 gelu is off by ~1e-4 near -3
        torch.testing.assert_close(ours(x, "default").double(), theirs(x.double()),
                                   equal_nan=True, rtol=1e-5, atol=1e-6, msg=name)
    big = randn((3, 70001), torch.float32, 5) * 5  # split over the thread pool
    for name, (ours, theirs) in ACTIVATIONS.items():
        assert_close(ours(big, "default"), theirs(big.double()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("mean"))
@SWEEP
@given(data=st.data(), seed=SEEDS)
def test_mean_matches_torch(dtype, algorithm, data, seed):
    shape = data.draw(shapes(1, 5))
    nd = len(shape)
    dims = data.draw(st.lists(st.integers(-nd, nd - 1), max_size=nd,
                              unique_by=lambda d: d % nd))
    keepdim = data.draw(st.booleans())
    x = randn(shape, dtype, seed)
    out = unchanged(lambda: _ops.mean(x, dims, keepdim, algorithm), x)
    expected = x.double().mean(dims, keepdim=keepdim) if dims else x.double().mean()
    if not dims and keepdim:
        expected = expected.reshape((1,) * nd)
    assert_close(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mean_global_average_pool(dtype):
    x = randn((2, 64, 28, 28), dtype, 3)
    assert_close(_ops.mean(x, [2, 3], True, "default"), x.double().mean((2, 3), keepdim=True))
    assert_close(_ops.mean(x, [-1, -2], False, "direct"), x.double().mean((-1, -2)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("permute"))
@SWEEP
@given(data=st.data(), seed=SEEDS)
def test_permute_matches_torch(dtype, algorithm, data, seed):
    shape = data.draw(shapes(1, 6, 5))
    perm = data.draw(st.permutations(range(len(shape))))
    perm = [p - len(shape) if data.draw(st.booleans()) else p for p in perm]
    x = randn(shape, dtype, seed)
    out = unchanged(lambda: _ops.permute(x, perm, algorithm), x)
    assert torch.equal(out, x.permute(perm).contiguous())


def test_permute_channel_shuffle():
    x = randn((2, 116, 7, 7), torch.float32, 4)
    groups = 2
    expected = x.view(2, groups, 58, 7, 7).transpose(1, 2).reshape(2, 116, 7, 7)
    ours = _ops.permute(x.view(2, groups, 58, 7, 7), [0, 2, 1, 3, 4], "default").view(2, 116, 7, 7)
    assert torch.equal(ours, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("layernorm"))
@SWEEP
@given(data=st.data(), seed=SEEDS)
def test_layernorm_matches_torch(dtype, algorithm, data, seed):
    shape = data.draw(shapes(1, 4, 9))
    k = data.draw(st.integers(1, len(shape)))
    normalized = shape[len(shape) - k:]
    affine = data.draw(st.sampled_from(["both", "weight", "none"]))
    eps = data.draw(st.sampled_from([1e-5, 1e-6]))
    x = randn(shape, dtype, seed) + 2
    w = randn(normalized, dtype, seed + 1) if affine != "none" else None
    b = randn(normalized, dtype, seed + 2) if affine == "both" else None
    out = unchanged(lambda: _ops.layernorm(x, k, w, b, eps, algorithm), x)
    expected = F.layer_norm(x.double(), normalized, None if w is None else w.double(),
                            None if b is None else b.double(), eps)
    assert_close(out, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("algorithm", algorithms("softmax"))
@SWEEP
@given(data=st.data(), seed=SEEDS)
def test_softmax_matches_torch(dtype, algorithm, data, seed):
    shape = data.draw(shapes(0, 4, 7))
    dim = data.draw(st.integers(-max(len(shape), 1), max(len(shape), 1) - 1))
    scale = data.draw(st.sampled_from([1.0, 100.0]))  # large: exp overflows unless stabilised
    x = randn(shape, dtype, seed) * scale
    out = unchanged(lambda: _ops.softmax(x, dim, algorithm), x)
    assert_close(out, torch.softmax(x.double(), dim))


# ---------------------------------------------------------------------------
# Gradients
# ---------------------------------------------------------------------------


def _leaf(shape, seed, scale=1.0):
    return (randn(shape, torch.float64, seed) * scale).requires_grad_()


GRADCHECKS = {
    "batchnorm2d": lambda: (
        lambda x, w, b: _ops.batchnorm2d(x, torch.linspace(-1, 1, 3, dtype=torch.float64),
                                         torch.linspace(0.5, 2, 3, dtype=torch.float64), w, b,
                                         1e-5, "default"),
        (_leaf((2, 3, 4, 4), 0), _leaf((3,), 1), _leaf((3,), 2))),
    "add": lambda: (lambda a, b: _ops.add(a, b, "default"),
                    (_leaf((2, 3, 4), 0), _leaf((3, 1), 1))),
    "mul": lambda: (lambda a, b: _ops.mul(a, b, "default"),
                    (_leaf((2, 3, 1, 1), 0), _leaf((2, 3, 4, 5), 1))),
    "cat": lambda: (lambda a, b: _ops.cat([a, b], 1, "default"),
                    (_leaf((2, 3, 4), 0), _leaf((2, 2, 4), 1))),
    "hardtanh": lambda: (lambda x: _ops.hardtanh(x, -1.0, 1.0, "default"), (_leaf((3, 7), 0, 2),)),
    "sigmoid": lambda: (lambda x: _ops.sigmoid(x, "default"), (_leaf((3, 7), 0, 3),)),
    "hardsigmoid": lambda: (lambda x: _ops.hardsigmoid(x, "default"), (_leaf((3, 7), 0, 4),)),
    "hardswish": lambda: (lambda x: _ops.hardswish(x, "default"), (_leaf((3, 7), 0, 4),)),
    "silu": lambda: (lambda x: _ops.silu(x, "default"), (_leaf((3, 7), 0, 3),)),
    "gelu": lambda: (lambda x: _ops.gelu(x, "none", "default"), (_leaf((3, 7), 0, 3),)),
    "gelu_tanh": lambda: (lambda x: _ops.gelu(x, "tanh", "default"), (_leaf((3, 7), 0, 3),)),
    "mean": lambda: (lambda x: _ops.mean(x, [1, 3], False, "default"), (_leaf((2, 3, 4, 5), 0),)),
    "mean_all": lambda: (lambda x: _ops.mean(x, [], True, "default"), (_leaf((2, 3, 4), 0),)),
    "permute": lambda: (lambda x: _ops.permute(x, [2, 0, 1], "default"), (_leaf((2, 3, 4), 0),)),
    "layernorm": lambda: (lambda x, w, b: _ops.layernorm(x, 2, w, b, 1e-5, "default"),
                          (_leaf((3, 4, 5), 0), _leaf((4, 5), 1), _leaf((4, 5), 2))),
    "softmax": lambda: (lambda x: _ops.softmax(x, 1, "default"), (_leaf((2, 5, 3), 0),)),
}


@pytest.mark.parametrize("name", list(GRADCHECKS))
def test_gradients(name):
    fn, inputs = GRADCHECKS[name]()
    assert torch.autograd.gradcheck(fn, inputs)


def test_torch_compile_fullgraph():
    def f(x, y, w, b):
        h = _ops.batchnorm2d(x, torch.zeros(4), torch.ones(4), w, b, 1e-5, "default")
        h = _ops.hardswish(_ops.add(h, y, "default"), "default")
        s = _ops.sigmoid(_ops.mean(h, [2, 3], True, "default"), "default")
        h = _ops.cat([_ops.mul(h, s, "default"), _ops.silu(h, "default")], 1, "default")
        h = _ops.permute(h, [0, 2, 3, 1], "default")
        h = _ops.layernorm(_ops.gelu(h, "tanh", "default"), 1, None, None, 1e-5, "default")
        return _ops.softmax(_ops.hardtanh(h, 0.0, 6.0, "default"), -1, "default")

    def reference(x, y, w, b):
        h = F.batch_norm(x, torch.zeros(4, dtype=x.dtype), torch.ones(4, dtype=x.dtype), w, b,
                         False, 0.0, 1e-5)
        h = F.hardswish(h + y)
        s = torch.sigmoid(h.mean((2, 3), keepdim=True))
        h = torch.cat([h * s, F.silu(h)], 1).permute(0, 2, 3, 1)
        h = F.layer_norm(F.gelu(h, approximate="tanh"), (8,), eps=1e-5)
        return torch.softmax(F.relu6(h), -1)

    args = (randn((2, 4, 5, 5), torch.float32, 0), randn((4, 1, 1), torch.float32, 1),
            randn((4,), torch.float32, 2), randn((4,), torch.float32, 3))
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    assert_close(compiled(*args), reference(*[a.double() for a in args]))


# ---------------------------------------------------------------------------
# Swapping the new module types
# ---------------------------------------------------------------------------

NEW_MODULES = [nn.BatchNorm2d, nn.Hardtanh, nn.Sigmoid, nn.Hardsigmoid, nn.Hardswish, nn.SiLU,
               nn.GELU]


class ActNet(nn.Module):
    """A small CNN with every new swappable module type."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.act1 = nn.ReLU6(inplace=True)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.bn2 = nn.BatchNorm2d(8, affine=False)
        self.act2 = nn.Hardswish()
        self.se_fc = nn.Conv2d(8, 8, 1)
        self.se_gate = nn.Hardsigmoid()
        self.act3 = nn.SiLU()
        self.act4 = nn.GELU(approximate="tanh")
        self.act5 = nn.Hardtanh(-0.5, 0.75)
        self.act6 = nn.GELU()
        self.head = nn.Linear(8, 3)
        self.gate = nn.Sigmoid()

    def forward(self, x):
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.conv2(x)))
        x = x * self.se_gate(self.se_fc(x.mean((2, 3), keepdim=True)))
        x = self.act5(self.act4(self.act3(x)))
        return self.gate(self.head(self.act6(x).mean((2, 3))))


def _trained_stats(net):
    """Gives the batch norms non-trivial running statistics and affine parameters."""
    torch.manual_seed(3)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(randn((4, 3, 10, 10), seed=torch.randint(0, 1000, ()).item()).float())
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net.eval()


@pytest.mark.parametrize("dtype", DTYPES)
def test_swap_new_modules_eval_matches_torch(dtype):
    torch.manual_seed(0)
    orig = _trained_stats(ActNet()).to(dtype)
    swapped = copy.deepcopy(orig)
    for op in NEW_MODULES:
        ai3.swap_operation(op, swapped)
    kinds = {type(m) for m in swapped.modules()}
    assert {swap.BatchNorm2d, swap.ReLU6, swap.Hardtanh, swap.Hardswish, swap.Hardsigmoid,
            swap.SiLU, swap.GELU, swap.Sigmoid} <= kinds
    assert isinstance(swapped.act1, nn.ReLU6) and swapped.act1.algorithm == "default"
    for seed in range(3):
        x = randn((2, 3, 10, 10), dtype, seed)
        x_before = x.clone()
        with torch.no_grad():
            assert_close(swapped(x), orig(x).double())
        assert torch.equal(x, x_before)


def test_swap_by_name_and_back_to_torch():
    net = _trained_stats(ActNet())
    for name in ("batchnorm2d", "hardtanh", "sigmoid", "hardsigmoid", "hardswish", "silu", "gelu"):
        ai3.swap_operation(name, net, "direct")
    assert type(net.act1) is swap.ReLU6 and type(net.act5) is swap.Hardtanh
    assert net.bn1.algorithm == "direct"
    ai3.swap_operation(nn.ReLU6, net, "torch")  # ReLU6 is a Hardtanh: both go back
    assert type(net.act1) is nn.ReLU6 and type(net.act5) is nn.Hardtanh
    assert (net.act1.min_val, net.act1.max_val) == (0.0, 6.0)
    ai3.swap_operation(nn.BatchNorm2d, net, ["torch", "direct"])
    assert type(net.bn1) is nn.BatchNorm2d and type(net.bn2) is swap.BatchNorm2d


def test_swapped_batchnorm_trains_like_torch():
    """In training mode the swapped BatchNorm2d is torch's: batch statistics,
    running statistics updated, the same gradients."""
    torch.manual_seed(4)
    orig = ActNet().double()
    swapped = copy.deepcopy(orig)
    for op in NEW_MODULES:
        ai3.swap_operation(op, swapped)
    orig.train(), swapped.train()
    x = randn((4, 3, 10, 10), torch.float64, 1)
    target = randn((4, 3), torch.float64, 2)
    F.mse_loss(orig(x), target).backward()
    F.mse_loss(swapped(x), target).backward()
    for (name, po), ps in zip(orig.named_parameters(), swapped.parameters()):
        assert_close(ps.grad, po.grad)
    for (name, bo), bs in zip(orig.named_buffers(), swapped.buffers()):
        assert torch.equal(bo, bs), name
    orig.eval(), swapped.eval()
    with torch.no_grad():
        assert_close(swapped(x), orig(x))


def test_swapped_model_is_compilable_deepcopyable_picklable():
    import io
    net = _trained_stats(ActNet())
    for op in NEW_MODULES:
        ai3.swap_operation(op, net)
    x = randn((2, 3, 10, 10), torch.float32, 7)
    with torch.no_grad():
        expected = net(x)
        compiled = torch.compile(net, fullgraph=True, backend="aot_eager")
        assert_close(compiled(x), expected.double())
        assert torch.equal(copy.deepcopy(net)(x), expected)
        buf = io.BytesIO()
        torch.save(net, buf)
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        assert torch.equal(loaded(x), expected)


def test_new_ops_are_listed():
    for op in ("batchnorm2d", "hardtanh", "sigmoid", "hardsigmoid", "hardswish", "silu", "gelu"):
        assert "direct" in ai3.SUPPORTED_ALGORITHMS[op]
        assert ai3.DEFAULT_ALGOS[op] == "default"
    for op in ("add", "mul", "cat", "mean", "permute", "layernorm", "softmax"):
        assert "direct" in _core.list_algorithms(op)
        assert {r[0]: r[1] for r in _core.OPERATIONS}[op] == "direct"


# ---------------------------------------------------------------------------
# Bad arguments
# ---------------------------------------------------------------------------

X = randn((2, 3, 4, 5), torch.float32, 0)
C3 = randn((3,), torch.float32, 1)


@pytest.mark.parametrize("call, error, match", [
    (lambda: _ops.batchnorm2d(X[0, 0], C3, C3, None, None, 1e-5, "default"), ValueError, "C, H, W"),
    (lambda: _ops.batchnorm2d(X, C3[:2], C3, None, None, 1e-5, "default"), ValueError, "running_mean"),
    (lambda: _ops.batchnorm2d(X, C3, C3, C3.double(), None, 1e-5, "default"), ValueError, "dtype"),
    (lambda: _ops.batchnorm2d(X, C3, C3, None, None, 0.0, "default"), ValueError, "eps"),
    (lambda: _ops.batchnorm2d(X, C3, C3, None, None, 1e-5, "fast"), ValueError, "unknown algorithm"),
    (lambda: _ops.add(X, randn((4, 4)).float(), "default"), ValueError, "broadcast"),
    (lambda: _ops.mul(X, X.double(), "default"), ValueError, "dtype"),
    (lambda: _ops.add(X, X, "custom"), ValueError, "unknown algorithm"),
    (lambda: _ops.cat([], 0, "default"), ValueError, "at least 1 input"),
    (lambda: _ops.cat([X, X[:, :2, :3]], 1, "default"), ValueError, "only dimension"),
    (lambda: _ops.cat([X, X], 4, "default"), ValueError, "out of range"),
    (lambda: _ops.cat([X, X.double()], 0, "default"), ValueError, "dtype"),
    (lambda: _ops.hardtanh(X, 1.0, -1.0, "default"), ValueError, "min_val"),
    (lambda: _ops.sigmoid(X.int(), "default"), TypeError, "float32"),
    (lambda: _ops.gelu(X, "erf", "default"), ValueError, "approximate"),
    (lambda: _ops.silu(X, "nope"), ValueError, "unknown algorithm"),
    (lambda: _ops.mean(X, [1, -3], False, "default"), ValueError, "more than once"),
    (lambda: _ops.mean(X, [4], False, "default"), ValueError, "out of range"),
    (lambda: _ops.permute(X, [0, 1, 2], "default"), ValueError, "dimensions in the order"),
    (lambda: _ops.permute(X, [0, 1, 2, 2], "default"), ValueError, "permutation"),
    (lambda: _ops.layernorm(X, 0, None, None, 1e-5, "default"), ValueError, "normalized_ndim"),
    (lambda: _ops.layernorm(X, 2, C3, None, 1e-5, "default"), ValueError, "weight"),
    (lambda: _ops.layernorm(X, 1, None, None, -1.0, "default"), ValueError, "eps"),
    (lambda: _ops.softmax(X, 4, "default"), ValueError, "out of range"),
])
def test_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_core_rejects_bad_arguments_without_crashing():
    """The C layer's own checks, reached through _core directly."""
    with pytest.raises(ValueError, match="broadcast"):
        _core.run(_core.plan("add", "direct", (), ()), X, randn((7,)).float())
    with pytest.raises(ValueError, match="perm"):
        _core.run(_core.plan("permute", "direct", (), ((0, 1),)), X)
    with pytest.raises(ValueError, match="min_val"):
        _core.run(_core.plan("hardtanh", "direct", (), (2.0, 1.0)), X)
    with pytest.raises(TypeError):
        _core.run(_core.plan("cat", "direct", (), (0,)), [X, "not a tensor"])
    with pytest.raises(ValueError, match="eps"):
        _core.run(_core.plan("layernorm", "direct", (), (1, 0.0)), X)
    with pytest.raises(TypeError):
        _core.plan("mean", "direct", (), ([2, 3],))  # keepdim missing
    with pytest.raises(ValueError, match="input"):
        _core.run(_core.plan("add", "direct", (), ()), X)  # one input of two


def test_swapped_gelu_rejects_unknown_approximation():
    m = nn.GELU()
    m.approximate = "erf"
    with pytest.raises(ValueError, match="approximate"):
        swap.GELU.from_torch(m)
