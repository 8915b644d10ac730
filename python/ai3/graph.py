"""From a torch.fx graph to the steps of an ai3 graph.

:func:`translate` walks the nodes of a traced network in order and turns
each into a :class:`Step` (an operation the C graph executor computes) or
into a value that needs no operation: an identity (dropout, stochastic depth
and identity modules, ``x.contiguous()``), a batchnorm folded into the
convolution before it, a shape (``x.size()``, ``x.shape``) or a size
(``x.size(0)``, ``x.shape[2]``), a piece of ``x.chunk(...)``, or a
parameter read with ``get_attr``.

Shapes are symbolic: ``x.view(x.size(0), -1)`` becomes a reshape whose first
size is "dimension 0 of x" in every run, so one Model runs on any batch and
spatial size. A size computed from sizes (``c // 2``) becomes the one
inferred dimension (-1) of a reshape; more than one such size in one
reshape is an UnsupportedError. Everything else the executor cannot compute
is an UnsupportedError naming the node, its target and its position, raised
at convert time.
"""

import operator

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair

from . import selectors
from ._errors import UnsupportedError

try:  # torchvision is optional
    from torchvision.ops import StochasticDepth as _StochasticDepth
    from torchvision.ops import stochastic_depth as _stochastic_depth
except ImportError:  # pragma: no cover
    _StochasticDepth = _stochastic_depth = None


class Step:
    """One operation of the graph.

    op: the operation ('conv2d', 'add', 'reshape', ...).
    name: the module's qualified name, or the fx node's name for a call.
    module: the module (call_module) or an equivalent one, or None; what a
        callable selector receives.
    inputs: the Steps' values it reads: ints (value numbers in the
        translation, see Translation.values).
    params: the operation's parameters.
    """

    def __init__(self, op, name, node, module=None, module_name=None, inputs=(), **params):
        self.op = op
        self.name = name
        self.node = node
        self.module = module
        self.module_name = module_name
        self.inputs = list(inputs)
        self.params = params
        self.outputs = []  # value numbers it produces


class _Size:
    """x.size() or x.shape: the shape of value `value`."""

    def __init__(self, value):
        self.value = value


class _Dim:
    """x.size(dim): one size of value `value` in the current run."""

    def __init__(self, value, dim):
        self.value = value
        self.dim = dim


class _Computed:
    """A size computed from sizes (e.g. channels // groups)."""


class _Tensor:
    """A graph value (a tensor) with its number."""

    def __init__(self, value):
        self.value = value


_IDENTITY_MODULES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d,
                     nn.AlphaDropout, nn.FeatureAlphaDropout)
_IDENTITY_FUNCTIONS = (F.dropout, F.dropout1d, F.dropout2d, F.dropout3d, F.alpha_dropout,
                       F.feature_alpha_dropout)

# Elementwise activations without parameters: module type, functions, methods.
_UNARY = {
    "relu": (nn.ReLU, (torch.relu, F.relu), ("relu",)),
    "sigmoid": (nn.Sigmoid, (torch.sigmoid, F.sigmoid), ("sigmoid",)),
    "hardsigmoid": (nn.Hardsigmoid, (F.hardsigmoid,), ()),
    "hardswish": (nn.Hardswish, (F.hardswish,), ()),
    "silu": (nn.SiLU, (F.silu,), ()),
}
_ADD = (operator.add, operator.iadd, torch.add)
_MUL = (operator.mul, operator.imul, torch.mul)
_INT_OPS = (operator.floordiv, operator.mul, operator.add, operator.sub, operator.truediv)


def describe(node, position):
    """How messages name an fx node."""
    target = node.target if isinstance(node.target, str) else \
        getattr(node.target, "__qualname__", repr(node.target))
    return f"node '{node.name}' ({node.op} {target}, position {position})"


def _plain(module, cls, op):
    """Whether `module` computes what `cls` computes: an instance whose
    forward is cls's own, or an ai3 swapped module of that operation."""
    return isinstance(module, cls) and (type(module).forward is cls.forward or
                                        getattr(type(module), "_ai3_op", None) == op)


class Translation:
    """The steps of a traced network.

    steps: the operations in order.
    input: the value number of the network's input (0).
    outputs: the value numbers of its outputs; `single` when forward returns
        one tensor rather than a tuple.
    constants: {value number: tensor} read with get_attr and used as operands.
    """

    def __init__(self, root, graph, *, fold_batchnorm):
        self.root = root
        self.steps = []
        self.constants = {}
        self.n_values = 0
        self.env = {}
        self.fold_batchnorm = fold_batchnorm
        self.folded = {}  # conv node -> its batchnorm module's (name, module)
        nodes = list(graph.nodes)
        placeholders = [n for n in nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise UnsupportedError(f"convert needs a network with one input; "
                                   f"{type(root).__name__}.forward takes {len(placeholders)}")
        self._find_folds(nodes)
        for position, node in enumerate(nodes):
            where = describe(node, position)
            try:
                self._node(node, where)
            except UnsupportedError:
                raise
            except (TypeError, ValueError, AttributeError, IndexError, KeyError) as e:
                raise UnsupportedError(f"cannot convert {where}: {type(e).__name__}: {e}") from e

    # -- values ----------------------------------------------------------

    def _new_value(self):
        self.n_values += 1
        return self.n_values - 1

    def _add(self, step):
        step.outputs = [self._new_value()]
        self.steps.append(step)
        return _Tensor(step.outputs[0])

    def _tensor(self, arg, where, what="input"):
        """The value number of a tensor argument."""
        v = self.env.get(arg) if isinstance(arg, torch.fx.Node) else None
        if isinstance(v, _Tensor):
            return v.value
        if isinstance(v, torch.Tensor):  # a parameter or buffer (get_attr)
            value = self._new_value()
            self.constants[value] = v
            self.env[arg] = _Tensor(value)
            return value
        raise UnsupportedError(f"cannot convert {where}: its {what} is {self._show(arg)}, not a "
                               f"tensor computed by the network")

    def _static(self, arg, where, what):
        """A Python constant argument (not computed at run time)."""
        if isinstance(arg, torch.fx.Node):
            if isinstance(self.env.get(arg), torch.Tensor):  # a parameter (get_attr)
                return self.env[arg]
            raise UnsupportedError(f"cannot convert {where}: argument {what} is computed at run "
                                   f"time")
        if isinstance(arg, (list, tuple)):
            return type(arg)(self._static(a, where, what) for a in arg)
        return arg

    def _show(self, arg):
        if isinstance(arg, torch.fx.Node):
            return f"node '{arg.name}'"
        return repr(arg)

    # -- batchnorm folding ------------------------------------------------

    def _find_folds(self, nodes):
        if not self.fold_batchnorm:
            return
        for node in nodes:
            if node.op != "call_module":
                continue
            bn = self.root.get_submodule(node.target)
            if not _plain(bn, nn.BatchNorm2d, "batchnorm2d") or bn.running_mean is None:
                continue
            conv_node = node.args[0] if node.args else None
            if not isinstance(conv_node, torch.fx.Node) or conv_node.op != "call_module" or \
                    len(conv_node.users) != 1 or len(node.args) != 1 or node.kwargs:
                continue
            conv = self.root.get_submodule(conv_node.target)
            if selectors.computes(conv, "conv2d"):
                self.folded[conv_node] = (node.target, bn)
                self.folded[node] = None  # the batchnorm itself: the conv's value

    # -- nodes -----------------------------------------------------------

    def _node(self, node, where):
        op = node.op
        if op == "placeholder":
            self.env[node] = _Tensor(self._new_value())
            self.input = self.env[node].value
        elif op == "get_attr":
            value = self.root
            for part in node.target.split("."):
                value = getattr(value, part)
            if not isinstance(value, torch.Tensor):
                raise UnsupportedError(f"cannot convert {where}: attribute {node.target} is "
                                       f"not a tensor")
            self.env[node] = value.detach()
        elif op == "output":
            self._output(node.args[0], where)
        elif node in self.folded and self.folded[node] is None:
            self.env[node] = self.env[node.args[0]]
        elif op == "call_module":
            self.env[node] = self._module(node, where)
        elif op == "call_function":
            self.env[node] = self._function(node, where)
        elif op == "call_method":
            self.env[node] = self._method(node, where)
        else:
            raise UnsupportedError(f"cannot convert {where}: unknown node kind {op}")

    def _output(self, result, where):
        if isinstance(result, (tuple, list)):
            self.single = False
            items = result
        else:
            self.single = True
            items = (result,)
        self.outputs = [self._tensor(item, where, "output") for item in items]

    def _module(self, node, where):
        m = self.root.get_submodule(node.target)
        name = node.target
        if node.kwargs or len(node.args) != 1:
            raise UnsupportedError(f"cannot convert {where}: a module called with "
                                   f"{len(node.args)} arguments and keywords {list(node.kwargs)}")
        x = self._tensor(node.args[0], where)
        common = dict(module=m, module_name=name, inputs=[x])
        if isinstance(m, _IDENTITY_MODULES) or (_StochasticDepth and
                                                 isinstance(m, _StochasticDepth)):
            return _Tensor(x)
        if selectors.computes(m, "conv2d"):
            return self._add(Step("conv2d", name, node, **common,
                                  batchnorm=self.folded.get(node)))
        if selectors.computes(m, "linear"):
            return self._add(Step("linear", name, node, **common))
        if selectors.computes(m, "maxpool2d"):
            if m.return_indices:
                raise UnsupportedError(f"cannot convert {where}: MaxPool2d(return_indices=True) "
                                       f"is not supported")
            return self._add(Step("maxpool2d", name, node, **common, kernel_size=m.kernel_size,
                                  stride=m.stride, padding=m.padding, dilation=m.dilation,
                                  ceil_mode=m.ceil_mode))
        if selectors.computes(m, "avgpool2d"):
            return self._add(Step("avgpool2d", name, node, **common, kernel_size=m.kernel_size,
                                  stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode,
                                  count_include_pad=m.count_include_pad,
                                  divisor_override=m.divisor_override))
        if selectors.computes(m, "adaptiveavgpool2d"):
            return self._add(Step("adaptiveavgpool2d", name, node, **common,
                                  output_size=m.output_size))
        if selectors.computes(m, "flatten"):
            return self._add(Step("flatten", name, node, **common, start_dim=m.start_dim,
                                  end_dim=m.end_dim))
        for op, (cls, _, _) in _UNARY.items():
            if _plain(m, cls, op):
                return self._add(Step(op, name, node, **common))
        if _plain(m, nn.ReLU6, "hardtanh") or _plain(m, nn.Hardtanh, "hardtanh"):
            return self._add(Step("hardtanh", name, node, **common, min_val=m.min_val,
                                  max_val=m.max_val))
        if _plain(m, nn.GELU, "gelu"):
            return self._add(Step("gelu", name, node, **common, approximate=m.approximate))
        if _plain(m, nn.BatchNorm2d, "batchnorm2d"):
            if m.running_mean is None or m.running_var is None:
                raise UnsupportedError(f"cannot convert {where}: BatchNorm2d without running "
                                       f"statistics (track_running_stats=False) normalises with "
                                       f"batch statistics, which ai3 does not compute")
            return self._add(Step("batchnorm2d", name, node, **common, eps=m.eps))
        if _plain(m, nn.LayerNorm, "layernorm"):
            return self._add(Step("layernorm", name, node, **common,
                                  normalized_ndim=len(m.normalized_shape), weight=m.weight,
                                  bias=m.bias, eps=m.eps))
        if _plain(m, nn.Softmax, "softmax"):
            if m.dim is None:
                raise UnsupportedError(f"cannot convert {where}: Softmax needs an explicit dim")
            return self._add(Step("softmax", name, node, **common, dim=m.dim))
        raise UnsupportedError(f"cannot convert {where}: module {type(m).__name__} is not "
                               f"supported by ai3")

    def _call(self, node, where, op, params, module=None):
        """A step for a function or method call: node.args[0] is the input,
        the others are matched to `params` ((name, default) pairs)."""
        args, kwargs = list(node.args[1:]), dict(node.kwargs)
        values = dict(params)
        names = [n for n, _ in params]
        if len(args) > len(names):
            raise UnsupportedError(f"cannot convert {where}: too many arguments")
        values.update(zip(names, args))
        for key, value in kwargs.items():
            if key not in values:
                raise UnsupportedError(f"cannot convert {where}: unexpected argument {key!r}")
            values[key] = value
        values = {k: self._static(v, where, repr(k)) for k, v in values.items()}
        x = self._tensor(node.args[0], where)
        return Step(op, node.name, node, module=module, inputs=[x], **values)

    def _function(self, node, where):
        t = node.target
        args = node.args
        if t in _IDENTITY_FUNCTIONS:
            return self._env_tensor(args[0], where)
        if _stochastic_depth is not None and t is _stochastic_depth:
            training = node.kwargs.get("training", args[3] if len(args) > 3 else True)
            if training is False:
                return self._env_tensor(args[0], where)
            raise UnsupportedError(f"cannot convert {where}: stochastic depth in training mode")
        if t is getattr:
            if args[1] == "shape":
                return _Size(self._tensor(args[0], where))
            raise UnsupportedError(f"cannot convert {where}: attribute {args[1]!r} of a tensor")
        if t is operator.getitem:
            return self._getitem(node, where)
        if t in _INT_OPS and not any(isinstance(self.env.get(a), _Tensor) or
                                     isinstance(self.env.get(a), torch.Tensor)
                                     for a in args if isinstance(a, torch.fx.Node)):
            return _Computed()
        if t in _ADD or t in _MUL:
            return self._binary(node, where, "add" if t in _ADD else "mul")
        if t in (torch.cat, torch.concat):
            return self._cat(node, where)
        if t is torch.flatten:
            return self._add(self._call(node, where, "flatten", (("start_dim", 0),
                                                                 ("end_dim", -1))))
        for op, (cls, functions, _) in _UNARY.items():
            if t in functions:
                return self._add(self._call(node, where, op, (("inplace", False),), cls()))
        if t is F.relu6:
            step = self._call(node, where, "hardtanh", (("inplace", False),), nn.ReLU6())
            step.params.update(min_val=0.0, max_val=6.0)
            return self._add(step)
        if t is F.hardtanh:
            return self._add(self._call(node, where, "hardtanh", (
                ("min_val", -1.0), ("max_val", 1.0), ("inplace", False))))
        if t is F.gelu:
            return self._add(self._call(node, where, "gelu", (("approximate", "none"),)))
        if t in (F.max_pool2d, torch.max_pool2d):
            step = self._call(node, where, "maxpool2d", (
                ("kernel_size", None), ("stride", None), ("padding", 0), ("dilation", 1),
                ("ceil_mode", False), ("return_indices", False)))
            if step.params.pop("return_indices"):
                raise UnsupportedError(f"cannot convert {where}: return_indices=True is not "
                                       f"supported")
            return self._add(step)
        if t is F.avg_pool2d:
            return self._add(self._call(node, where, "avgpool2d", (
                ("kernel_size", None), ("stride", None), ("padding", 0), ("ceil_mode", False),
                ("count_include_pad", True), ("divisor_override", None))))
        if t is F.adaptive_avg_pool2d:
            return self._add(self._call(node, where, "adaptiveavgpool2d",
                                        (("output_size", None),)))
        if t is torch.mean:
            return self._add(self._mean(self._call(node, where, "mean", (
                ("dim", None), ("keepdim", False), ("dtype", None))), where))
        if t is torch.permute:
            return self._add(self._call(node, where, "permute", (("dims", None),)))
        if t is torch.transpose:
            return self._add(self._call(node, where, "transpose", (("dim0", None),
                                                                   ("dim1", None))))
        if t is F.layer_norm:
            step = self._call(node, where, "layernorm", (
                ("normalized_shape", None), ("weight", None), ("bias", None), ("eps", 1e-5)))
            step.params["normalized_ndim"] = len(step.params.pop("normalized_shape"))
            return self._add(step)
        if t in (F.softmax, torch.softmax):
            step = self._call(node, where, "softmax", (
                ("dim", None), ("_stacklevel", 3), ("dtype", None)))
            if step.params["dim"] is None or step.params["dtype"] is not None:
                raise UnsupportedError(f"cannot convert {where}: softmax needs an explicit dim "
                                       f"and no dtype")
            return self._add(step)
        if t is torch.chunk:
            return self._chunk(node, where)
        raise UnsupportedError(f"cannot convert {where}: function "
                               f"{getattr(t, '__qualname__', t)} is not supported by ai3")

    def _method(self, node, where):
        name = node.target
        args = node.args
        if name == "contiguous" and len(args) == 1 and not node.kwargs:
            return self._env_tensor(args[0], where)
        if name == "size":
            value = self._tensor(args[0], where)
            dim = node.kwargs.get("dim", args[1] if len(args) > 1 else None)
            return _Size(value) if dim is None else _Dim(value, self._static(dim, where, "dim"))
        if name in ("view", "reshape"):
            return self._reshape(node, where)
        if name == "flatten":
            return self._add(self._call(node, where, "flatten", (("start_dim", 0),
                                                                 ("end_dim", -1))))
        for op, (cls, _, methods) in _UNARY.items():
            if name in methods:
                return self._add(self._call(node, where, op, (), cls()))
        if name in ("add", "add_", "mul", "mul_"):
            return self._binary(node, where, name.rstrip("_"))
        if name == "mean":
            return self._add(self._mean(self._call(node, where, "mean", (
                ("dim", None), ("keepdim", False), ("dtype", None))), where))
        if name == "permute":
            dims = args[1:]
            if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
                dims = dims[0]
            step = Step("permute", node.name, node, inputs=[self._tensor(args[0], where)],
                        dims=list(self._static(tuple(dims), where, "dims")))
            return self._add(step)
        if name == "transpose":
            return self._add(self._call(node, where, "transpose", (("dim0", None),
                                                                   ("dim1", None))))
        if name == "softmax":
            return self._add(self._call(node, where, "softmax", (("dim", None),)))
        if name == "chunk":
            return self._chunk(node, where)
        raise UnsupportedError(f"cannot convert {where}: tensor method .{name}() is not "
                               f"supported by ai3")

    def _env_tensor(self, arg, where):
        return _Tensor(self._tensor(arg, where))

    def _getitem(self, node, where):
        container, index = node.args
        v = self.env.get(container)
        if isinstance(v, _Size) and isinstance(index, int):
            return _Dim(v.value, index)
        if isinstance(v, tuple) and isinstance(index, int):
            return v[index]
        raise UnsupportedError(f"cannot convert {where}: indexing or slicing "
                               f"{self._show(container)} with {index!r} is not supported")

    def _binary(self, node, where, op):
        if len(node.args) != 2 or (node.kwargs and set(node.kwargs) != {"alpha"}) or \
                node.kwargs.get("alpha", 1) != 1:
            raise UnsupportedError(f"cannot convert {where}: {op} of two tensors (without "
                                   f"alpha) is supported")
        a, b = node.args
        for x in (a, b):
            if not isinstance(x, torch.fx.Node):
                raise UnsupportedError(f"cannot convert {where}: {op} with the constant {x!r}; "
                                       f"ai3 adds and multiplies tensors only")
        return self._add(Step(op, node.name, node,
                              inputs=[self._tensor(a, where), self._tensor(b, where)]))

    def _cat(self, node, where):
        tensors = node.args[0] if node.args else node.kwargs.get("tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(tensors, (list, tuple)) or not tensors:
            raise UnsupportedError(f"cannot convert {where}: cat of {tensors!r}")
        inputs = [self._tensor(t, where) for t in tensors]
        return self._add(Step("cat", node.name, node, inputs=inputs,
                              dim=self._static(dim, where, "dim")))

    def _mean(self, step, where):
        if step.params.pop("dtype") is not None:
            raise UnsupportedError(f"cannot convert {where}: mean with a dtype")
        dim = step.params["dim"]
        step.params["dim"] = [] if dim is None else ([dim] if isinstance(dim, int) else list(dim))
        return step

    def _chunk(self, node, where):
        chunks = node.args[1] if len(node.args) > 1 else node.kwargs.get("chunks")
        dim = node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)
        step = Step("chunk", node.name, node, inputs=[self._tensor(node.args[0], where)],
                    chunks=self._static(chunks, where, "chunks"),
                    dim=self._static(dim, where, "dim"))
        step.outputs = [self._new_value() for _ in range(step.params["chunks"])]
        self.steps.append(step)
        return tuple(_Tensor(v) for v in step.outputs)

    def _reshape(self, node, where):
        shape = node.args[1:]
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = shape[0]
        if node.kwargs:
            raise UnsupportedError(f"cannot convert {where}: keyword arguments")
        dims, unknown = [], 0
        for arg in shape:
            v = self.env.get(arg) if isinstance(arg, torch.fx.Node) else arg
            if isinstance(v, _Dim):
                dims.append((v.value, v.dim))
            elif isinstance(v, int) and not isinstance(v, bool):
                dims.append(v)
                unknown += v == -1
            elif isinstance(v, _Computed):
                dims.append(None)
            else:
                raise UnsupportedError(f"cannot convert {where}: a view/reshape size "
                                       f"{self._show(arg)} that is not an int or a size of a "
                                       f"tensor")
        computed = dims.count(None)
        if computed + unknown > 1:
            raise UnsupportedError(f"cannot convert {where}: view/reshape with {computed} sizes "
                                   f"computed from other sizes and {unknown} given as -1; ai3 "
                                   f"can infer one")
        dims = [-1 if d is None else d for d in dims]
        return self._add(Step("reshape", node.name, node,
                              inputs=[self._tensor(node.args[0], where)], dims=dims))


def adaptive_output_size(output_size):
    """AdaptiveAvgPool2d's output size for the graph: None (keep) as 0."""
    h, w = _pair(output_size)
    return (0 if h is None else h, 0 if w is None else w)
