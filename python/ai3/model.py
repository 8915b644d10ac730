"""convert: a whole torch network as an ai3.Model, run by the C graph
executor (one call into C per forward pass).

The network is traced with torch.fx (in eval mode: a Model does inference)
and translated by :mod:`ai3.graph` into a graph with branches, joins and
values used more than once. Recognised:

* modules: nn.Conv2d, nn.Linear, nn.MaxPool2d, nn.AvgPool2d,
  nn.AdaptiveAvgPool2d, nn.ReLU, nn.Flatten (also when swapped by ai3),
  nn.BatchNorm2d (folded into the convolution before it when that
  convolution feeds only it; ``fold_batchnorm=False`` keeps it an
  operation), nn.ReLU6, nn.Hardtanh, nn.Sigmoid, nn.Hardsigmoid,
  nn.Hardswish, nn.SiLU, nn.GELU, nn.LayerNorm, nn.Softmax, and as
  identities nn.Dropout*, nn.Identity and torchvision's StochasticDepth;
  containers are traced through;
* functions: + and * of tensors (torch.add, torch.mul, in place or not, with
  broadcasting), torch.cat, torch.flatten, torch.mean, torch.permute,
  torch.transpose, torch.chunk, the activations (F.relu, F.relu6,
  F.hardtanh, F.sigmoid, F.hardsigmoid, F.hardswish, F.silu, F.gelu),
  F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d, F.layer_norm,
  F.softmax, F.dropout*, torchvision's stochastic_depth in eval mode;
* tensor methods: view, reshape, flatten, permute, transpose, contiguous,
  chunk, mean, relu, sigmoid, softmax, add, mul, and sizes (x.size(),
  x.size(d), x.shape[d]) used in view/reshape, which stay symbolic so that
  one Model runs on every input shape the network accepts.

Anything else is an UnsupportedError at convert time naming the node, its
target and its position in the graph.
"""

import copy
import warnings

import torch
import torch.fx
from torch import nn
from torch.nn.modules.utils import _pair

from . import _core, _ops, graph, selectors
from ._errors import UnsupportedError

_DTYPES = {torch.float32: torch.float32, torch.float64: torch.float64,
           torch.float16: torch.float16, torch.bfloat16: torch.bfloat16,
           "float32": torch.float32, "float64": torch.float64, "float16": torch.float16,
           "bfloat16": torch.bfloat16}

# The registry operation whose algorithms a step selects from (None: no
# algorithm to choose, e.g. a reshape, which is a view).
_SELECTED_AS = {"transpose": "permute", "reshape": None, "chunk": None}


def _selected_as(op):
    return _SELECTED_AS.get(op, op)


class Layer:
    """One operation of a Model.

    name: the module's qualified name, or the fx node's name for a function
        or method call.
    op: the operation ('conv2d', 'add', 'reshape', ...).
    algorithm: the selected algorithm ('default' stays 'default'), or None
        for an operation without algorithms (reshape, chunk).
    module_name: the qualified name of the source module, or None.
    inputs: the names of the layers (or 'input') whose results it reads.
    params: its parameters, as a dict.
    weight_shape: for conv2d and linear, the weight's shape (the weights
        themselves live in the C graph, after folding a batchnorm, whose name
        is in ``folded_batchnorm``); has_bias: whether it has a bias.
    """

    def __init__(self, step, algorithm, inputs):
        self.name = step.name
        self.op = step.op
        self.algorithm = algorithm
        self.module_name = step.module_name
        self.inputs = inputs
        self._node = None  # (C graph, value id) of its node, where the algorithm is read
        self.params = {k: v for k, v in step.params.items()
                       if not isinstance(v, torch.Tensor) and k != "batchnorm"}
        self.weight_shape = None
        self.has_bias = False
        self.folded_batchnorm = None

    @property
    def resolved(self):
        """The algorithm the node runs: what 'default' and 'guess' chose (a
        'guess' made without sample_input_shape chooses at the first input),
        or None for an operation without algorithms."""
        return _core.graph_algorithm(*self._node) if self._node else None

    def _describe_params(self):
        p = self.params
        if self.op == "conv2d":
            oc, icg, kh, kw = self.weight_shape
            groups = p["groups"]
            return (f"{icg * groups}, {oc}, kernel=({kh}, {kw}), stride={p['stride']}, "
                    f"padding={p['padding']}, dilation={p['dilation']}, groups={groups}, "
                    f"bias={self.has_bias}, padding_mode='{p['padding_mode']}'"
                    + (f", folded={self.folded_batchnorm}" if self.folded_batchnorm else ""))
        if self.op == "linear":
            out_f, in_f = self.weight_shape
            return f"{in_f}, {out_f}, bias={self.has_bias}"
        shown = ", ".join(f"{k}={v}" for k, v in p.items())
        if len(self.inputs) > 1:
            return ", ".join(self.inputs) + (", " + shown if shown else "")
        return shown

    def __repr__(self):
        params = self._describe_params()
        if self.algorithm is None:
            return f"{self.name}: {self.op}({params})"
        shown = self.algorithm
        if shown != self.resolved and self.resolved:
            shown = f"{shown} ({self.resolved})"
        return f"{self.name}: {self.op}({params}{', ' if params else ''}algorithm='{shown}')"


class Model:
    """A network converted by ai3.convert, run by the C graph executor.

    model(x) and model.predict(x) take a torch tensor or a numpy array
    (batched, or unbatched where the network allows; a BatchNorm2d, which
    torch gives only batches, takes an unbatched input as a batch of one),
    cast it to the model's dtype if needed (the caller's array is never
    modified; a float16 or bfloat16 input to a model of another dtype is
    refused with a TypeError rather than silently widened: convert with
    that dtype; a complex one is refused) and run
    the whole network in one call into the C core, without autograd. Any
    input shape the network accepts works; the executor plans buffers per
    input shape and caches the last few plans. A model may be called from
    several threads at once.

    On a CUDA device (a network converted while on the GPU, or moved with
    ``to``, ``cuda``), inputs and outputs are tensors on that device, the
    run is enqueued on torch's current stream, and from the second call
    with an input shape on it is replayed as a CUDA graph (unless converted
    with ``cuda_graph=False``).

    A Model is saved as what it is built from: the network it was
    converted from (its structure and weights), the algorithm of each
    layer, its dtype, device and options. ``pickle``, ``torch.save`` /
    ``torch.load(..., weights_only=False)`` and ``copy.deepcopy`` rebuild it
    from those, converting the (copied) network again; ``state_dict`` and
    ``load_state_dict`` read and replace its weights by the network's
    parameter and buffer names.

    layers: the Layer objects, in execution order.
    dtype: torch.float32, torch.float64 or torch.bfloat16 (bfloat16 on the
        CPU needs AVX512_BF16); on CUDA also float16.
    device: where it computes (torch.device).
    """

    def __init__(self, capsule, layers, dtype, single_output, device, rebuild, source=None):
        self._graph = capsule
        self.layers = tuple(layers)
        self.dtype = dtype
        self.device = device
        self._single = single_output
        self._rebuild = rebuild
        self._source = source
        self._built_from = _weight_versions(source.network) if source else None

    def to(self, device):
        """Moves the model to `device` ('cpu', 'cuda', 'cuda:1', a
        torch.device): the C graph is built again there from the network's
        weights as they are now, with the same algorithms. Returns self."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            index = torch.cuda.current_device() if torch.cuda.is_available() else 0
            device = torch.device("cuda", index)
        if device != self.device:
            other = self._rebuild(device)
            self._graph, self.layers, self.device = other._graph, other.layers, device
            self._built_from = other._built_from
        return self

    def cuda(self, device=None):
        """``to('cuda')`` (or that CUDA device)."""
        return self.to(torch.device("cuda") if device is None else torch.device("cuda", device)
                       if isinstance(device, int) else device)

    def cpu(self):
        """``to('cpu')``."""
        return self.to("cpu")

    def __call__(self, x):
        return self.predict(x)

    def predict(self, x, out_type=None):
        """The network's output for `x` (a tuple if forward returns several).

        out_type: None or torch.Tensor gives torch tensors; numpy.ndarray
        gives numpy arrays.
        """
        # The common case (a contiguous tensor of the model's dtype) calls
        # no torch operation before the run: right after a run, whose
        # weights have gone through the caches, each costs 0.1-0.4 ms.
        if out_type is not None and out_type is not torch.Tensor:
            np = _numpy()
            if np is None or out_type is not np.ndarray:
                raise ValueError(f"out_type must be None, torch.Tensor or numpy.ndarray, not "
                                 f"{out_type!r}")
        if not isinstance(x, torch.Tensor):
            np = _numpy()
            if np is None or not isinstance(x, np.ndarray):
                raise TypeError(f"the input must be a torch tensor or a numpy array, not "
                                f"{type(x).__name__}")
            if x.dtype.kind not in "fiub":
                raise TypeError(f"cannot run on a numpy array of dtype {x.dtype}")
            x = torch.from_numpy(np.ascontiguousarray(x)).to(self.device)
        if x.dtype != self.dtype:
            if x.dtype.is_complex:
                raise TypeError(f"ai3 model: the input is {x.dtype}; a model computes real "
                                f"numbers (in {self.dtype})")
            if x.dtype in (torch.float16, torch.bfloat16):
                raise TypeError(f"ai3 model: the input is {x.dtype} but the model computes in "
                                f"{self.dtype}; convert with dtype={x.dtype} or pass "
                                f"x.to({self.dtype})")
            x = x.to(self.dtype)
        if not x.is_contiguous():
            x = x.contiguous()
        outputs = _core.graph_run(self._graph, (x,))
        if out_type is not None and out_type is not torch.Tensor:
            outputs = tuple(o.cpu().numpy() for o in outputs)
        return outputs[0] if self._single else outputs

    def output_shapes(self, input_shape):
        """The output shapes for an input of `input_shape` (nothing is run)."""
        return _core.graph_output_shapes(self._graph, (tuple(input_shape),))

    def memory(self, input_shape):
        """The plan's memory for an input of `input_shape`, in bytes:
        {'peak': the arena holding all intermediate tensors, buffers reused
        by lifetime; 'total': the sum of every intermediate tensor, as if
        none were reused; 'workspace': the operations' scratch}."""
        peak, total, workspace = _core.graph_peak_bytes(self._graph, (tuple(input_shape),))
        return {"peak": peak, "total": total, "workspace": workspace}

    def sub_batch(self, input_shape):
        """The images per slice a run on an input of `input_shape` takes. On
        the CPU a large batch runs in slices of a few images where its
        early layers' activations would not stay in the shared cache (and
        every operation computes each image on its own); else the whole
        batch."""
        return _core.graph_sub_batch(self._graph, (tuple(input_shape),))

    # -- saving and loading ------------------------------------------------

    def _network(self, what):
        """The network the Model is built from, warning when its weights
        changed after the Model was built (the Model computes with those it
        was built with; what is saved or returned is the network's now)."""
        source = self._source
        if _weight_versions(source.network) != self._built_from:
            warnings.warn(f"{what}: the weights of the network this Model was converted from "
                          f"changed after the Model was built; {what} gives them as they are "
                          f"now, while this Model computes with the earlier ones (convert "
                          f"again to compute with the new ones)", stacklevel=3)
        return source.network

    def __reduce__(self):
        source = self._source
        network = self._network("saving the Model")
        return (_restore, (network, _network_device(network), source.steps, self.dtype,
                           source.fold_batchnorm, source.cuda_graph, source.sample_input_shape,
                           str(self.device)))

    def state_dict(self):
        """The weights the Model is built from, by the names of the network it
        was converted from (its ``state_dict()``: parameters and buffers,
        before any batch norm folding, in the network's dtype)."""
        return self._network("state_dict").state_dict()

    def load_state_dict(self, state_dict, strict=True):
        """Rebuilds the Model with the weights of `state_dict` (as given by
        :meth:`state_dict`, or by the source network's ``state_dict()``):
        loaded into a copy of the network (the network given to convert is
        left unchanged), which is converted again with the same algorithms,
        dtype and device. With strict, missing or unexpected keys are an
        error, as are tensors whose shape differs from the network's (a
        RuntimeError naming them, from torch's load_state_dict); the Model
        is then unchanged. Returns torch's (missing_keys, unexpected_keys)."""
        if not hasattr(state_dict, "items"):
            raise TypeError(f"load_state_dict needs a mapping from names to tensors, not "
                            f"{type(state_dict).__name__}")
        source = self._source
        network = copy.deepcopy(source.network)
        result = network.load_state_dict(state_dict, strict=strict)
        other = _convert(network, source.sample_input_shape, self.dtype, source.fold_batchnorm,
                         source.cuda_graph, steps=source.steps, device=self.device)
        self.__dict__.update({k: v for k, v in other.__dict__.items()})
        return result

    def __repr__(self):
        device = "" if self.device.type == "cpu" else f", device='{self.device}'"
        lines = [f"Model(dtype={self.dtype}{device}, layers=["]
        lines += [f"  {layer!r}," for layer in self.layers]
        lines.append("])")
        return "\n".join(lines)


def _numpy():
    """numpy if it is installed (ai3 does not need it), else None."""
    try:
        import numpy
    except ImportError:
        return None
    return numpy


# --------------------------------------------------------------------------
# convert


def convert(module, algos=None, sample_input_shape=None, *, dtype=None, fold_batchnorm=True,
            cuda_graph=True):
    """Converts the torch network `module` into an ai3.Model.

    algos: None, or a mapping from operation (a name such as 'conv2d' or
        'add', or a torch module type such as nn.Conv2d) to a selector (see
        ai3.selectors); operations not given use 'default'. Instances are
        counted in execution order, function calls (torch.flatten, F.relu,
        x + y, ...) included; a callable selector receives the module, or
        for a function call an equivalent torch module where there is one
        (else None).
    sample_input_shape: the shape of an input; needed by two-argument
        selectors, and when given the network is checked against it at
        convert time.
    dtype: torch.float32, torch.float64 or torch.bfloat16 (or their
        names); by default the dtype of the network's parameters. The Model
        holds its own copies of the weights in that dtype. bfloat16 on the
        CPU needs AVX512_BF16 (else ai3.UnsupportedError): convolutions and
        linear layers sum in float32 and round once, the other operations
        compute in float32.
    fold_batchnorm: fold each nn.BatchNorm2d into the convolution that
        feeds only it (its eval-mode form: running statistics); False keeps
        it a batchnorm2d operation.
    cuda_graph: on a CUDA device, replay each input shape's run as a CUDA
        graph from its second call (the launch sequence captured once).

    The Model computes where the network's parameters are: a network on a
    CUDA device converts to a Model on that device (float16 is then a
    possible dtype too); ``Model.to`` moves it.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"convert needs an nn.Module, not {type(module).__name__}")
    selector_of = _check_algos(algos)
    shape = selectors.check_sample_input_shape(sample_input_shape)
    dtype = _model_dtype(module, dtype)
    return _convert(module, shape, dtype, fold_batchnorm, cuda_graph, selector_of=selector_of)


class _Source:
    """What a Model is built from, and rebuilt from when it is copied,
    loaded or given new weights: the network, the (operation, algorithm)
    of each translated step in order, and convert's options."""

    def __init__(self, network, steps, fold_batchnorm, cuda_graph, sample_input_shape):
        self.network = network
        self.steps = steps
        self.fold_batchnorm = fold_batchnorm
        self.cuda_graph = cuda_graph
        self.sample_input_shape = sample_input_shape


def _convert(module, shape, dtype, fold_batchnorm, cuda_graph, *, selector_of=None, steps=None,
             device=None):
    """convert with checked arguments; the algorithms chosen by the
    selectors of `selector_of`, or given per step by `steps` (as
    _Source.steps: a Model rebuilt)."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        try:
            traced = selectors.LeafTracer().trace(module)
        except Exception as e:
            raise UnsupportedError(f"convert needs a network torch.fx can trace; tracing "
                                   f"{type(module).__name__} failed: {type(e).__name__}: "
                                   f"{e}") from e
        translation = graph.Translation(module, traced, fold_batchnorm=fold_batchnorm)
        shapes = _input_shapes(module, traced, shape) if shape is not None else {}
    finally:
        for m, training in flags:
            m.training = training

    if steps is None:
        chosen = _choose(translation.steps, selector_of, shapes, shape)
    else:
        chosen = _chosen_as_before(translation.steps, steps)
    source = _Source(module, [(s.op, chosen.get(id(s))) for s in translation.steps],
                     fold_batchnorm, cuda_graph, shape)

    def build(device):
        return _build(translation, chosen, dtype, shapes, device, cuda_graph, build, source)

    model = build(device if device is not None else _model_device(module))
    if shape is not None:
        model.output_shapes(shape)  # the network's errors at convert time
    return model


def _choose(steps, selector_of, shapes, shape):
    """{id(step): algorithm} from the selectors."""
    chosen = {}
    for op in dict.fromkeys(_selected_as(s.op) for s in steps):
        if op is None:
            continue
        of_op = [s for s in steps if _selected_as(s.op) == op]
        instances = [selectors.Instance(s.name, _as_module(s), shapes.get(s.node.name))
                     for s in of_op]
        names = selectors.resolve(op, selector_of.get(op), instances,
                                  sample_given=shape is not None)
        chosen.update(zip((id(s) for s in of_op), names))
    for op in selector_of:
        if not any(_selected_as(s.op) == op for s in steps):
            selectors.resolve(op, selector_of[op], [], sample_given=shape is not None)
    return chosen


def _chosen_as_before(steps, before):
    """{id(step): algorithm} of a network converted again, from the
    (operation, algorithm) of each step when it was first converted."""
    ops = [s.op for s in steps]
    if ops != [op for op, _ in before]:
        raise UnsupportedError(f"the network no longer translates to the operations it was "
                               f"converted to ({len(before)} steps then, {len(ops)} now)")
    return {id(s): algorithm for s, (_, algorithm) in zip(steps, before)
            if algorithm is not None}


def _weight_versions(network):
    """The identity and version counter of every parameter and buffer of
    `network`: any in-place change (an optimizer step, load_state_dict) and
    any replaced tensor changes them."""
    return [(id(t), -1 if t.is_inference() else t._version)
            for t in (*network.parameters(), *network.buffers())]


def _network_device(network):
    for t in (*network.parameters(), *network.buffers()):
        return t.device
    return None


def _restore(network, network_device, steps, dtype, fold_batchnorm, cuda_graph,
             sample_input_shape, device):
    """A pickled, saved or deep-copied Model: its network converted again.
    It computes on the device it was saved on, unless loading moved the
    network (torch.load's map_location), then where the network now is."""
    device = torch.device(device)
    if _network_device(network) != network_device:
        device = _model_device(network)
    return _convert(network, sample_input_shape, dtype, fold_batchnorm, cuda_graph,
                    steps=steps, device=device)


def _check_algos(algos):
    if algos is None:
        return {}
    if not hasattr(algos, "items"):
        raise TypeError(f"algos must be a mapping from operation name (or type) to selector, "
                        f"not {type(algos).__name__}")
    by_op = {}
    for key, selector in algos.items():
        op = _op_name(key)
        if op in by_op:
            raise ValueError(f"algos gives two selectors for {op}")
        by_op[op] = selector
    return by_op


def _op_name(key):
    """The operation a key of algos names: a module type, or any operation
    of the C core by name ('add', 'cat', ...)."""
    if isinstance(key, str) and key.lower() not in selectors.OPERATIONS:
        try:
            _core.list_algorithms(key.lower())
            return key.lower()
        except ValueError:
            pass
    return selectors.op_name(key)


def _model_device(module):
    """Where the network's parameters (or buffers) are; the CPU if it has none."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.device.type == "cuda":
            return torch.device("cuda", t.device.index)
        return torch.device("cpu")
    return torch.device("cpu")


def _model_dtype(module, dtype):
    if dtype is not None:
        if not isinstance(dtype, (torch.dtype, str)) and _numpy() is not None:
            try:
                dtype = str(_numpy().dtype(dtype))  # numpy's float32, float64
            except TypeError:
                pass
        try:
            return _DTYPES[dtype]
        except (KeyError, TypeError):
            raise ValueError(f"dtype must be torch.float32, torch.float64, torch.bfloat16 "
                             f"(or on CUDA torch.float16), not {dtype!r}") from None
    for p in list(module.parameters()) + list(module.buffers()):
        if p.is_floating_point():
            if p.dtype not in _DTYPES:
                raise UnsupportedError(f"the network's parameters are {p.dtype}; ai3 computes "
                                       f"float32, float64 and bfloat16, and on CUDA float16 "
                                       f"(pass dtype=)")
            return p.dtype
    return torch.float32


def _as_module(step):
    """The torch module a callable selector sees for a step."""
    if step.module is not None:
        return step.module
    p = step.params
    if step.op == "flatten":
        return nn.Flatten(p["start_dim"], p["end_dim"])
    if step.op == "maxpool2d":
        return nn.MaxPool2d(p["kernel_size"], p["stride"], p["padding"], p["dilation"],
                            ceil_mode=p["ceil_mode"])
    if step.op == "avgpool2d":
        return nn.AvgPool2d(p["kernel_size"], p["stride"], p["padding"], p["ceil_mode"],
                            p["count_include_pad"], p["divisor_override"])
    if step.op == "adaptiveavgpool2d":
        return nn.AdaptiveAvgPool2d(p["output_size"])
    if step.op == "hardtanh":
        return nn.Hardtanh(p["min_val"], p["max_val"])
    if step.op == "gelu":
        return nn.GELU(p["approximate"])
    return None


def _own(t, dtype):
    """`t` in `dtype`, contiguous and detached (a copy only where needed: the
    C graph copies what it keeps)."""
    return None if t is None else t.detach().to(dtype=dtype).contiguous()


def _for_graph(t, device):
    """A weight the C graph on `device` can copy from: a host tensor or one
    on that device (the graph copies host tensors to its GPU itself)."""
    if t is None or t.device == device or t.device.type == "cpu":
        return t
    return t.to(device)


def _conv_params(m):
    return dict(stride=_pair(m.stride),
                padding=_ops.conv2d_padding(m.padding, m.kernel_size, m.dilation),
                dilation=_pair(m.dilation), groups=m.groups, padding_mode=m.padding_mode)


def _folded(conv, bn, dtype):
    """conv's weight and bias with the eval-mode batchnorm bn applied (the
    per-channel factors in float64; the weight scaled in `dtype`, one copy)."""
    scale = bn.running_var.detach().double().add(bn.eps).rsqrt()
    if bn.weight is not None:
        scale = scale * bn.weight.detach().double()
    bias = -bn.running_mean.detach().double() * scale
    if conv.bias is not None:
        bias = bias + conv.bias.detach().double() * scale
    if bn.bias is not None:
        bias = bias + bn.bias.detach().double()
    weight = conv.weight.detach().to(dtype) * scale.to(dtype).reshape(-1, 1, 1, 1)
    return weight.contiguous(), bias.to(dtype).contiguous()


def _build(translation, chosen, dtype, shapes, device, cuda_graph, rebuild, source):
    """The Model on `device`: a C graph built from the translation, with the
    network's weights as they are now."""
    g = _core.graph_create(str(dtype).replace("torch.", ""),
                           device.index if device.type == "cuda" else -1)
    if device.type == "cuda" and not cuda_graph:
        _core.graph_set_cuda_graphs(g, False)
    ids = {translation.input: _core.graph_input(g)}
    names = {translation.input: "input"}
    layers = []

    def value(v):
        if v not in ids:  # a parameter read with get_attr, first used here
            ids[v] = _core.graph_constant(g, _for_graph(_own(translation.constants[v], dtype),
                                                        device))
            names[v] = "constant"
        return ids[v]

    for step in translation.steps:
        algorithm = chosen.get(id(step))
        inputs = [value(v) for v in step.inputs]
        layer = Layer(step, algorithm, [names[v] for v in step.inputs])
        out = _add_step(g, step, algorithm, inputs, layer, dtype, shapes, value, device)
        outs = out if isinstance(out, tuple) else (out,)
        for v, c_id in zip(step.outputs, outs):
            ids[v] = c_id
            names[v] = step.name
        _core.graph_set_name(g, outs[0], step.name)
        if algorithm is not None:
            layer._node = (g, outs[0])
        layers.append(layer)
    _core.graph_set_outputs(g, [value(v) for v in translation.outputs])
    return Model(g, layers, dtype, translation.single, device, rebuild, source)


def _pool_params(p):
    kernel = _pair(p["kernel_size"])
    stride = _pair(p["stride"] if p["stride"] not in (None, [], ()) else p["kernel_size"])
    return (*kernel, *stride, *_pair(p["padding"]), *_pair(p.get("dilation", 1)),
            bool(p["ceil_mode"]), bool(p.get("count_include_pad", True)),
            p.get("divisor_override") or 0)


def _gelu_params(step):
    approximate = step.params["approximate"]
    if approximate not in ("none", "tanh"):
        raise UnsupportedError(f"{step.name}: gelu approximate={approximate!r}")
    return (approximate == "tanh",)


# The parameter tuple (see _core.plan) of each operation with parameters,
# from a translated step; operations not listed take none.
_PARAMS = {
    "maxpool2d": lambda step: _pool_params(step.params),
    "avgpool2d": lambda step: _pool_params(step.params),
    "adaptiveavgpool2d": lambda step: graph.adaptive_output_size(step.params["output_size"]),
    "flatten": lambda step: (step.params["start_dim"], step.params["end_dim"]),
    "batchnorm2d": lambda step: (float(step.params["eps"]),),
    "cat": lambda step: (step.params["dim"],),
    "hardtanh": lambda step: (float(step.params["min_val"]), float(step.params["max_val"])),
    "gelu": _gelu_params,
    "mean": lambda step: (tuple(step.params["dim"]), bool(step.params["keepdim"])),
    "permute": lambda step: (tuple(step.params["dims"]),),
    "layernorm": lambda step: (step.params["normalized_ndim"], float(step.params["eps"])),
    "softmax": lambda step: (step.params["dim"],),
}


def _weights(step, layer, dtype):
    """The weights of a step's node (the C graph copies them)."""
    m, p = step.module, step.params
    if step.op == "conv2d":
        layer.params = _conv_params(m)
        if p.get("batchnorm"):
            layer.folded_batchnorm, bn = p["batchnorm"]
            weight, bias = _folded(m, bn, dtype)
        else:
            weight, bias = _own(m.weight, dtype), _own(m.bias, dtype)
    elif step.op == "linear":
        weight, bias = _own(m.weight, dtype), _own(m.bias, dtype)
    elif step.op == "batchnorm2d":
        return tuple(_own(t, dtype) for t in (m.running_mean, m.running_var, m.weight, m.bias))
    elif step.op == "layernorm":
        return tuple(_own(p[k], dtype) for k in ("weight", "bias"))
    else:
        return ()
    layer.weight_shape, layer.has_bias = tuple(weight.shape), bias is not None
    return weight, bias


def _add_step(g, step, algorithm, inputs, layer, dtype, shapes, value, device):
    """Adds one step's node to the C graph; the new value id(s). value()
    maps the translation's value numbers to the graph's ids; the weights go
    to `device` first (the graph copies them there in any case)."""
    op, p, x = step.op, step.params, inputs[0] if inputs else None
    if op == "reshape":
        dims = [(value(d[0]), d[1]) if isinstance(d, tuple) else d for d in p["dims"]]
        return _core.graph_reshape(g, x, dims)
    if op == "chunk":
        return _core.graph_chunk(g, x, p["chunks"], p["dim"])
    if op == "transpose":
        return _core.graph_transpose(g, algorithm, x, p["dim0"], p["dim1"])
    weights = tuple(_for_graph(w, device) for w in _weights(step, layer, dtype))
    if op != "conv2d":
        return _core.graph_op(g, op, algorithm, inputs, weights,
                              _PARAMS.get(op, lambda step: ())(step))
    c = layer.params
    params = (*c["stride"], *c["padding"], *c["dilation"], c["groups"], c["padding_mode"])
    return _core.graph_op(g, op, algorithm, inputs, weights, params, shapes.get(step.node.name))


def _input_shapes(root, traced, shape):
    """{node name: shape of the node's first input} from one run on a sample."""
    gm = torch.fx.GraphModule(root, traced)
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
