"""Swapped networks copy, pickle and save like torch networks, and their
checkpoints load both ways; converted models (ai3.Model) pickle, save,
deep-copy and load state dicts."""

import copy
import io
import pickle
import warnings

import pytest
import torch

import ai3
from ai3 import _ops, swap
from nets import SEVEN_SHAPE, TOL, SevenOps, close, randn


def swapped_seven(seed=0):
    torch.manual_seed(seed)
    orig = SevenOps()
    net = copy.deepcopy(orig)
    for op in ai3.OPERATIONS:
        ai3.swap_operation(op, net, "default")
    net.conv1.algorithm = ai3.SUPPORTED_ALGORITHMS["conv2d"][0]
    return orig, net


def same_structure(a, b):
    assert [type(m) for m in a.modules()] == [type(m) for m in b.modules()]
    assert [getattr(m, "algorithm", None) for m in a.modules()] == \
        [getattr(m, "algorithm", None) for m in b.modules()]


def test_deepcopy():
    orig, net = swapped_seven()
    dup = copy.deepcopy(net)
    same_structure(net, dup)
    assert dup.conv1.weight is not net.conv1.weight
    x = randn(SEVEN_SHAPE, seed=1)
    assert close(dup(x), orig(x))
    with torch.no_grad():
        dup.conv1.weight.add_(1.0)
    assert close(net(x), orig(x))  # the copy is independent


def test_pickle():
    orig, net = swapped_seven()
    back = pickle.loads(pickle.dumps(net))
    same_structure(net, back)
    x = randn(SEVEN_SHAPE, seed=2)
    assert close(back(x), orig(x))


def test_torch_save_load_whole_module():
    orig, net = swapped_seven()
    buf = io.BytesIO()
    torch.save(net, buf)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    same_structure(net, back)
    x = randn(SEVEN_SHAPE, seed=3)
    assert close(back(x), orig(x))


def test_state_dict_swapped_to_original():
    _, net = swapped_seven(seed=4)
    fresh = SevenOps()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    buf.seek(0)
    fresh.load_state_dict(torch.load(buf))  # weights_only: plain tensors
    x = randn(SEVEN_SHAPE, seed=5)
    assert close(fresh(x), net(x))


def test_state_dict_original_to_swapped():
    orig, _ = swapped_seven(seed=6)
    _, target = swapped_seven(seed=7)
    assert not close(target(randn(SEVEN_SHAPE)), orig(randn(SEVEN_SHAPE)))
    target.load_state_dict(orig.state_dict())
    assert isinstance(target.conv1, swap.Conv2d)
    x = randn(SEVEN_SHAPE, seed=8)
    assert close(target(x), orig(x))


def test_import_without_numpy():
    """ai3 does not need numpy: with it unavailable, import, swap and convert work."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'numpy' or name.startswith('numpy.'):\n"
        "            raise ModuleNotFoundError(\"No module named 'numpy'\")\n"
        "sys.meta_path.insert(0, Block())\n"
        "import warnings; warnings.simplefilter('ignore')\n"
        "import torch, ai3\n"
        "net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()\n"
        "x = torch.randn(1, 3, 8, 8)\n"
        "assert torch.allclose(ai3.convert(net)(x), net(x), atol=1e-5)\n"
        "assert 'numpy' not in sys.modules\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr


# ---------------------------------------------------------------------------
# Converted models (ai3.Model): rebuilt from the network, its algorithms,
# dtype, device and options; never from the C graph.
# ---------------------------------------------------------------------------


class Branchy(torch.nn.Module):
    """Convolutions with batch norms to fold, a join, a layer norm and two
    outputs."""

    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU6())
        self.branch = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
                                    nn.BatchNorm2d(8), nn.Hardswish())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.norm = nn.LayerNorm(32)
        self.fc = nn.Linear(32, 6)

    def forward(self, x):
        y = self.stem(x)
        y = y + self.branch(y)
        z = self.norm(torch.flatten(self.pool(y), 1))
        return self.fc(z), torch.softmax(z, -1)


BRANCHY_SHAPE = (2, 3, 12, 12)


def branchy(seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    net = Branchy().to(dtype).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return net


def assert_same_model(a, b, x):
    """Same outputs (bit for bit), layers, algorithms, dtype and device."""
    assert repr(a) == repr(b)
    assert (a.dtype, a.device) == (b.dtype, b.device)
    for u, v in zip(a(x), b(x)):
        assert torch.equal(u, v)


def saved_and_loaded(model):
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    return torch.load(buf, weights_only=False)


COPIES = {"pickle": lambda m: pickle.loads(pickle.dumps(m)), "deepcopy": copy.deepcopy,
          "torch.save": saved_and_loaded}


@pytest.mark.parametrize("how", COPIES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_converted_model_copies(how, dtype):
    net = branchy(dtype=dtype)
    # algorithms from a callable (which itself could not be pickled)
    model = ai3.convert(net, {"conv2d": lambda m: "smm" if m.groups > 1 else "winograd",
                              "add": "direct"})
    back = COPIES[how](model)
    x = randn(BRANCHY_SHAPE, dtype, seed=1)
    assert_same_model(back, model, x)
    assert [layer.algorithm for layer in back.layers if layer.op == "conv2d"] == \
        ["winograd", "smm"]
    with torch.no_grad():
        for got, want in zip(back(x), net(x)):
            assert torch.allclose(got, want, **TOL[dtype])


@pytest.mark.parametrize("how", COPIES)
def test_converted_model_copies_keep_options(how):
    net = branchy()
    model = ai3.convert(net, {"conv2d": "guess"}, (1, 3, 12, 12),
                        dtype=torch.float64, fold_batchnorm=False)
    back = COPIES[how](model)
    assert back.dtype == torch.float64
    assert [layer.op for layer in back.layers].count("batchnorm2d") == 2
    # 'guess' chose for the sample's shape again
    assert [layer.resolved for layer in back.layers] == [layer.resolved for layer in model.layers]
    assert_same_model(back, model, randn(BRANCHY_SHAPE, torch.float64, seed=2))


def test_copies_are_independent_of_the_network():
    net = branchy()
    model = ai3.convert(net)
    dup = copy.deepcopy(model)
    x = randn(BRANCHY_SHAPE, seed=3)
    before = model(x)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.5)
    # the copy was built from a copy of the network as it was
    assert all(torch.equal(a, b) for a, b in zip(copy.deepcopy(dup)(x), before))
    assert all(torch.equal(a, b) for a, b in zip(dup(x), before))


def test_saving_after_the_network_changed_warns():
    net = branchy()
    model = ai3.convert(net)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pickle.dumps(model)  # unchanged: no warning
        model.state_dict()
    with torch.no_grad():
        net.fc.weight.add_(1.0)
    with pytest.warns(UserWarning, match="changed after the Model was built"):
        back = pickle.loads(pickle.dumps(model))
    with pytest.warns(UserWarning, match="changed after the Model was built"):
        model.state_dict()
    x = randn(BRANCHY_SHAPE, seed=4)
    with torch.no_grad():  # what is saved is the network now
        assert torch.allclose(back(x)[0], net(x)[0], **TOL[torch.float32])


def test_zoo_network_copies():
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.mobilenet_v3_small(weights=None).eval()
    model = ai3.convert(net)
    back = saved_and_loaded(model)
    assert_same_model(back, model, randn((1, 3, 64, 64), seed=5))


def test_state_dict_names_the_networks_weights():
    net = branchy()
    model = ai3.convert(net)
    state = model.state_dict()
    expected = net.state_dict()
    assert list(state) == list(expected)
    assert all(torch.equal(state[k], expected[k]) for k in state)


def test_load_state_dict_rebuilds_with_the_new_weights():
    source, target = branchy(seed=5), branchy(seed=6)
    model = ai3.convert(target, {"conv2d": ["direct", "implicit gemm"]})
    kept = {k: v.clone() for k, v in target.state_dict().items()}
    x = randn(BRANCHY_SHAPE, seed=7)
    with torch.no_grad():
        assert not torch.allclose(model(x)[0], source(x)[0], **TOL[torch.float32])

    # through a file, loaded with weights_only=True: plain tensors
    buf = io.BytesIO()
    torch.save(ai3.convert(source).state_dict(), buf)
    buf.seek(0)
    result = model.load_state_dict(torch.load(buf))
    assert list(result.missing_keys) == [] and list(result.unexpected_keys) == []
    with torch.no_grad():
        for got, want in zip(model(x), source(x)):
            assert torch.allclose(got, want, **TOL[torch.float32])
    assert [layer.algorithm for layer in model.layers if layer.op == "conv2d"] == \
        ["direct", "implicit gemm"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())
    # the network given to convert is left as it was
    assert all(torch.equal(target.state_dict()[k], v) for k, v in kept.items())
    # and the model saves with its new weights
    assert_same_model(pickle.loads(pickle.dumps(model)), model, x)


def test_load_state_dict_errors_leave_the_model_unchanged():
    model = ai3.convert(branchy())
    state = model.state_dict()
    x = randn(BRANCHY_SHAPE, seed=8)
    before = model(x)

    missing = {k: v for k, v in state.items() if k != "fc.bias"}
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "fc.bias"'):
        model.load_state_dict(missing)
    extra = {**state, "head.weight": torch.zeros(3)}
    with pytest.raises(RuntimeError, match=r'Unexpected key\(s\) in state_dict: "head.weight"'):
        model.load_state_dict(extra)
    wrong = {**state, "fc.weight": torch.zeros(6, 33)}
    with pytest.raises(RuntimeError, match=r"size mismatch for fc.weight"):
        model.load_state_dict(wrong)
    with pytest.raises(RuntimeError, match=r"size mismatch for fc.weight"):
        model.load_state_dict(wrong, strict=False)  # shapes are checked in any case
    with pytest.raises(TypeError, match="mapping"):
        model.load_state_dict([("fc.weight", torch.zeros(6, 32))])
    assert all(torch.equal(a, b) for a, b in zip(model(x), before))

    # not strict: the missing ones keep their values, the unexpected are reported
    result = model.load_state_dict({**missing, "head.weight": torch.zeros(3)}, strict=False)
    assert list(result.missing_keys) == ["fc.bias"]
    assert list(result.unexpected_keys) == ["head.weight"]
    assert all(torch.equal(a, b) for a, b in zip(model(x), before))


CUDA = torch.cuda.is_available() and _ops.cuda_backend()[0]


@pytest.mark.cuda
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device and ai3's CUDA backend")
def test_cuda_model_saves_and_loads_where_asked():
    model = ai3.convert(branchy().cuda(), cuda_graph=False)
    buf = io.BytesIO()
    torch.save(model, buf)
    x = randn(BRANCHY_SHAPE, seed=9)
    buf.seek(0)
    back = torch.load(buf, weights_only=False)
    assert back.device == model.device and not back._source.cuda_graph
    assert_same_model(back, model, x.cuda())
    buf.seek(0)
    on_cpu = torch.load(buf, weights_only=False, map_location="cpu")
    assert on_cpu.device == torch.device("cpu")
    for got, want in zip(on_cpu(x), model(x.cuda())):
        assert torch.allclose(got, want.cpu(), **TOL[torch.float32])
    # a CPU network's model moved to the GPU stays there
    moved = ai3.convert(branchy()).to("cuda")
    assert copy.deepcopy(moved).device == moved.device
