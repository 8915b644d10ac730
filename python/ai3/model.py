"""convert: a whole torch network as an ai3.Model computed layer by layer in
the C core.

The network is traced with torch.fx and must be a chain: each operation
consumes the previous one's output (branches and joins are not supported
yet). Recognised nodes:

* modules: the seven operations (nn.Conv2d, nn.Linear, nn.MaxPool2d,
  nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ReLU, nn.Flatten, also when
  swapped by ai3), nn.Dropout* and nn.Identity (identities: a Model only
  does inference), nested nn.Sequential;
* functions: torch.flatten, torch.relu, F.relu, F.max_pool2d, F.avg_pool2d,
  F.adaptive_avg_pool2d, F.dropout*;
* tensor methods: x.flatten(...), x.relu(), x.contiguous(),
  x.view(x.size(0), -1) and x.reshape(...) of the same form, and
  x.view(-1, k) (a flatten(1) checked at run time to give k features).

Anything else is an UnsupportedError naming the node.
"""

import numpy as np
import torch
import torch.fx
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from . import _core, _ops, selectors
from ._errors import UnsupportedError
from .swap import adaptive_output_size

_DTYPES = {torch.float32: torch.float32, torch.float64: torch.float64,
           "float32": torch.float32, "float64": torch.float64,
           np.float32: torch.float32, np.float64: torch.float64}


# --------------------------------------------------------------------------
# Layers


class Layer:
    """One operation of a Model: callable on a tensor.

    name: the module's qualified name in the converted network, or the fx
        node's name for a function or method call.
    op: the operation's name ('conv2d', ...).
    algorithm: the selected algorithm (as selected: 'default' stays 'default').
    module_name: the qualified name of the source module, or None when the
        layer comes from a function or method call.
    """

    op = None

    def __init__(self, name, algorithm, module_name):
        self.name = name
        self.algorithm = algorithm
        self.module_name = module_name

    def params(self):
        """The layer's parameters for its repr."""
        return ""

    def reference(self, x):
        """The same operation computed by PyTorch (for checking)."""
        raise NotImplementedError

    def __repr__(self):
        shown = self.algorithm
        if shown == selectors.DEFAULT:
            shown = f"default ({_core.default_algorithm(self.op)})"
        params = self.params()
        return f"{self.name}: {self.op}({params}{', ' if params else ''}algorithm='{shown}')"


class Conv2dLayer(Layer):
    op = "conv2d"

    def __init__(self, name, algorithm, module_name, m, dtype):
        super().__init__(name, algorithm, module_name)
        self.weight = _own(m.weight, dtype)
        self.bias = None if m.bias is None else _own(m.bias, dtype)
        self.stride = _pair(m.stride)
        self.padding = _ops.conv2d_padding(m.padding, m.kernel_size, m.dilation)
        self.dilation = _pair(m.dilation)
        self.groups = m.groups
        self.padding_mode = m.padding_mode

    def __call__(self, x):
        return _ops.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation,
                           self.groups, self.padding_mode, self.algorithm)

    def params(self):
        oc, icg, kh, kw = self.weight.shape
        return (f"{icg * self.groups}, {oc}, kernel=({kh}, {kw}), stride={self.stride}, "
                f"padding={self.padding}, dilation={self.dilation}, groups={self.groups}, "
                f"bias={self.bias is not None}, padding_mode='{self.padding_mode}'")

    def reference(self, x):
        t, b, l, r = self.padding
        mode = "constant" if self.padding_mode == "zeros" else self.padding_mode
        x = F.pad(x, (l, r, t, b), mode=mode)
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class LinearLayer(Layer):
    op = "linear"

    def __init__(self, name, algorithm, module_name, m, dtype):
        super().__init__(name, algorithm, module_name)
        self.weight = _own(m.weight, dtype)
        self.bias = None if m.bias is None else _own(m.bias, dtype)

    def __call__(self, x):
        return _ops.linear(x, self.weight, self.bias, self.algorithm)

    def params(self):
        out_f, in_f = self.weight.shape
        return f"{in_f}, {out_f}, bias={self.bias is not None}"

    def reference(self, x):
        return F.linear(x, self.weight, self.bias)


class MaxPool2dLayer(Layer):
    op = "maxpool2d"

    def __init__(self, name, algorithm, module_name, kernel_size, stride, padding, dilation,
                 ceil_mode):
        super().__init__(name, algorithm, module_name)
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self.padding = _pair(padding)
        self.dilation = _pair(dilation)
        self.ceil_mode = bool(ceil_mode)

    def __call__(self, x):
        return _ops.maxpool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                              self.ceil_mode, self.algorithm)

    def params(self):
        return (f"kernel={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"dilation={self.dilation}, ceil_mode={self.ceil_mode}")

    def reference(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation,
                            self.ceil_mode)


class AvgPool2dLayer(Layer):
    op = "avgpool2d"

    def __init__(self, name, algorithm, module_name, kernel_size, stride, padding, ceil_mode,
                 count_include_pad, divisor_override):
        super().__init__(name, algorithm, module_name)
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self.padding = _pair(padding)
        self.ceil_mode = bool(ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        self.divisor_override = divisor_override

    def __call__(self, x):
        return _ops.avgpool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                              self.count_include_pad, self.divisor_override, self.algorithm)

    def params(self):
        return (f"kernel={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
                f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}, "
                f"divisor_override={self.divisor_override}")

    def reference(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
                            self.count_include_pad, self.divisor_override)


class AdaptiveAvgPool2dLayer(Layer):
    op = "adaptiveavgpool2d"

    def __init__(self, name, algorithm, module_name, output_size):
        super().__init__(name, algorithm, module_name)
        self.output_size = output_size

    def __call__(self, x):
        return _ops.adaptiveavgpool2d(x, adaptive_output_size(self.output_size, x.shape),
                                      self.algorithm)

    def params(self):
        return f"output_size={self.output_size}"

    def reference(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)


class ReLULayer(Layer):
    op = "relu"

    def __call__(self, x):
        return _ops.relu(x, self.algorithm)

    def reference(self, x):
        return F.relu(x)


class FlattenLayer(Layer):
    op = "flatten"

    def __init__(self, name, algorithm, module_name, start_dim, end_dim, features=None):
        super().__init__(name, algorithm, module_name)
        self.start_dim = start_dim
        self.end_dim = end_dim
        self.features = features  # x.view(-1, features): checked at run time

    def __call__(self, x):
        self._check(x)
        return _ops.flatten(x, self.start_dim, self.end_dim, self.algorithm)

    def _check(self, x):
        if self.features is not None and x.dim() >= 1:
            got = x[0].numel() if x.dim() > 1 else x.numel()
            if got != self.features:
                raise ValueError(f"{self.name}: view(-1, {self.features}) of an input of shape "
                                 f"{tuple(x.shape)} is not a flatten of each sample "
                                 f"({got} features per sample)")

    def params(self):
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"

    def reference(self, x):
        self._check(x)
        return torch.flatten(x, self.start_dim, self.end_dim)


def _own(t, dtype):
    """A contiguous copy of parameter `t` in `dtype`, detached from autograd."""
    return t.detach().to(dtype=dtype, copy=True).contiguous()


# --------------------------------------------------------------------------
# The Model


class Model:
    """A network converted by ai3.convert, computed layer by layer by ai3.

    model(x) and model.predict(x) take a torch tensor or a numpy array
    (batched or, where the first operation allows it, unbatched), cast it to
    the model's dtype if needed (the caller's array is never modified) and
    run without autograd.

    layers: the Layer objects, in order; each is callable on a tensor.
    dtype: torch.float32 or torch.float64.
    """

    def __init__(self, layers, dtype):
        self.layers = tuple(layers)
        self.dtype = dtype

    def __call__(self, x):
        return self.predict(x)

    def predict(self, x, out_type=None):
        """The network's output for `x`.

        out_type: None or torch.Tensor gives a torch tensor; numpy.ndarray
        gives a numpy array.
        """
        if out_type not in (None, torch.Tensor, np.ndarray):
            raise ValueError(f"out_type must be None, torch.Tensor or numpy.ndarray, not "
                             f"{out_type!r}")
        if isinstance(x, np.ndarray):
            if x.dtype.kind not in "fiub":
                raise TypeError(f"cannot run on a numpy array of dtype {x.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(x))
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"the input must be a torch tensor or a numpy array, not "
                            f"{type(x).__name__}")
        with torch.inference_mode():
            x = x.to(self.dtype)
            for layer in self.layers:
                x = layer(x)
        if out_type is np.ndarray:
            return x.numpy()
        return x

    def __repr__(self):
        lines = [f"Model(dtype={self.dtype}, layers=["]
        lines += [f"  {layer!r}," for layer in self.layers]
        lines.append("])")
        return "\n".join(lines)


# --------------------------------------------------------------------------
# convert


def convert(module, algos=None, sample_input_shape=None, *, dtype=None):
    """Converts the torch network `module` into an ai3.Model.

    algos: None, or a mapping from operation (name such as 'conv2d' or torch
        module type such as nn.Conv2d) to a selector (see ai3.selectors);
        operations not given use 'default'. Instances are counted in the
        network's order, function calls (torch.flatten, F.relu, ...)
        included; a callable selector receives the module, or for a function
        call an equivalent torch module.
    sample_input_shape: the shape of an input; needed by two-argument
        selectors.
    dtype: torch.float32 or torch.float64 (or 'float32'/'float64'); by
        default the dtype of the network's parameters. The Model holds its
        own contiguous copies of the weights in that dtype.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert needs an nn.Module, not {type(module).__name__}")
    selector_of = _check_algos(algos)
    shape = selectors.check_sample_input_shape(sample_input_shape)
    dtype = _model_dtype(module, dtype)

    try:
        graph = selectors.LeafTracer().trace(module)
    except Exception as e:
        raise UnsupportedError(f"convert needs a network torch.fx can trace; tracing "
                               f"{type(module).__name__} failed: {type(e).__name__}: {e}") from e
    steps = _chain(module, graph)

    shapes = _input_shapes(module, graph, shape) if shape is not None else {}
    chosen = {}
    for op in selectors.OPERATIONS:
        of_op = [s for s in steps if s.op == op]
        instances = [selectors.Instance(s.name, s.as_module(), shapes.get(s.node.name))
                     for s in of_op]
        names = selectors.resolve(op, selector_of.get(op), instances,
                                  sample_given=shape is not None)
        chosen.update(zip((id(s) for s in of_op), names))
    return Model([s.build(chosen[id(s)], dtype) for s in steps if s.op is not None], dtype)


def _check_algos(algos):
    if algos is None:
        return {}
    if not hasattr(algos, "items"):
        raise TypeError(f"algos must be a mapping from operation name (or type) to selector, "
                        f"not {type(algos).__name__}")
    by_op = {}
    for key, selector in algos.items():
        op = selectors.op_name(key)
        if op in by_op:
            raise ValueError(f"algos gives two selectors for {op}")
        by_op[op] = selector
    return by_op


def _model_dtype(module, dtype):
    if dtype is not None:
        if isinstance(dtype, np.dtype):
            dtype = str(dtype)
        try:
            return _DTYPES[dtype]
        except (KeyError, TypeError):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, not {dtype!r}") \
                from None
    for p in list(module.parameters()) + list(module.buffers()):
        if p.is_floating_point():
            if p.dtype not in (torch.float32, torch.float64):
                raise UnsupportedError(f"the network's parameters are {p.dtype}; ai3 computes "
                                       f"float32 and float64 (pass dtype=)")
            return p.dtype
    return torch.float32


class _Step:
    """A node of the chain: an operation (op set) or an identity (op None)."""

    def __init__(self, node, op, name, module_name=None, module=None, **kw):
        self.node = node
        self.op = op
        self.name = name
        self.module_name = module_name
        self.module = module
        self.kw = kw

    def as_module(self):
        """The torch module a callable selector sees for this step."""
        if self.module is not None:
            return self.module
        kw = self.kw
        if self.op == "relu":
            return nn.ReLU()
        if self.op == "flatten":
            return nn.Flatten(kw["start_dim"], kw["end_dim"])
        if self.op == "maxpool2d":
            return nn.MaxPool2d(kw["kernel_size"], kw["stride"], kw["padding"], kw["dilation"],
                                ceil_mode=kw["ceil_mode"])
        if self.op == "avgpool2d":
            return nn.AvgPool2d(kw["kernel_size"], kw["stride"], kw["padding"], kw["ceil_mode"],
                                kw["count_include_pad"], kw["divisor_override"])
        if self.op == "adaptiveavgpool2d":
            return nn.AdaptiveAvgPool2d(kw["output_size"])
        raise AssertionError(self.op)

    def build(self, algorithm, dtype):
        m, kw = self.module, self.kw
        args = (self.name, algorithm, self.module_name)
        if self.op == "conv2d":
            return Conv2dLayer(*args, m, dtype)
        if self.op == "linear":
            return LinearLayer(*args, m, dtype)
        if self.op == "relu":
            return ReLULayer(*args)
        if self.op == "flatten":
            return FlattenLayer(*args, kw["start_dim"], kw["end_dim"], kw.get("features"))
        if self.op == "maxpool2d":
            return MaxPool2dLayer(*args, kw["kernel_size"], kw["stride"], kw["padding"],
                                  kw["dilation"], kw["ceil_mode"])
        if self.op == "avgpool2d":
            return AvgPool2dLayer(*args, kw["kernel_size"], kw["stride"], kw["padding"],
                                  kw["ceil_mode"], kw["count_include_pad"],
                                  kw["divisor_override"])
        if self.op == "adaptiveavgpool2d":
            return AdaptiveAvgPool2dLayer(*args, kw["output_size"])
        raise AssertionError(self.op)


_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                     nn.AlphaDropout, nn.FeatureAlphaDropout)
_IDENTITY_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                       F.feature_alpha_dropout)

# Parameter names and defaults of the recognised functions, after the input.
_FUNCTION_PARAMS = {
    "flatten": (("start_dim", 0), ("end_dim", -1)),
    "relu": (("inplace", False),),
    "maxpool2d": (("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1),
                  ("ceil_mode", False), ("return_indices", False)),
    "avgpool2d": (("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
                  ("count_include_pad", True), ("divisor_override", None)),
    "adaptiveavgpool2d": (("output_size", None),),
}
_FUNCTIONS = {torch.flatten: "flatten", torch.relu: "relu", F.relu: "relu",
              F.max_pool2d: "maxpool2d", torch.max_pool2d: "maxpool2d",
              F.avg_pool2d: "avgpool2d", F.adaptive_avg_pool2d: "adaptiveavgpool2d"}
_METHODS = {"flatten": "flatten", "relu": "relu"}


def _describe(node, position):
    target = node.target if isinstance(node.target, str) else \
        getattr(node.target, "__qualname__", repr(node.target))
    return f"node '{node.name}' ({node.op} {target}, position {position})"


def _chain(root, graph):
    """The network's nodes as a chain of _Steps; raises UnsupportedError for
    anything that is not a chain of recognised operations."""
    nodes = list(graph.nodes)
    inputs = [n for n in nodes if n.op == "placeholder"]
    if len(inputs) != 1:
        raise UnsupportedError(f"convert needs a network with one input; "
                               f"{type(root).__name__}.forward takes {len(inputs)}")
    current = inputs[0]
    folded = set()  # x.size(0) nodes consumed by a following view/reshape
    steps = []
    for position, node in enumerate(nodes):
        if node.op == "placeholder" or node in folded:
            continue
        where = _describe(node, position)
        if node.op == "output":
            if node.args[0] is not current:
                raise UnsupportedError(f"convert needs a network that returns the last "
                                       f"operation's output as a single tensor; {where} "
                                       f"returns {node.args[0]!r}")
            break
        if node.op == "call_method" and node.target == "size" and \
                _size0_of(node, current):
            users = list(node.users)
            if len(users) == 1 and users[0].op == "call_method" and \
                    users[0].target in ("view", "reshape"):
                folded.add(node)
                continue
        tensor_args = [a for a in node.all_input_nodes if a not in folded]
        if tensor_args != [current] or \
                any(u is not node and u not in folded for u in current.users):
            raise UnsupportedError(f"convert supports a chain of operations only (branches "
                                   f"and joins are not supported yet); {where} breaks the "
                                   f"chain")
        step = _step(root, node, where, current, folded)
        if step is not None:
            steps.append(step)
        current = node
    return steps


def _size0_of(node, current):
    args = list(node.args[1:]) + list(node.kwargs.values())
    return node.args[0] is current and args == [0]


def _step(root, node, where, current, folded):
    """The _Step for one node, None for an identity."""
    if node.op == "call_module":
        m = root.get_submodule(node.target)
        for op in selectors.OPERATIONS:
            if selectors.computes(m, op):
                if op == "maxpool2d" and m.return_indices:
                    raise UnsupportedError(f"{where}: MaxPool2d(return_indices=True) is not "
                                           f"supported")
                return _Step(node, op, node.target, node.target, m, **_module_kw(op, m))
        if type(m) in _IDENTITY_MODULES:
            return None
        raise UnsupportedError(f"cannot convert {where}: module {type(m).__name__} is not "
                               f"supported; supported modules are "
                               f"{', '.join(c.__name__ for c in selectors.OPERATIONS.values())}, "
                               f"Dropout and Identity")
    if node.op == "call_function":
        if node.target in _IDENTITY_FUNCTIONS:
            return None
        op = _FUNCTIONS.get(node.target)
        if op is not None:
            return _function_step(node, op, where)
    if node.op == "call_method":
        if node.target == "contiguous" and len(node.args) == 1 and not node.kwargs:
            return None
        if node.target in _METHODS:
            return _function_step(node, _METHODS[node.target], where)
        if node.target in ("view", "reshape"):
            return _view_step(node, where, folded)
    raise UnsupportedError(f"cannot convert {where}: not a supported operation")


def _module_kw(op, m):
    """The parameters of a pooling or flatten module, as _function_step gives."""
    if op == "maxpool2d":
        return dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                    dilation=m.dilation, ceil_mode=m.ceil_mode)
    if op == "avgpool2d":
        return dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                    ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                    divisor_override=m.divisor_override)
    if op == "adaptiveavgpool2d":
        return dict(output_size=m.output_size)
    if op == "flatten":
        return dict(start_dim=m.start_dim, end_dim=m.end_dim)
    return {}


def _function_step(node, op, where):
    names = _FUNCTION_PARAMS[op]
    extra = node.args[1:]
    if len(extra) > len(names):
        raise UnsupportedError(f"cannot convert {where}: too many arguments")
    values = {name: default for name, default in names}
    values.update(zip((name for name, _ in names), extra))
    for key, value in node.kwargs.items():
        if key not in values:
            raise UnsupportedError(f"cannot convert {where}: unexpected argument {key!r}")
        values[key] = value
    for key, value in values.items():
        if isinstance(value, torch.fx.Node) or \
                (isinstance(value, (tuple, list)) and
                 any(isinstance(v, torch.fx.Node) for v in value)):
            raise UnsupportedError(f"cannot convert {where}: argument {key!r} is computed at "
                                   f"run time")
    if op == "relu":
        values.pop("inplace")
    if op == "maxpool2d" and values.pop("return_indices"):
        raise UnsupportedError(f"cannot convert {where}: return_indices=True is not supported")
    if values.get("kernel_size", 0) is None or \
            (op == "adaptiveavgpool2d" and values["output_size"] is None):
        raise UnsupportedError(f"cannot convert {where}: missing argument")
    return _Step(node, op, node.name, **values)


def _view_step(node, where, folded):
    """x.view(x.size(0), -1) or x.view(-1, k) (also reshape) as flatten(1)."""
    shape = node.args[1:]
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not node.kwargs and len(shape) == 2:
        first, second = shape
        if first in folded and second == -1:
            return _Step(node, "flatten", node.name, start_dim=1, end_dim=-1)
        if first == -1 and isinstance(second, int) and second > 0:
            return _Step(node, "flatten", node.name, start_dim=1, end_dim=-1, features=second)
    raise UnsupportedError(f"cannot convert {where}: only view/reshape(x.size(0), -1) and "
                           f"view/reshape(-1, features) are supported")


def _input_shapes(root, graph, shape):
    """{node name: shape of the node's input} from one run on a sample."""
    gm = torch.fx.GraphModule(root, graph)
    shapes = {}

    class Recorder(torch.fx.Interpreter):
        def run_node(self, n):
            args, _ = self.fetch_args_kwargs_from_env(n)
            if args and isinstance(args[0], torch.Tensor):
                shapes[n.name] = tuple(args[0].shape)
            return super().run_node(n)

    def call(sample):
        shapes.clear()
        Recorder(gm).run(sample)

    selectors.run_sample(root, call, shape)
    return shapes


__all__ = ["convert", "Model", "Layer"]
