"""Selector forms, forward order, the package's constants, and every bad
input giving a clear exception (and leaving the network untouched)."""

import copy
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import ai3
from ai3 import swap
from nets import SEVEN_SHAPE, ConvNet, Reordered, SevenOps, close, randn

CONV_ALGOS = ai3.SUPPORTED_ALGORITHMS["conv2d"]
A, B = CONV_ALGOS[0], CONV_ALGOS[-1]


def conv_algorithms(net):
    return {name: m.algorithm for name, m in net.named_modules() if isinstance(m, swap.Conv2d)}


# --------------------------------------------------------------------------
# Constants and small functions


def test_constants():
    assert set(ai3.SUPPORTED_ALGORITHMS) == set(ai3.OPERATIONS)
    assert {"direct", "smm"} <= set(ai3.SUPPORTED_ALGORITHMS["conv2d"])
    for op, names in ai3.SUPPORTED_ALGORITHMS.items():
        assert names and "default" not in names and "torch" not in names, op
    assert ai3.DEFAULT_ALGOS == {op: "default" for op in ai3.OPERATIONS}
    assert not any(f() for f in (ai3.using_cudnn, ai3.using_cublas, ai3.using_sycl,
                                 ai3.using_mps_and_metal))
    assert isinstance(ai3.__version__, str) and ai3.__version__.count(".") == 2
    assert issubclass(ai3.UnsupportedError, ValueError)


def test_num_threads():
    before = ai3.get_num_threads()
    try:
        ai3.set_num_threads(1)
        assert ai3.get_num_threads() == 1
    finally:
        ai3.set_num_threads(before)
    with pytest.raises((ValueError, TypeError)):
        ai3.set_num_threads(0)


# --------------------------------------------------------------------------
# Selector forms


def test_str_selector_applies_everywhere():
    net = ConvNet()
    ai3.swap_conv2d(net, B)
    assert conv_algorithms(net) == {"conv1": B, "conv2": B}


def test_none_selector_is_default():
    net = ConvNet()
    ai3.swap_conv2d(net)
    assert conv_algorithms(net) == {"conv1": "default", "conv2": "default"}


def test_list_and_tuple_selectors():
    net = ConvNet()
    ai3.swap_conv2d(net, (B, A))
    assert conv_algorithms(net) == {"conv1": B, "conv2": A}


def test_one_argument_callable():
    net = ConvNet()
    ai3.swap_conv2d(net, lambda m: A if m.in_channels == 3 else B)
    assert conv_algorithms(net) == {"conv1": A, "conv2": B}


def test_two_argument_callable_gets_each_input_shape():
    seen = []

    def selector(module, input_shape):
        seen.append((module.in_channels, input_shape))
        return A if input_shape[-1] > 150 else B

    net = ConvNet()
    ai3.swap_conv2d(net, selector, sample_input_shape=(2, 3, 224, 224))
    assert seen == [(3, (2, 3, 224, 224)), (16, (2, 16, 112, 112))]
    assert conv_algorithms(net) == {"conv1": A, "conv2": B}


def test_two_argument_callable_for_every_op_shapes():
    shapes = {}

    def recorder(op):
        def select(module, input_shape):
            shapes[(op, id(module))] = input_shape
            return "default"
        return select

    net = SevenOps()
    expected = {}
    hooks = [m.register_forward_pre_hook(
        lambda m, args: expected.setdefault(id(m), tuple(args[0].shape)) and None)
        for m in net.modules()]
    net(randn(SEVEN_SHAPE))
    for h in hooks:
        h.remove()
    for op in ai3.OPERATIONS:
        ai3.swap_operation(op, net, recorder(op), sample_input_shape=SEVEN_SHAPE)
    assert len(shapes) == 9
    for (op, key), shape in shapes.items():
        assert shape == expected[key], op


def test_callable_with_optional_shape():
    got = []

    def selector(module, input_shape=None):
        got.append(input_shape)
        return A

    ai3.swap_conv2d(ConvNet(), selector)
    ai3.swap_conv2d(ConvNet(), selector, sample_input_shape=(1, 3, 224, 224))
    assert got == [None, None, (1, 3, 224, 224), (1, 16, 112, 112)]


def test_shape_propagation_leaves_network_untouched():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5), nn.ReLU())
    net.train()
    state = copy.deepcopy(net.state_dict())
    ai3.swap_conv2d(net, lambda m, s: A, sample_input_shape=(2, 3, 8, 8))
    assert net.training and net[1].training
    for key, value in net.state_dict().items():
        assert torch.equal(value, state[key]), key


# --------------------------------------------------------------------------
# Forward order


def test_forward_order_not_registration_order():
    for shape in (None, (1, 2, 5, 5)):
        net = Reordered()
        ai3.swap_conv2d(net, [A, B], sample_input_shape=shape)
        assert conv_algorithms(net) == {"a": A, "b": B}


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.second = nn.Conv2d(4, 4, 1)
        self.first = nn.Conv2d(2, 4, 1)

    def forward(self, x):
        x = self.first(x)
        if x.sum() > 1e30:
            x = x * 2
        return self.second(x)


def test_untraceable_network_uses_registration_order_without_sample():
    net = Untraceable()
    ai3.swap_conv2d(net, [A, B])
    assert conv_algorithms(net) == {"second": A, "first": B}
    net = Untraceable()
    ai3.swap_conv2d(net, [A, B], sample_input_shape=(1, 2, 3, 3))
    assert conv_algorithms(net) == {"first": A, "second": B}


def test_unused_instances_come_last():
    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.spare = nn.Conv2d(1, 1, 1)
            self.used = nn.Conv2d(1, 1, 1)

        def forward(self, x):
            return self.used(x)

    net = WithSpare()
    ai3.swap_conv2d(net, [A, B])
    assert conv_algorithms(net) == {"used": A, "spare": B}


# --------------------------------------------------------------------------
# Bad input: swap_operation


def unchanged(fn, net, *args, **kwargs):
    """Calls fn(*args, **kwargs), expecting an exception, and checks `net` kept
    its modules and weights."""
    types = [type(m) for m in net.modules()]
    state = copy.deepcopy(net.state_dict())
    try:
        fn(*args, **kwargs)
    finally:
        assert [type(m) for m in net.modules()] == types
        for key, value in net.state_dict().items():
            assert torch.equal(value, state[key]), key


def test_unknown_operation():
    net = ConvNet()
    with pytest.raises(ValueError, match="unknown operation 'conv3d'.*conv2d"):
        unchanged(ai3.swap_operation, net, "conv3d", net)
    with pytest.raises(ValueError, match="Conv1d"):
        unchanged(ai3.swap_operation, net, nn.Conv1d, net)
    with pytest.raises(TypeError, match="operation"):
        unchanged(ai3.swap_operation, net, 3, net)


def test_unknown_algorithm_lists_valid_ones():
    net = ConvNet()
    with pytest.raises(ValueError, match=r"unknown algorithm 'fastest'.*'conv2'.*direct.*smm"):
        unchanged(ai3.swap_conv2d, net, net, [A, "fastest"])
    with pytest.raises(ValueError, match="unknown algorithm"):
        unchanged(ai3.swap_operation, net, nn.Linear, net, "direct" if "direct" not in
                  ai3.SUPPORTED_ALGORITHMS["linear"] else "nonsense")


def test_custom_without_registration():
    net = ConvNet()
    with pytest.raises(ValueError, match="custom.*load_algorithms"):
        unchanged(ai3.swap_conv2d, net, net, "custom")


@pytest.mark.parametrize("names", [[A], [A, B, A], []])
def test_selector_list_length_mismatch(names):
    net = ConvNet()
    with pytest.raises(ValueError, match=f"lists {len(names)} algorithm.*has 2 conv2d"):
        unchanged(ai3.swap_conv2d, net, net, names)


@pytest.mark.parametrize("selector", [lambda m: None, lambda m: 3, [A, 7]])
def test_selector_giving_non_str(selector):
    net = ConvNet()
    with pytest.raises(TypeError, match="conv"):
        unchanged(ai3.swap_conv2d, net, net, selector)


@pytest.mark.parametrize("selector", [3, 2.5, {"a": 1}, b"direct"])
def test_selector_of_wrong_type(selector):
    net = ConvNet()
    with pytest.raises((TypeError, ValueError)):
        unchanged(ai3.swap_conv2d, net, net, selector)


def test_two_argument_selector_without_sample_shape():
    net = ConvNet()
    with pytest.raises(ValueError, match="sample_input_shape"):
        unchanged(ai3.swap_conv2d, net, net, lambda module, shape: A)
    with pytest.raises(TypeError, match="requires 3"):
        unchanged(ai3.swap_conv2d, net, net, lambda a, b, c: A, (1, 3, 224, 224))


@pytest.mark.parametrize("module", [torch.randn(2, 3), "ConvNet", None, nn.Conv2d, [nn.ReLU()]])
def test_non_module_argument(module):
    with pytest.raises(TypeError, match="nn.Module"):
        ai3.swap_conv2d(module)
    with pytest.raises(TypeError, match="nn.Module"):
        ai3.convert(module)


@pytest.mark.parametrize("shape", ["1,3,224,224", (1, -3, 224, 224), (), (1, 3.0, 224, 224),
                                   torch.zeros(4), 5, (1, 3, True, 4)])
def test_malformed_sample_shape(shape):
    net = ConvNet()
    with pytest.raises(ValueError, match="sample_input_shape"):
        unchanged(ai3.swap_conv2d, net, net, lambda m, s: A, shape)
    with pytest.raises(ValueError, match="sample_input_shape"):
        ai3.convert(net, sample_input_shape=shape)


def test_sample_shape_that_does_not_fit():
    net = ConvNet()
    with pytest.raises(ValueError, match="cannot run on an input of sample_input_shape"):
        unchanged(ai3.swap_conv2d, net, net, lambda m, s: A, (1, 4, 224, 224))
    with pytest.raises(ValueError, match="sample_input_shape"):
        ai3.convert(net, {"conv2d": lambda m, s: A}, sample_input_shape=(1, 3, 100, 100))


def test_root_is_the_operation():
    conv = nn.Conv2d(1, 1, 1)
    with pytest.raises(ValueError, match="root"):
        ai3.swap_conv2d(conv)
    alone = swap.Conv2d.from_torch(conv, A)
    assert alone.weight is conv.weight and alone.algorithm == A


def test_swap_with_not_callable():
    net = ConvNet()
    with pytest.raises(TypeError, match="swap_with"):
        unchanged(ai3.swap_conv2d, net, net, swap_with="Conv2d")


def test_maxpool_with_indices_unsupported():
    net = nn.Sequential(nn.MaxPool2d(2, return_indices=True))
    with pytest.raises(ai3.UnsupportedError, match="return_indices"):
        unchanged(ai3.swap_operation, net, nn.MaxPool2d, net)


def test_lazy_module_not_initialized():
    net = nn.Sequential(nn.LazyConv2d(4, 3))
    with pytest.raises(ValueError, match="run the network once"):
        ai3.swap_conv2d(net)


def test_bad_input_at_run_time_is_a_clear_error():
    net = nn.Sequential(nn.Conv2d(3, 4, 3))
    ai3.swap_conv2d(net, A)
    with pytest.raises(ValueError, match="channels"):
        net(randn((1, 5, 8, 8)))
    with pytest.raises(TypeError, match="dtype"):
        net(torch.ones(1, 3, 8, 8, dtype=torch.int32))


# --------------------------------------------------------------------------
# Bad input: convert


def test_convert_unsupported_slice_names_node():
    class Slice(nn.Module):
        def forward(self, x):
            return F.relu(x + x[:, :1])

    with pytest.raises(ai3.UnsupportedError,
                       match=r"node 'getitem' \(call_function getitem, position 1\).*slic"):
        ai3.convert(Slice())


def test_convert_unsupported_module_names_node():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.PReLU())
    with pytest.raises(ai3.UnsupportedError,
                       match=r"node '_2' \(call_module 2, position 3\).*PReLU"):
        ai3.convert(net)


def test_convert_unsupported_function_names_node():
    class Tanh(nn.Module):
        def forward(self, x):
            return torch.tanh(F.relu(x))

    with pytest.raises(ai3.UnsupportedError, match="node 'tanh'.*tanh"):
        ai3.convert(Tanh())


def test_convert_unsupported_view():
    class View(nn.Module):
        def forward(self, x):
            return x.view(x.size(0) * 2, x.size(1) // 2, -1)

    with pytest.raises(ai3.UnsupportedError, match="view"):
        ai3.convert(View())


def test_convert_scalar_arithmetic_unsupported():
    class Scale(nn.Module):
        def forward(self, x):
            return x * 0.5

    with pytest.raises(ai3.UnsupportedError, match="node 'mul'.*constant 0.5"):
        ai3.convert(Scale())


def test_convert_untraceable():
    with pytest.raises(ai3.UnsupportedError, match="torch.fx"):
        ai3.convert(Untraceable())


def test_convert_bad_algos():
    net = ConvNet()
    with pytest.raises(TypeError, match="mapping"):
        ai3.convert(net, "direct")
    with pytest.raises(ValueError, match="unknown operation 'conv'"):
        ai3.convert(net, {"conv": A})
    with pytest.raises(ValueError, match="two selectors"):
        ai3.convert(net, {"conv2d": A, nn.Conv2d: B})
    with pytest.raises(ValueError, match="'torch'.*swap_operation"):
        ai3.convert(net, {"conv2d": "torch"})
    with pytest.raises(ValueError, match="lists 1 algorithm.*has 2 conv2d"):
        ai3.convert(net, {"conv2d": [A]})
    with pytest.raises(ValueError, match="lists 4 algorithms.*has 3 relu"):
        ai3.convert(net, {"relu": ["default"] * 4})


def test_convert_bad_dtype():
    with pytest.raises(ValueError, match="dtype"):
        ai3.convert(ConvNet(), dtype=torch.float16)
    with pytest.raises(ai3.UnsupportedError, match="float16"):
        ai3.convert(nn.Sequential(nn.Linear(2, 2)).half())


def test_model_bad_input():
    model = ai3.convert(nn.Sequential(nn.Linear(4, 2)))
    with pytest.raises(TypeError, match="numpy"):
        model([1.0, 2.0, 3.0, 4.0])
    with pytest.raises(ValueError, match="out_type"):
        model.predict(torch.randn(1, 4), out_type=list)
    with pytest.raises(ValueError, match="features"):
        model(torch.randn(1, 5))
    with pytest.raises(TypeError, match="dtype"):
        model(np.array(["a", "b"]))


# --------------------------------------------------------------------------
# A run-time registered algorithm named 'custom'

CUSTOM_RELU = r"""
#include "ai3.h"

/* ReLU written the plain way, registered as relu "custom". */
static ai3_status custom_relu(const ai3_tensor *input, ai3_tensor *output) {
    int64_t n = ai3_tensor_numel(input);
    if (input->dtype == AI3_FLOAT32) {
        const float *x = input->data;
        float *y = output->data;
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
    } else {
        const double *x = input->data;
        double *y = output->data;
        for (int64_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0;
    }
    return AI3_OK;
}

AI3_PLUGIN_EXPORT ai3_status ai3_init_algorithms(int abi_version) {
    ai3_status s = ai3_plugin_check_abi(abi_version);
    if (s != AI3_OK) return s;
    return ai3_register_algorithm(AI3_OP_RELU, "custom", AI3_DEVICE_CPU,
                                  (ai3_algorithm_fn)custom_relu);
}
"""


def build_plugin(tmp_path, name, code):
    """A shared library of algorithms compiled from `code`; skips without a
    C compiler or ai3.h."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    headers = [p for p in (pathlib.Path(__file__).resolve().parents[2] / "include",
                           pathlib.Path(ai3.__file__).parent / "include")
               if (p / "ai3.h").exists()]
    if not compiler or not headers:
        pytest.skip("needs a C compiler and ai3.h")
    source = tmp_path / f"{name}.c"
    source.write_text(code)
    library = tmp_path / f"lib{name}.so"
    subprocess.run([compiler, "-shared", "-fPIC", "-O1", f"-I{headers[0]}", str(source), "-o",
                    str(library)], check=True)
    return str(library)


def test_custom_algorithm_loaded_at_run_time(tmp_path):
    ai3.load_algorithms(build_plugin(tmp_path, "custom_relu", CUSTOM_RELU))
    assert "custom" in ai3.list_algorithms("relu")
    assert "custom" not in ai3.SUPPORTED_ALGORITHMS["relu"]

    orig = SevenOps()
    net = copy.deepcopy(orig)
    ai3.swap_operation(nn.ReLU, net, "custom")
    assert {m.algorithm for m in net.modules() if isinstance(m, swap.ReLU)} == {"custom"}
    x = randn(SEVEN_SHAPE, seed=11)
    assert close(net(x), orig(x))
    model = ai3.convert(orig, {"relu": "custom"})
    assert [layer.algorithm for layer in model.layers if layer.op == "relu"] == ["custom"] * 2
    with torch.no_grad():
        assert close(model(x), orig(x))
    with pytest.raises(ValueError, match="custom.*load_algorithms"):
        ai3.swap_conv2d(ConvNet(), "custom")  # registered for relu only


STALE_PLUGIN = r"""
#include "ai3.h"

AI3_PLUGIN_EXPORT ai3_status ai3_init_algorithms(int abi_version) {
    return ai3_plugin_check_abi(abi_version + 1); /* as if built for another ABI */
}
"""


def test_plugin_built_for_another_abi_is_refused(tmp_path):
    library = build_plugin(tmp_path, "stale", STALE_PLUGIN)
    with pytest.raises(ai3.UnsupportedError, match="ABI"):
        ai3.load_algorithms(library)
