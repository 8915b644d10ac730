"""Swapped networks copy, pickle and save like torch networks, and their
checkpoints load both ways."""

import copy
import io
import pickle

import torch

import ai3
from ai3 import swap
from nets import SEVEN_SHAPE, SevenOps, close, randn


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
