"""Algorithmic selectors: which algorithm each operation instance gets.

A selector is one of

* ``None`` -- every instance gets ``'default'``;
* a ``str`` -- every instance gets that name;
* a sequence of ``str`` -- the i-th instance met in forward order gets the
  i-th name (the lengths must match);
* a callable ``f(module)`` or ``f(module, input_shape)`` returning a name.
  Whether the input shape is passed is read from the signature: a callable
  with two required positional parameters needs ``sample_input_shape``; one
  whose second parameter has a default gets the shape only when a sample
  shape was given. ``input_shape`` is the shape of that operation's own input
  (a tuple of ints), found by running the network once on a sample of shape
  ``sample_input_shape`` (with fake tensors when PyTorch can, else with a
  zero tensor, without gradients and in eval mode; the module's training
  flags are restored afterwards).

Forward order is the order in which the instances are first called: with a
sample shape it is observed while propagating shapes; without one it is the
order of the ``call_module`` nodes of a ``torch.fx`` trace, or, when the
network cannot be traced, registration order. Instances never called come
last, in registration order. A module registered under several names counts
once.
"""

import inspect
from collections.abc import Sequence

import torch
import torch.fx
from torch import nn

from . import _core

# The operations swap_operation replaces, by name, and the torch module of
# each: those of the C core's operation table that stand for a torch.nn
# module (nn.ReLU6 is an nn.Hardtanh(0, 6), so swapped as one).
OPERATIONS = {name: getattr(nn, module) for name, _, _, _, module in _core.OPERATIONS if module}

# Selects the instance computed by PyTorch (swap_operation only).
TORCH = "torch"
DEFAULT = "default"


def op_name(op_type):
    """The ai3 name of an operation given as a torch module type or a name."""
    if isinstance(op_type, str):
        name = op_type.lower()
        if name in OPERATIONS:
            return name
        raise ValueError(f"unknown operation {op_type!r}; the operations are "
                         f"{', '.join(OPERATIONS)}")
    if isinstance(op_type, type):
        for name, cls in OPERATIONS.items():
            if issubclass(op_type, cls):
                return name
        raise ValueError(f"unsupported operation type {op_type.__qualname__}; the supported "
                         f"types are {', '.join('nn.' + c.__name__ for c in OPERATIONS.values())}")
    raise TypeError(f"an operation is a torch module type (e.g. nn.Conv2d) or its name "
                    f"(e.g. 'conv2d'), not {type(op_type).__name__}")


def computes(module, op):
    """Whether `module` is an instance of operation `op` that ai3 can compute.

    That is an instance of the torch class or of an ai3 swapped class. A
    subclass with its own forward is not: it may compute something else.
    """
    cls = OPERATIONS[op]
    if not isinstance(module, cls):
        return False
    return type(module).forward is cls.forward or getattr(type(module), "_ai3_op", None) == op


def algorithms(op, *, allow_torch=False):
    """Every name a selector may give for `op`, as things stand now: those
    of the CPU and, where torch sees a GPU, those of CUDA devices (a swapped
    module may move between them; a name that its device lacks fails when
    it runs there, saying so)."""
    names = [DEFAULT] + [n for n in _core.list_algorithms(op) if n != DEFAULT]
    if torch.cuda.is_available():
        names += [n for n in _core.list_algorithms(op, "cuda") if n not in names]
    if allow_torch:
        names.append(TORCH)
    return names


def check_algorithm(op, name, where, *, allow_torch=False):
    """Returns `name` if it is an algorithm of `op`, else raises ValueError."""
    if not isinstance(name, str):
        raise TypeError(f"the selector gave {name!r} ({type(name).__name__}) for {where}; "
                        f"an algorithm is a str")
    valid = algorithms(op, allow_torch=allow_torch)
    if name in valid:
        return name
    if name == "custom":
        raise ValueError(f"no algorithm named 'custom' is registered for {op} (asked for "
                         f"{where}); register one with ai3.load_algorithms(path). Valid "
                         f"algorithms: {', '.join(valid)}")
    if name == TORCH:
        raise ValueError(f"'torch' (leave to PyTorch) is only meaningful for swap_operation, "
                         f"not convert ({where}); valid algorithms: {', '.join(valid)}")
    raise ValueError(f"unknown algorithm {name!r} for {op} ({where}); valid algorithms: "
                     f"{', '.join(valid)}")


def check_sample_input_shape(shape):
    """`shape` as a tuple of positive ints, or None; else ValueError."""
    if shape is None:
        return None
    if isinstance(shape, torch.Tensor) or isinstance(shape, (str, bytes)) or \
            not isinstance(shape, Sequence):
        raise ValueError(f"sample_input_shape must be a sequence of positive ints such as "
                         f"(1, 3, 224, 224), not {shape!r}")
    dims = tuple(shape)
    if not dims or any(isinstance(d, bool) or not isinstance(d, int) or d <= 0 for d in dims):
        raise ValueError(f"sample_input_shape must be a non-empty sequence of positive ints, "
                         f"not {shape!r}")
    return dims


def _selector_arity(selector):
    """(required, accepts_two) positional parameters of a selector callable."""
    try:
        params = list(inspect.signature(selector).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature
        return 1, False
    positional = [p for p in params
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(1 for p in positional if p.default is p.empty)
    star = any(p.kind == p.VAR_POSITIONAL for p in params)
    return required, star or len(positional) >= 2


class Instance:
    """One operation instance to select an algorithm for."""

    __slots__ = ("name", "module", "input_shape")

    def __init__(self, name, module, input_shape=None):
        self.name = name              # qualified name, used in messages
        self.module = module          # what a callable selector receives
        self.input_shape = input_shape


def resolve(op, selector, instances, *, sample_given, allow_torch=False):
    """The algorithm name of each of `instances` (in forward order)."""
    n = len(instances)
    if selector is None:
        names = [DEFAULT] * n
    elif isinstance(selector, str):
        names = [selector] * n
    elif callable(selector):
        required, two = _selector_arity(selector)
        if required > 2:
            raise TypeError(f"a selector callable takes (module) or (module, input_shape); "
                            f"{getattr(selector, '__name__', selector)!r} requires {required} "
                            f"arguments")
        if required == 2 and not sample_given:
            raise ValueError(f"the {op} selector {getattr(selector, '__name__', selector)!r} "
                             f"takes (module, input_shape), which needs sample_input_shape")
        names = []
        for inst in instances:
            if two and sample_given:
                names.append(selector(inst.module, inst.input_shape))
            else:
                names.append(selector(inst.module))
    elif isinstance(selector, Sequence) and not isinstance(selector, (bytes, bytearray)):
        names = list(selector)
        if len(names) != n:
            raise ValueError(f"the {op} selector lists {len(names)} algorithm"
                             f"{'s' if len(names) != 1 else ''} but the module has {n} {op} "
                             f"instance{'s' if n != 1 else ''}")
    else:
        raise TypeError(f"a selector is a str, a sequence of str or a callable, not "
                        f"{type(selector).__name__}")
    return [check_algorithm(op, name, f"{op} '{inst.name}'", allow_torch=allow_torch)
            for name, inst in zip(names, instances)]


class LeafTracer(torch.fx.Tracer):
    """A torch.fx tracer that keeps every ai3 operation module (swapped ones and
    subclasses included) as one call_module node."""

    def is_leaf_module(self, m, module_qualified_name):
        if isinstance(m, tuple(OPERATIONS.values())):
            return True
        return super().is_leaf_module(m, module_qualified_name)


def sample_dtype_device(module):
    """The dtype and device of a sample input for `module`: those of its first
    floating-point parameter or buffer."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return t.dtype, t.device
    return torch.get_default_dtype(), torch.device("cpu")


def run_sample(module, fn, shape):
    """Calls fn(sample) with a sample of `shape`, first with fake tensors and,
    if that fails, with a real zero tensor, in eval mode and without
    gradients. Raises ValueError if the network cannot take that shape.

    `fn` is called again after a failed fake run, so it must reset whatever
    it records."""
    dtype, device = sample_dtype_device(module)
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        try:
            from torch._subclasses.fake_tensor import FakeTensorMode
            with FakeTensorMode(allow_non_fake_inputs=True), torch.no_grad():
                fn(torch.empty(shape, dtype=dtype, device=device))
            return
        except Exception:
            pass
        try:
            with torch.no_grad():
                fn(torch.zeros(shape, dtype=dtype, device=device))
        except Exception as e:
            raise ValueError(f"the network cannot run on an input of sample_input_shape "
                             f"{shape}: {type(e).__name__}: {e}") from e
    finally:
        for m, training in flags:
            m.training = training


def ordered_instances(root, matches, shape):
    """Instances of the modules in `matches` ({id: (qualified name, module)}),
    in forward order, with their input shapes when `shape` is given."""
    order = []        # ids in order of first call
    shapes = {}
    if shape is not None:
        def record(mod, args):
            key = id(mod)
            if key not in shapes:
                order.append(key)
                first = args[0] if args else None
                shapes[key] = tuple(first.shape) if isinstance(first, torch.Tensor) else None

        def call(sample):
            order.clear()
            shapes.clear()
            root(sample)

        handles = [mod.register_forward_pre_hook(record) for _, mod in matches.values()]
        try:
            run_sample(root, call, shape)
        finally:
            for h in handles:
                h.remove()
    else:
        try:
            graph = LeafTracer().trace(root)
            for node in graph.nodes:
                if node.op == "call_module":
                    key = id(root.get_submodule(node.target))
                    if key in matches and key not in order:
                        order.append(key)
        except Exception:
            order.clear()  # untraceable: registration order below
    seen = set(order)
    order += [key for key in matches if key not in seen]
    return [Instance(matches[key][0], matches[key][1], shapes.get(key)) for key in order]
