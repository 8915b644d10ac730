"""swap_operation: replace operations of a torch network in place by modules
that compute them with ai3.

Each swapped class subclasses the torch class it replaces and is built from
the original module by sharing its parameters, buffers and hooks (the same
Parameter objects, so an optimizer built before the swap keeps working), plus
an ``algorithm`` attribute. Its forward calls the torch custom ops
``ai3::<op>`` (see ``ai3._ops``), which support autograd and torch.compile.
So after a swap ``isinstance(m, nn.Conv2d)`` still holds, state_dict keys are
unchanged, and the network can be trained, compiled, deep-copied, pickled
and saved.
"""

import torch
from torch import nn
from torch.nn.modules.utils import _pair

from . import _ops, selectors
from ._errors import UnsupportedError


class Swapped:
    """Mixin of the ai3 swapped modules (listed in SWAPPED)."""

    _ai3_op = None  # the operation's name, set by each class
    _torch_class = None  # what to_torch gives, when not the operation's class

    @classmethod
    def from_torch(cls, orig, algorithm="default"):
        """A module of this class sharing `orig`'s parameters, buffers and hooks,
        computed with `algorithm`."""
        base = selectors.OPERATIONS[cls._ai3_op]
        if not isinstance(orig, base):
            raise TypeError(f"{cls.__qualname__}.from_torch needs an nn.{base.__name__}, not "
                            f"{type(orig).__name__}")
        for name, p in orig.named_parameters(recurse=False):
            if isinstance(p, nn.parameter.UninitializedParameter):
                raise ValueError(f"parameter '{name}' of the lazy module is not initialized; "
                                 f"run the network once before swapping")
        new = cls.__new__(cls)
        new.__dict__.update(_shallow_state(orig, exclude=("algorithm",)))
        new.algorithm = algorithm
        new._check_supported()
        return new

    def to_torch(self):
        """The plain torch module computing the same thing, sharing parameters."""
        base = self._torch_class or selectors.OPERATIONS[self._ai3_op]
        orig = base.__new__(base)
        orig.__dict__.update(_shallow_state(self, exclude=("algorithm",)))
        return orig

    def _check_supported(self):
        pass

    def extra_repr(self):
        base = super().extra_repr()
        return f"{base}{', ' if base else ''}algorithm={self.algorithm!r}"


def _shallow_state(module, exclude):
    # Copy the containers (parameter, buffer, submodule and hook dicts) so the
    # two modules do not share structure, only their contents.
    return {k: (type(v)(v) if isinstance(v, (dict, set, list)) else v)
            for k, v in module.__dict__.items() if k not in exclude}


class Conv2d(Swapped, nn.Conv2d):
    """nn.Conv2d computed by ai3."""

    _ai3_op = "conv2d"

    def forward(self, input):
        padding = _ops.conv2d_padding(self.padding, self.kernel_size, self.dilation)
        # nn.Conv2d keeps stride and dilation as pairs; _pair only for values set later
        stride, dilation = self.stride, self.dilation
        if type(stride) is not tuple or type(dilation) is not tuple:
            stride, dilation = _pair(stride), _pair(dilation)
        return _ops.conv2d(input, self.weight, self.bias, stride, padding, dilation,
                           self.groups, self.padding_mode, self.algorithm)

    def algorithm_for(self, input_shape):
        """The algorithm this layer runs on inputs of `input_shape` (what
        'default' and 'guess' choose for that shape)."""
        padding = _ops.conv2d_padding(self.padding, self.kernel_size, self.dilation)
        return _ops.conv2d_algorithm_for(torch.empty(input_shape, dtype=self.weight.dtype,
                                                     device=self.weight.device),
                                         self.weight.detach(), _pair(self.stride), padding,
                                         _pair(self.dilation), self.groups, self.padding_mode,
                                         self.algorithm)


class Linear(Swapped, nn.Linear):
    """nn.Linear computed by ai3."""

    _ai3_op = "linear"

    def forward(self, input):
        return _ops.linear(input, self.weight, self.bias, self.algorithm)


class MaxPool2d(Swapped, nn.MaxPool2d):
    """nn.MaxPool2d computed by ai3 (without return_indices)."""

    _ai3_op = "maxpool2d"

    def _check_supported(self):
        if self.return_indices:
            raise UnsupportedError("ai3 maxpool2d does not return indices "
                                   "(MaxPool2d(return_indices=True)); select 'torch' for it")

    def forward(self, input):
        stride = self.stride if self.stride is not None else self.kernel_size
        return _ops.maxpool2d(input, _pair(self.kernel_size), _pair(stride), _pair(self.padding),
                              _pair(self.dilation), bool(self.ceil_mode), self.algorithm)


class AvgPool2d(Swapped, nn.AvgPool2d):
    """nn.AvgPool2d computed by ai3."""

    _ai3_op = "avgpool2d"

    def forward(self, input):
        stride = self.stride if self.stride is not None else self.kernel_size
        return _ops.avgpool2d(input, _pair(self.kernel_size), _pair(stride), _pair(self.padding),
                              bool(self.ceil_mode), bool(self.count_include_pad),
                              self.divisor_override, self.algorithm)


class AdaptiveAvgPool2d(Swapped, nn.AdaptiveAvgPool2d):
    """nn.AdaptiveAvgPool2d computed by ai3."""

    _ai3_op = "adaptiveavgpool2d"

    def forward(self, input):
        size = adaptive_output_size(self.output_size, input.shape)
        if size == (1, 1) and input.dim() > 4:
            # torch takes the mean over the last two dimensions of any input
            # of 3 or more dimensions when the output is 1×1: the leading
            # dimensions are folded into the batch here to do the same.
            out = _ops.adaptiveavgpool2d(input.reshape(-1, *input.shape[-3:]), size,
                                         self.algorithm)
            return out.reshape(*input.shape[:-2], 1, 1)
        return _ops.adaptiveavgpool2d(input, size, self.algorithm)


class ReLU(Swapped, nn.ReLU):
    """nn.ReLU computed by ai3. The result is always a new tensor, also for
    ReLU(inplace=True): the input is left unchanged."""

    _ai3_op = "relu"

    def forward(self, input):
        return _ops.relu(input, self.algorithm)


class Flatten(Swapped, nn.Flatten):
    """nn.Flatten computed by ai3."""

    _ai3_op = "flatten"

    def forward(self, input):
        return _ops.flatten(input, self.start_dim, self.end_dim, self.algorithm)


class BatchNorm2d(Swapped, nn.BatchNorm2d):
    """nn.BatchNorm2d computed by ai3 in inference form: normalised with the
    running statistics. While training (or with track_running_stats=False,
    where torch normalises with the batch's own statistics) it runs torch's
    batch norm, so the running statistics are updated exactly as torch does
    and the module trains as the original."""

    _ai3_op = "batchnorm2d"

    def forward(self, input):
        if self.training or self.running_mean is None or self.running_var is None:
            return nn.BatchNorm2d.forward(self, input)
        self._check_input_dim(input)  # 4-d, as nn.BatchNorm2d
        return _ops.batchnorm2d(input, self.running_mean, self.running_var, self.weight,
                                self.bias, self.eps, self.algorithm)


class Hardtanh(Swapped, nn.Hardtanh):
    """nn.Hardtanh (and nn.ReLU6) computed by ai3. The result is always a new
    tensor, also with inplace=True."""

    _ai3_op = "hardtanh"

    @classmethod
    def from_torch(cls, orig, algorithm="default"):
        if cls is Hardtanh and isinstance(orig, nn.ReLU6):
            return ReLU6.from_torch(orig, algorithm)
        return super().from_torch(orig, algorithm)

    def forward(self, input):
        return _ops.hardtanh(input, self.min_val, self.max_val, self.algorithm)


class ReLU6(Hardtanh, nn.ReLU6):
    """nn.ReLU6 computed by ai3 (as hardtanh(0, 6))."""

    _torch_class = nn.ReLU6


class Sigmoid(Swapped, nn.Sigmoid):
    """nn.Sigmoid computed by ai3."""

    _ai3_op = "sigmoid"

    def forward(self, input):
        return _ops.sigmoid(input, self.algorithm)


class Hardsigmoid(Swapped, nn.Hardsigmoid):
    """nn.Hardsigmoid computed by ai3 (always a new tensor)."""

    _ai3_op = "hardsigmoid"

    def forward(self, input):
        return _ops.hardsigmoid(input, self.algorithm)


class Hardswish(Swapped, nn.Hardswish):
    """nn.Hardswish computed by ai3 (always a new tensor)."""

    _ai3_op = "hardswish"

    def forward(self, input):
        return _ops.hardswish(input, self.algorithm)


class SiLU(Swapped, nn.SiLU):
    """nn.SiLU computed by ai3 (always a new tensor)."""

    _ai3_op = "silu"

    def forward(self, input):
        return _ops.silu(input, self.algorithm)


class GELU(Swapped, nn.GELU):
    """nn.GELU computed by ai3, exact or with approximate='tanh'."""

    _ai3_op = "gelu"

    def _check_supported(self):
        if self.approximate not in ("none", "tanh"):
            raise ValueError(f"GELU approximate must be 'none' or 'tanh', not "
                             f"{self.approximate!r}")

    def forward(self, input):
        return _ops.gelu(input, self.approximate, self.algorithm)


def adaptive_output_size(output_size, input_shape):
    """AdaptiveAvgPool2d's output_size with None entries (keep the input's
    size) resolved against `input_shape`."""
    out_h, out_w = _pair(output_size)
    return (int(input_shape[-2]) if out_h is None else out_h,
            int(input_shape[-1]) if out_w is None else out_w)


# The swapped class of each operation in selectors.OPERATIONS: the classes
# above that name an operation.
SWAPPED = {cls._ai3_op: cls for cls in Swapped.__subclasses__()}
if SWAPPED.keys() != selectors.OPERATIONS.keys():
    raise ImportError(f"ai3: no swapped class for {set(selectors.OPERATIONS) - set(SWAPPED)}")


def swap_operation(op_type, module, algos=None, sample_input_shape=None, *, swap_with=None):
    """Replaces, in place, every instance of an operation in `module` by one
    computed with the selected ai3 algorithm.

    op_type: a torch module type of ai3.OPERATIONS (nn.Conv2d, nn.Linear,
        nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.ReLU, nn.Flatten,
        nn.BatchNorm2d, nn.Hardtanh (which covers nn.ReLU6), nn.Sigmoid,
        nn.Hardsigmoid, nn.Hardswish, nn.SiLU, nn.GELU) or its name
        ('conv2d', ...). Instances of the torch class and of ai3's swapped classes are
        swapped (so a swapped network can be swapped again); a subclass with
        its own forward is left alone.
    algos: a selector (see ai3.selectors): None (every instance gets
        'default'), a name, a list of names in forward order, or a callable
        f(module) / f(module, input_shape). The name 'torch' leaves an
        instance to PyTorch: an original module stays as it is and a swapped
        one goes back to its torch class.
    sample_input_shape: the shape of an input of `module`; needed by
        two-argument selectors, and it fixes forward order.
    swap_with: builds the replacement instead of ai3's class: called as
        swap_with(orig_module, algorithm) and must return an nn.Module (a
        class whose __init__ takes (orig, algorithm) works).

    The root module itself cannot be replaced in place: if `module` is itself
    an instance of the operation this raises ValueError (use
    ai3.swap.Conv2d.from_torch(module, algorithm) and friends for that).
    Returns None.
    """
    op = selectors.op_name(op_type)
    if not isinstance(module, nn.Module):
        raise TypeError(f"swap_operation needs an nn.Module, not {type(module).__name__}")
    if swap_with is not None and not callable(swap_with):
        raise TypeError(f"swap_with must be a class or callable (orig_module, algorithm) -> "
                        f"nn.Module, not {type(swap_with).__name__}")
    shape = selectors.check_sample_input_shape(sample_input_shape)
    if selectors.computes(module, op):
        raise ValueError(f"the module passed is itself a {type(module).__name__}; "
                         f"swap_operation replaces submodules in place and cannot replace "
                         f"the root (use ai3.swap.{SWAPPED[op].__name__}.from_torch(module, "
                         f"algorithm) instead)")

    matches = {}
    for name, sub in module.named_modules():
        if selectors.computes(sub, op):
            matches[id(sub)] = (name, sub)
    instances = selectors.ordered_instances(module, matches, shape)
    names = selectors.resolve(op, algos, instances, sample_given=shape is not None,
                              allow_torch=True)

    replacements = {}
    for inst, algorithm in zip(instances, names):
        new = _replacement(op, inst, algorithm, swap_with)
        if new is not inst.module:
            replacements[id(inst.module)] = new
    if not replacements:
        return
    sites = [(parent, key, replacements[id(child)])
             for _, parent in module.named_modules(remove_duplicate=False)
             for key, child in parent._modules.items()
             if child is not None and id(child) in replacements]
    for parent, key, new in sites:
        parent._modules[key] = new


def _replacement(op, inst, algorithm, swap_with):
    orig = inst.module
    if algorithm == selectors.TORCH:
        return orig.to_torch() if isinstance(orig, Swapped) else orig
    if swap_with is None:
        return SWAPPED[op].from_torch(orig, algorithm)
    new = swap_with(orig, algorithm)
    if not isinstance(new, nn.Module):
        raise TypeError(f"swap_with returned {type(new).__name__} for {op} '{inst.name}'; it "
                        f"must return an nn.Module")
    return new


def swap_conv2d(module, algos=None, sample_input_shape=None, *, swap_with=None):
    """swap_operation(nn.Conv2d, ...)."""
    return swap_operation(nn.Conv2d, module, algos, sample_input_shape, swap_with=swap_with)
