"""ai3's operations for torch tensors: the functions at the bottom
(:func:`conv2d`, :func:`linear`, ...) are what swapped modules call.

Each computes through a plan of the C core (``_core.plan``: the operation,
its algorithm, parameters and weights, made once and kept) and one call,
``_core.run(plan, *inputs)``, which checks the inputs, allocates the output
(``Tensor.new_empty``) and computes it with the GIL released.

A plain eager call (no autograd to record, no tracing, no torch dispatch or
function mode) goes straight to ``_core.run``; an eager call that autograd
records goes through a ``torch.autograd.Function`` around the same call
(torch's own gradient formulas). Anything else goes through the torch custom
op ``ai3::<op>``, which has the same gradient formulas and supports
``torch.compile``. The custom ops' fake
implementations compute the output shape in Python with plain arithmetic (it
must work on the symbolic sizes ``torch.compile`` traces with); the tests
check that these shape functions agree with the C core's.
"""

from __future__ import annotations

import functools
import weakref
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from . import _core
from ._errors import UnsupportedError

__all__ = [
    "conv2d",
    "conv2d_padding",
    "linear",
    "maxpool2d",
    "avgpool2d",
    "adaptiveavgpool2d",
    "relu",
    "flatten",
]

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")

# ---------------------------------------------------------------------------
# Shared checks
# ---------------------------------------------------------------------------


_HALF = (torch.float16, torch.bfloat16)


def _check_tensor(op: str, what: str, t: Tensor, like: Optional[Tensor] = None) -> None:
    """dtype float32/float64/bfloat16 (float16 too on CUDA; bfloat16 on the
    CPU needs AVX512_BF16, which the C core checks), a device ai3 computes
    on, and (given `like`) the same dtype and device as `like`."""
    cuda = t.device.type == "cuda"
    if t.dtype not in (torch.float32, torch.float64, torch.bfloat16) and \
            not (cuda and t.dtype == torch.float16):
        raise TypeError(
            f"ai3 {op}: {what} has dtype {t.dtype}; ai3 computes in torch.float32, "
            "torch.float64 and torch.bfloat16 (and torch.float16 on CUDA devices)"
        )
    if like is not None:
        if t.dtype != like.dtype:
            raise TypeError(f"ai3 {op}: {what} has dtype {t.dtype} but input has dtype {like.dtype}")
        if t.device != like.device:
            raise ValueError(f"ai3 {op}: {what} is on {t.device} but input is on {like.device}")
    # "meta" is accepted so that shapes can be propagated without data.
    if t.device.type not in ("cpu", "meta", "cuda"):
        raise UnsupportedError(
            f"ai3 {op}: {what} is on {t.device}; ai3 computes on the CPU and on CUDA devices"
        )
    if cuda:
        available, why = cuda_backend()
        if not available:
            raise UnsupportedError(f"ai3 {op}: {what} is on {t.device}, but {why}")


_cuda_backend = None


def cuda_backend() -> tuple:
    """(True, what it computes with) when ai3's CUDA backend loads in this
    process, else (False, why not). The first call loads it (and with it the
    cuDNN and cuBLAS that torch has loaded)."""
    global _cuda_backend
    if _cuda_backend is None:
        _cuda_backend = _core.cuda_backend()
    return _cuda_backend


def _check_algorithm(op: str, algorithm: str, device: str = "cpu") -> None:
    if algorithm == "default":
        return
    known = _core.list_algorithms(op, "cuda" if device == "cuda" else "cpu")
    if algorithm not in known:
        raise ValueError(
            f"ai3 {op}: unknown algorithm {algorithm!r}"
            + (" on CUDA devices" if device == "cuda" else "") + "; known: "
            + ", ".join(("default",) + tuple(known))
        )


def _autocast(x: Tensor, *tensors):
    """x and tensors in torch.autocast's dtype when it is on for x's CUDA
    device, as torch's own conv2d and linear compute; else unchanged."""
    if x.is_cuda and torch.is_autocast_enabled("cuda"):
        dtype = torch.get_autocast_dtype("cuda")
        return tuple(t if t is None or t.dtype == dtype else t.to(dtype) for t in (x, *tensors))
    return (x, *tensors)


def _check_ndim(op: str, x: Tensor, allowed: Sequence[int], layout: str) -> None:
    if x.dim() not in allowed:
        raise ValueError(f"ai3 {op}: input must be {layout}, got shape {tuple(x.shape)}")


def _check_positive(op: str, what: str, values: Sequence[int], minimum: int = 1) -> None:
    for v in values:
        if v < minimum:
            raise ValueError(f"ai3 {op}: {what} must be at least {minimum}, got {tuple(values)}")


def _check_pair(op: str, what: str, values: Sequence[int], size: int = 2) -> None:
    if len(values) != size:
        raise ValueError(f"ai3 {op}: {what} needs {size} values, got {tuple(values)}")


def _pool_out_size(size, kernel: int, stride: int, pad: int, dilation: int, ceil_mode: bool):
    """PyTorch's pooling output size along one axis."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    # In ceil mode the last window must start inside the input or left padding.
    if ceil_mode and (out - 1) * stride >= size + pad:
        out = out - 1
    return out


def _empty_output(x: Tensor, shape) -> Tensor:
    return torch.empty(shape, dtype=x.dtype, device=x.device)


# How a call runs (see _path).
_CUSTOM_OP, _DIRECT, _AUTOGRAD = 0, 1, 2


def _path(*tensors) -> int:
    """How a call on `tensors` (None entries allowed) runs: _DIRECT (straight
    to the C core) for plain tensors, not meta, with nothing for autograd to
    record; _AUTOGRAD (a torch.autograd.Function around the same call) when
    autograd records; _CUSTOM_OP (the torch custom op) under torch.compile,
    a torch dispatch or function mode, a functorch transform, or for tensor
    subclasses."""
    if torch.compiler.is_compiling() or torch._C._len_torch_dispatch_stack() or \
            torch._C._is_torch_function_mode_enabled() or \
            torch._C._are_functorch_transforms_active():
        return _CUSTOM_OP
    grad = torch.is_grad_enabled()
    path = _DIRECT
    for t in tensors:
        if t is None:
            continue
        if type(t) not in _PLAIN or t.is_meta:
            return _CUSTOM_OP
        if grad and t.requires_grad:
            path = _AUTOGRAD
    return path


# The implementation of each custom op (by custom op), and the
# autograd.Function that runs it with the op's gradient formulas in eager
# mode (by name; cheaper to call than the custom op, which goes through
# torch's dispatcher).
_IMPLS: dict = {}
_FUNCTIONS: dict = {}


def _custom_op(name: str):
    """torch.library.custom_op("ai3::<name>") that also records the function."""
    def define(fn):
        custom = torch.library.custom_op(f"ai3::{name}", fn, mutates_args=())
        _IMPLS[custom] = (name, fn)
        return custom
    return define


def _register_autograd(custom, backward, setup) -> None:
    custom.register_autograd(backward, setup_context=setup)
    name, fn = _IMPLS[custom]

    # forward(ctx, ...) rather than a separate setup_context: apply() then
    # skips binding the arguments to the signature, which costs more than
    # the whole call.
    def forward(ctx, *args):
        output = fn(*args)
        setup(ctx, args, output)
        return output

    _FUNCTIONS[name] = type(f"{name}_function", (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})


def _through_torch(path: int, op: str, *args):
    """ai3::<op>(*args) as _path chose: its autograd.Function, else the
    custom op."""
    if path == _AUTOGRAD:
        return _FUNCTIONS[op].apply(*args)
    return getattr(torch.ops.ai3, op)(*args)


# Tensor types the C core takes as they are (subclasses such as FakeTensor go
# through the custom ops).
_PLAIN = (Tensor, torch.nn.Parameter)


# ---------------------------------------------------------------------------
# Plans: weights prepared once (re-laid out, packed, transformed) and reused
# ---------------------------------------------------------------------------

# Plans of operations with weights, by the first weight given:
# id(weight) -> (weak reference to it, version key, {config: plan}); plans
# live as long as their weight. The version key holds every weight's version
# counter, which every in-place change (an optimizer step, load_state_dict)
# increments, so changed weights get new plans on their next use. (A
# WeakKeyDictionary would compare tensors with ==, which is elementwise.)
_plans: dict = {}
# Plans of operations without weights: (op, algorithm, params) -> plan.
_weightless: dict = {}


def _forget(ref) -> None:
    for wid, entry in list(_plans.items()):
        if entry[0] is ref:
            del _plans[wid]


def clear_plans() -> None:
    """Forgets every kept plan. Needed only after changing weights in a way
    their version counter does not see (through ``.data``, or in
    ``torch.inference_mode``); optimizer steps, ``load_state_dict`` and other
    in-place changes are seen and re-plan by themselves."""
    _plans.clear()
    _weightless.clear()


def _keep_plan(*weights) -> bool:
    """Whether a plan may be kept for these weights: not while they are being
    trained (they change every step, and tools such as gradcheck perturb
    them through .data, which no version counter sees)."""
    return not (torch.is_grad_enabled() and
                any(t is not None and t.requires_grad for t in weights))


def _keep_norm_plan(*tensors) -> bool:
    """Whether a batchnorm2d or layernorm plan may be kept: not for trainable
    statistics or affine parameters (tools such as gradcheck change them
    through .data, which no version counter sees; their plans are cheap)."""
    return not any(t is not None and t.requires_grad for t in tensors)


def _plan(op: str, algorithm: str, params: tuple, weights: tuple = (), keep: bool = True,
          hint=None):
    """The plan computing `op` with these parameters and weights: a kept one,
    or a new one (kept if `keep`). `hint` is the expected input (a tensor,
    only its shape is read, and only when a plan is made)."""
    present = [t for t in weights if t is not None]
    if not present:
        key = (op, algorithm, params)
        plan = _weightless.get(key)
        if plan is None:
            plan = _core.plan(op, algorithm, (), params)
            if keep:
                _weightless[key] = plan
        return plan

    anchor = present[0]
    tf32 = False
    if anchor.is_cuda:
        # A CUDA plan reads its weights in place: training does not make it
        # stale, so it is kept by the weights' identity and memory (and by
        # the TF32 flag torch has now), not their version. A weight that is
        # not contiguous would be read through a copy: never kept.
        keep = all(t.is_contiguous() for t in present)
        tf32 = anchor.dtype == torch.float32 and _allow_tf32(op)
        version = tuple((id(t), t.data_ptr(), t.dtype) if t is not None else None
                        for t in weights)
    elif not keep or any(t.is_inference() for t in present):
        return _new_plan(op, algorithm, params, weights, hint)  # (no version counter)
    else:
        version = tuple((id(t), t._version, t.data_ptr(), t.dtype) if t is not None else None
                        for t in weights)
    if not keep:
        return _new_plan(op, algorithm, params, weights, hint, tf32)
    entry = _plans.get(id(anchor))
    if entry is None or entry[0]() is not anchor:
        entry = _plans[id(anchor)] = (weakref.ref(anchor, _forget), version, {})
    elif entry[1] != version:
        entry = _plans[id(anchor)] = (entry[0], version, {})
    config = (op, algorithm, params, tf32)
    plan = entry[2].get(config)
    if plan is None:
        plan = entry[2][config] = _new_plan(op, algorithm, params, weights, hint, tf32)
    return plan


def _allow_tf32(op: str) -> bool:
    """torch's flag for float32 on TF32 tensor cores: cuDNN's for conv2d,
    cuBLAS's for linear."""
    if op == "conv2d":
        return torch._C._get_cudnn_allow_tf32()
    return op == "linear" and torch._C._get_cublas_allow_tf32()


def _new_plan(op, algorithm, params, weights, hint, allow_tf32=False):
    return _core.plan(op, algorithm, tuple(None if t is None else t.detach().contiguous()
                                           for t in weights), params,
                      None if hint is None else tuple(hint.shape), allow_tf32)


# ---------------------------------------------------------------------------
# conv2d
# ---------------------------------------------------------------------------


def _conv2d_shape(x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm):
    op = "conv2d"
    _check_tensor(op, "input", x)
    _check_tensor(op, "weight", weight, x)
    if bias is not None:
        _check_tensor(op, "bias", bias, x)
    _check_ndim(op, x, (3, 4), "(N, C, H, W) or (C, H, W)")
    if weight.dim() != 4:
        raise ValueError(
            f"ai3 conv2d: weight must be (C_out, C_in / groups, KH, KW), got shape {tuple(weight.shape)}"
        )
    _check_pair(op, "stride", stride)
    _check_pair(op, "padding (top, bottom, left, right)", padding, 4)
    _check_pair(op, "dilation", dilation)
    _check_positive(op, "stride", stride)
    _check_positive(op, "padding", padding, 0)
    _check_positive(op, "dilation", dilation)
    if groups < 1:
        raise ValueError(f"ai3 conv2d: groups must be at least 1, got {groups}")
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"ai3 conv2d: padding_mode must be one of {', '.join(PADDING_MODES)}, not {padding_mode!r}"
        )
    c_in, h, w = x.shape[-3], x.shape[-2], x.shape[-1]
    c_out, c_in_g, kh, kw = weight.shape
    if c_in != c_in_g * groups:
        raise ValueError(
            f"ai3 conv2d: input has {c_in} channels but weight {tuple(weight.shape)} with "
            f"groups={groups} expects {c_in_g * groups}"
        )
    if c_out % groups != 0:
        raise ValueError(f"ai3 conv2d: {c_out} output channels are not divisible by groups={groups}")
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != c_out):
        raise ValueError(f"ai3 conv2d: bias must have shape ({c_out},), got {tuple(bias.shape)}")
    top, bottom, left, right = padding
    if h == 0 or w == 0:
        raise ValueError(f"ai3 conv2d: the input planes are empty ({h} x {w}); only the batch "
                         f"or the channels may be empty")
    if padding_mode == "reflect" and (max(top, bottom) >= h or max(left, right) >= w):
        raise ValueError(
            f"ai3 conv2d: reflect padding {tuple(padding)} must be smaller than the input size {(h, w)}"
        )
    if padding_mode == "circular" and (max(top, bottom) > h or max(left, right) > w):
        raise ValueError(
            f"ai3 conv2d: circular padding {tuple(padding)} must not exceed the input size {(h, w)}"
        )
    ekh, ekw = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    hp, wp = h + top + bottom, w + left + right
    if hp < ekh or wp < ekw:
        raise ValueError(
            f"ai3 conv2d: input of size {(h, w)} padded to {(hp, wp)} is smaller than the "
            f"(dilated) kernel {(ekh, ekw)}"
        )
    _check_algorithm(op, algorithm, x.device.type)
    oh = (hp - ekh) // stride[0] + 1
    ow = (wp - ekw) // stride[1] + 1
    return (*x.shape[:-3], c_out, oh, ow)


@_custom_op("conv2d")
def _conv2d_op(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    groups: int,
    padding_mode: str,
    algorithm: str,
    keep_plan: bool,
) -> Tensor:
    return _conv2d_run(x, weight, bias, stride, padding, dilation, groups, padding_mode,
                       algorithm, keep_plan)


def _conv2d_run(x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm,
                keep_plan):
    params = (*stride, *padding, *dilation, groups, padding_mode)
    if len(params) != 10:  # the Python checks say which parameter is wrong
        _conv2d_shape(x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)
    plan = _plan("conv2d", algorithm, params, (weight, bias), keep_plan, x)
    return _core.run(plan, x)


@_conv2d_op.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm, keep_plan):
    shape = _conv2d_shape(x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)
    return _empty_output(x, shape)


def _unpad_grad(grad_padded: Tensor, x: Tensor, padding, padding_mode: str) -> Tensor:
    """The gradient with respect to x of F.pad(x, padding, padding_mode), given
    the gradient with respect to the padded tensor."""
    top, bottom, left, right = padding
    h, w = x.shape[-2], x.shape[-1]
    if padding_mode == "reflect":
        return torch.ops.aten.reflection_pad2d_backward(grad_padded, x, [left, right, top, bottom])
    if padding_mode == "replicate":
        return torch.ops.aten.replication_pad2d_backward(grad_padded, x, [left, right, top, bottom])
    g = grad_padded
    if padding_mode == "circular":
        # Padded row i is row (i - top) mod h: fold the borders back onto the rows
        # they copy, first along H, then along W.
        core = g[..., top : top + h, :].clone()
        core[..., h - top : h, :] += g[..., :top, :]
        core[..., :bottom, :] += g[..., top + h :, :]
        g = core
        core = g[..., :, left : left + w].clone()
        core[..., :, w - left : w] += g[..., :, :left]
        core[..., :, :right] += g[..., :, left + w :]
        return core
    return g[..., top : top + h, left : left + w]


def _conv2d_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, padding_mode, _, _ = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None
    ctx.params = (stride, padding, dilation, groups, padding_mode)


def _conv2d_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    stride, padding, dilation, groups, padding_mode = ctx.params
    unbatched = x.dim() == 3
    if unbatched:
        x, grad = x.unsqueeze(0), grad.unsqueeze(0)
    top, bottom, left, right = padding
    mode = "constant" if padding_mode == "zeros" else padding_mode
    x_padded = torch.nn.functional.pad(x, (left, right, top, bottom), mode=mode)
    mask = [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]]
    grad_x_padded, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
        grad, x_padded, weight, [weight.shape[0]] if ctx.has_bias else None,
        stride, [0, 0], dilation, False, [0, 0], groups, mask,
    )
    grad_x = None
    if mask[0]:
        grad_x = _unpad_grad(grad_x_padded, x, padding, padding_mode)
        if unbatched:
            grad_x = grad_x.squeeze(0)
    return (grad_x, grad_weight, grad_bias if mask[2] else None) + (None,) * 7


_register_autograd(_conv2d_op, _conv2d_backward, _conv2d_setup)

# ---------------------------------------------------------------------------
# linear
# ---------------------------------------------------------------------------


def _linear_shape(x, weight, bias, algorithm):
    op = "linear"
    _check_tensor(op, "input", x)
    _check_tensor(op, "weight", weight, x)
    if bias is not None:
        _check_tensor(op, "bias", bias, x)
    _check_ndim(op, x, range(1, 9), "(..., in_features) with 1 to 8 dimensions")
    if weight.dim() != 2:
        raise ValueError(
            f"ai3 linear: weight must be (out_features, in_features), got shape {tuple(weight.shape)}"
        )
    out_features, in_features = weight.shape
    if x.shape[-1] != in_features:
        raise ValueError(
            f"ai3 linear: input has {x.shape[-1]} features but weight {tuple(weight.shape)} "
            f"expects {in_features}"
        )
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != out_features):
        raise ValueError(f"ai3 linear: bias must have shape ({out_features},), got {tuple(bias.shape)}")
    _check_algorithm(op, algorithm, x.device.type)
    return (*x.shape[:-1], out_features)


@_custom_op("linear")
def _linear_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], algorithm: str,
               keep_plan: bool) -> Tensor:
    return _core.run(_plan("linear", algorithm, (), (weight, bias), keep_plan), x)


@_linear_op.register_fake
def _(x, weight, bias, algorithm, keep_plan):
    return _empty_output(x, _linear_shape(x, weight, bias, algorithm))


def _linear_setup(ctx, inputs, output):
    x, weight, bias, _, _ = inputs
    ctx.save_for_backward(x, weight)
    ctx.has_bias = bias is not None


def _linear_backward(ctx, grad):
    x, weight = ctx.saved_tensors
    grad_x = grad_weight = grad_bias = None
    grad_rows = grad.reshape(-1, weight.shape[0])
    if ctx.needs_input_grad[0]:
        grad_x = grad @ weight
    if ctx.needs_input_grad[1]:
        grad_weight = grad_rows.t() @ x.reshape(-1, weight.shape[1])
    if ctx.has_bias and ctx.needs_input_grad[2]:
        grad_bias = grad_rows.sum(0)
    return grad_x, grad_weight, grad_bias, None, None


_register_autograd(_linear_op, _linear_backward, _linear_setup)

# ---------------------------------------------------------------------------
# maxpool2d and avgpool2d
# ---------------------------------------------------------------------------


def _pool_shape(op, x, kernel_size, stride, padding, dilation, ceil_mode, algorithm):
    _check_tensor(op, "input", x)
    _check_ndim(op, x, (3, 4), "(N, C, H, W) or (C, H, W)")
    for what, values in (("kernel_size", kernel_size), ("stride", stride), ("padding", padding),
                         ("dilation", dilation)):
        _check_pair(op, what, values)
    _check_positive(op, "kernel_size", kernel_size)
    _check_positive(op, "stride", stride)
    _check_positive(op, "padding", padding, 0)
    _check_positive(op, "dilation", dilation)
    if padding[0] > kernel_size[0] // 2 or padding[1] > kernel_size[1] // 2:
        raise ValueError(
            f"ai3 {op}: padding {tuple(padding)} must be at most half the kernel size "
            f"{tuple(kernel_size)}"
        )
    if any(size == 0 for size in x.shape[x.dim() - 3:]):
        raise ValueError(f"ai3 {op}: input of shape {tuple(x.shape)} has an empty dimension; "
                         f"only the batch may be empty")
    h, w = x.shape[-2], x.shape[-1]
    oh = _pool_out_size(h, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = _pool_out_size(w, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"ai3 {op}: input of size {(h, w)} with padding {tuple(padding)} is smaller than "
            f"the (dilated) kernel {tuple(kernel_size)}; the output would be {(oh, ow)}"
        )
    _check_algorithm(op, algorithm, x.device.type)
    return (*x.shape[:-2], oh, ow)


def _maxpool2d_shape(x, kernel_size, stride, padding, dilation, ceil_mode, algorithm):
    return _pool_shape("maxpool2d", x, kernel_size, stride, padding, dilation, ceil_mode, algorithm)


@_custom_op("maxpool2d")
def _maxpool2d_op(
    x: Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    ceil_mode: bool,
    algorithm: str,
) -> Tensor:
    return _core.run(_plan("maxpool2d", algorithm, _maxpool2d_params(
        kernel_size, stride, padding, dilation, ceil_mode)), x)


def _maxpool2d_params(kernel_size, stride, padding, dilation, ceil_mode):
    return (*kernel_size, *stride, *padding, *dilation, bool(ceil_mode), True, 0)


@_maxpool2d_op.register_fake
def _(x, kernel_size, stride, padding, dilation, ceil_mode, algorithm):
    return _empty_output(x, _maxpool2d_shape(x, kernel_size, stride, padding, dilation, ceil_mode, algorithm))


def _maxpool2d_setup(ctx, inputs, output):
    x, kernel_size, stride, padding, dilation, ceil_mode, _ = inputs
    ctx.save_for_backward(x)
    ctx.params = (kernel_size, stride, padding, dilation, ceil_mode)


def _maxpool2d_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    # torch recomputes the argmax positions; ai3's forward does not keep them.
    _, indices = torch.ops.aten.max_pool2d_with_indices(x, *ctx.params)
    grad_x = torch.ops.aten.max_pool2d_with_indices_backward(grad, x, *ctx.params, indices)
    return grad_x, None, None, None, None, None, None


_register_autograd(_maxpool2d_op, _maxpool2d_backward, _maxpool2d_setup)


def _avgpool2d_shape(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, algorithm):
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("ai3 avgpool2d: divisor_override must not be zero")
    return _pool_shape("avgpool2d", x, kernel_size, stride, padding, (1, 1), ceil_mode, algorithm)


@_custom_op("avgpool2d")
def _avgpool2d_op(
    x: Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Optional[int],
    algorithm: str,
) -> Tensor:
    return _core.run(_plan("avgpool2d", algorithm, _avgpool2d_params(
        kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)), x)


def _avgpool2d_params(kernel_size, stride, padding, ceil_mode, count_include_pad,
                      divisor_override):
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("ai3 avgpool2d: divisor_override must not be zero")
    return (*kernel_size, *stride, *padding, 1, 1, bool(ceil_mode), bool(count_include_pad),
            divisor_override or 0)


@_avgpool2d_op.register_fake
def _(x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, algorithm):
    shape = _avgpool2d_shape(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override, algorithm)
    return _empty_output(x, shape)


def _avgpool2d_setup(ctx, inputs, output):
    x, kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override, _ = inputs
    ctx.save_for_backward(x)
    ctx.params = (kernel_size, stride, padding, ceil_mode, count_include_pad, divisor_override)


def _avgpool2d_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    grad_x = torch.ops.aten.avg_pool2d_backward(grad, x, *ctx.params)
    return grad_x, None, None, None, None, None, None, None


_register_autograd(_avgpool2d_op, _avgpool2d_backward, _avgpool2d_setup)

# ---------------------------------------------------------------------------
# adaptiveavgpool2d
# ---------------------------------------------------------------------------


def _adaptiveavgpool2d_shape(x, output_size, algorithm):
    op = "adaptiveavgpool2d"
    _check_tensor(op, "input", x)
    _check_ndim(op, x, (3, 4), "(N, C, H, W) or (C, H, W)")
    _check_pair(op, "output_size", output_size)
    _check_positive(op, "output_size", output_size)
    if x.shape[-2] < 1 or x.shape[-1] < 1:
        raise ValueError(f"ai3 adaptiveavgpool2d: input of shape {tuple(x.shape)} is empty")
    _check_algorithm(op, algorithm, x.device.type)
    return (*x.shape[:-2], output_size[0], output_size[1])


@_custom_op("adaptiveavgpool2d")
def _adaptiveavgpool2d_op(x: Tensor, output_size: list[int], algorithm: str) -> Tensor:
    return _core.run(_plan("adaptiveavgpool2d", algorithm, tuple(output_size)), x)


@_adaptiveavgpool2d_op.register_fake
def _(x, output_size, algorithm):
    return _empty_output(x, _adaptiveavgpool2d_shape(x, output_size, algorithm))


def _adaptiveavgpool2d_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _adaptiveavgpool2d_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.ops.aten._adaptive_avg_pool2d_backward(grad, x), None, None


_register_autograd(_adaptiveavgpool2d_op, _adaptiveavgpool2d_backward, _adaptiveavgpool2d_setup)

# ---------------------------------------------------------------------------
# relu
# ---------------------------------------------------------------------------


def _relu_shape(x, algorithm):
    _check_tensor("relu", "input", x)
    _check_ndim("relu", x, range(0, 9), "a tensor of at most 8 dimensions")
    _check_algorithm("relu", algorithm, x.device.type)
    return x.shape


@_custom_op("relu")
def _relu_op(x: Tensor, algorithm: str) -> Tensor:
    return _core.run(_plan("relu", algorithm, ()), x)


@_relu_op.register_fake
def _(x, algorithm):
    return _empty_output(x, _relu_shape(x, algorithm))


def _relu_setup(ctx, inputs, output):
    ctx.save_for_backward(output)


def _relu_backward(ctx, grad):
    (out,) = ctx.saved_tensors
    return torch.ops.aten.threshold_backward(grad, out, 0), None


_register_autograd(_relu_op, _relu_backward, _relu_setup)

# ---------------------------------------------------------------------------
# flatten
# ---------------------------------------------------------------------------


def _flatten_shape(x, start_dim, end_dim, algorithm):
    op = "flatten"
    _check_tensor(op, "input", x)
    _check_ndim(op, x, range(0, 9), "a tensor of at most 8 dimensions")
    _check_algorithm(op, algorithm, x.device.type)
    ndim = max(x.dim(), 1)  # a 0-d tensor flattens like a 1-d one
    start = start_dim + ndim if start_dim < 0 else start_dim
    end = end_dim + ndim if end_dim < 0 else end_dim
    if not (0 <= start < ndim and 0 <= end < ndim):
        raise ValueError(
            f"ai3 flatten: dimensions ({start_dim}, {end_dim}) out of range for a "
            f"{x.dim()}-d input"
        )
    if start > end:
        raise ValueError(f"ai3 flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = tuple(x.shape) if x.dim() > 0 else (1,)
    merged = 1
    for size in shape[start : end + 1]:
        merged = merged * size
    return (*shape[:start], merged, *shape[end + 1 :])


@_custom_op("flatten")
def _flatten_op(x: Tensor, start_dim: int, end_dim: int, algorithm: str) -> Tensor:
    return _core.run(_plan("flatten", algorithm, (start_dim, end_dim)), x)


@_flatten_op.register_fake
def _(x, start_dim, end_dim, algorithm):
    return _empty_output(x, _flatten_shape(x, start_dim, end_dim, algorithm))


def _flatten_setup(ctx, inputs, output):
    ctx.input_shape = inputs[0].shape


def _flatten_backward(ctx, grad):
    return grad.reshape(ctx.input_shape), None, None, None


_register_autograd(_flatten_op, _flatten_backward, _flatten_setup)

# ---------------------------------------------------------------------------
# The functions the rest of ai3 calls
# ---------------------------------------------------------------------------


def _ints(values: Sequence[int]) -> list[int]:
    return [int(v) for v in values]


def conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Optional[Tensor],
    stride: tuple[int, int],
    padding: tuple[int, int, int, int],
    dilation: tuple[int, int],
    groups: int,
    padding_mode: str,
    algorithm: str,
) -> Tensor:
    """2-d convolution; `padding` is explicit per side: (top, bottom, left, right)
    (see :func:`conv2d_padding`)."""
    x, weight, bias = _autocast(x, weight, bias)
    keep = _keep_plan(weight, bias)
    path = _path(x, weight, bias)
    if path == _DIRECT:
        return _conv2d_run(x, weight, bias, stride, padding, dilation, groups, padding_mode,
                           algorithm, keep)
    return _through_torch(path, "conv2d", x, weight, bias, _ints(stride), _ints(padding),
                          _ints(dilation), int(groups), padding_mode, algorithm, keep)


def conv2d_algorithm_for(x: Tensor, weight: Tensor, stride, padding, dilation, groups: int,
                         padding_mode: str, algorithm: str) -> str:
    """The algorithm :func:`conv2d` runs for this input shape: `algorithm`
    itself, or what 'default' and 'guess' choose."""
    _conv2d_shape(x, weight, None, stride, padding, dilation, groups, padding_mode, algorithm)
    params = (*_ints(stride), *_ints(padding), *_ints(dilation), int(groups), padding_mode)
    plan = _core.plan("conv2d", algorithm, (weight.detach().contiguous(),), params,
                      tuple(x.shape))
    return _core.plan_algorithm(plan)


def conv2d_padding(
    padding_or_module: Union[int, str, Sequence[int], torch.nn.Conv2d],
    kernel_size: Union[int, Sequence[int], None] = None,
    dilation: Union[int, Sequence[int]] = 1,
) -> tuple[int, int, int, int]:
    """nn.Conv2d's padding (an int, a pair, 'same' or 'valid') as the explicit
    (top, bottom, left, right) that torch applies. 'same' puts the odd extra
    row/column at the bottom/right, as torch does. Pass an nn.Conv2d, or its
    padding, kernel_size and dilation."""
    if isinstance(padding_or_module, torch.nn.Conv2d):
        m = padding_or_module
        padding, kernel_size, dilation = m.padding, m.kernel_size, m.dilation
    else:
        padding = padding_or_module
    if torch.compiler.is_compiling():  # traced: no cache to consult
        return _explicit_padding.__wrapped__(padding, kernel_size, dilation)
    try:
        return _explicit_padding(padding, kernel_size, dilation)
    except TypeError:  # unhashable (a list): computed without the cache
        return _explicit_padding.__wrapped__(padding, kernel_size, dilation)


# Every forward of a swapped conv2d asks: remembered per distinct argument.
@functools.lru_cache(maxsize=1024)
def _explicit_padding(padding, kernel_size, dilation):
    if isinstance(padding, str):
        if padding == "valid":
            return (0, 0, 0, 0)
        if padding != "same":
            raise ValueError(f"ai3 conv2d: padding must be 'same', 'valid', an int or a pair, not {padding!r}")
        if kernel_size is None:
            raise ValueError("ai3 conv2d: padding='same' needs the kernel size")
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
        total_h, total_w = dh * (kh - 1), dw * (kw - 1)
        return (total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2)
    ph, pw = (padding, padding) if isinstance(padding, int) else padding
    return (int(ph), int(ph), int(pw), int(pw))


def linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], algorithm: str) -> Tensor:
    """x · weightᵀ + bias over the last dimension of x."""
    x, weight, bias = _autocast(x, weight, bias)
    keep = _keep_plan(weight, bias)
    path = _path(x, weight, bias)
    if path == _DIRECT:
        return _core.run(_plan("linear", algorithm, (), (weight, bias), keep), x)
    return _through_torch(path, "linear", x, weight, bias, algorithm, keep)


def maxpool2d(
    x: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    ceil_mode: bool,
    algorithm: str,
) -> Tensor:
    path = _path(x)
    if path == _DIRECT:
        params = _maxpool2d_params(kernel_size, stride, padding, dilation, ceil_mode)
        return _core.run(_plan("maxpool2d", algorithm, params), x)
    return _through_torch(path, "maxpool2d", x, _ints(kernel_size), _ints(stride),
                          _ints(padding), _ints(dilation), bool(ceil_mode), algorithm)


def avgpool2d(
    x: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    ceil_mode: bool,
    count_include_pad: bool,
    divisor_override: Optional[int],
    algorithm: str,
) -> Tensor:
    path = _path(x)
    if path == _DIRECT:
        params = _avgpool2d_params(kernel_size, stride, padding, ceil_mode, count_include_pad,
                                   divisor_override)
        return _core.run(_plan("avgpool2d", algorithm, params), x)
    return _through_torch(path, "avgpool2d", x, _ints(kernel_size), _ints(stride),
                          _ints(padding), bool(ceil_mode), bool(count_include_pad),
                          None if divisor_override is None else int(divisor_override), algorithm)


def adaptiveavgpool2d(x: Tensor, output_size: tuple[int, int], algorithm: str) -> Tensor:
    if min(output_size) < 1:  # (0 would mean "keep the input's size" to the C core)
        raise ValueError(f"ai3 adaptiveavgpool2d: output_size must be at least 1, got "
                         f"{tuple(output_size)}")
    size = _ints(output_size)
    return _unary("adaptiveavgpool2d", x, tuple(size), algorithm, size)


def relu(x: Tensor, algorithm: str) -> Tensor:
    return _unary("relu", x, (), algorithm)


def flatten(x: Tensor, start_dim: int, end_dim: int, algorithm: str) -> Tensor:
    dims = (int(start_dim), int(end_dim))
    return _unary("flatten", x, dims, algorithm, *dims)

# ===========================================================================
# The operations whole networks need: batchnorm2d, add, mul, cat, the
# activations, mean, permute, layernorm, softmax. Same pattern as above: one
# shape function shared by the real and the fake implementation, torch's
# own gradient formulas.
# ===========================================================================

__all__ += [
    "batchnorm2d", "add", "mul", "cat", "hardtanh", "sigmoid", "hardsigmoid", "hardswish",
    "silu", "gelu", "mean", "permute", "layernorm", "softmax",
]


def _check_elementwise(op, x, algorithm):
    _check_tensor(op, "input", x)
    _check_ndim(op, x, range(0, 9), "a tensor of at most 8 dimensions")
    _check_algorithm(op, algorithm, x.device.type)
    return x.shape


def _norm_dim(op, what, d, ndim):
    """`d` in [-ndim, ndim) as a non-negative index, else ValueError."""
    if not -ndim <= d < ndim:
        raise ValueError(f"ai3 {op}: {what} {d} is out of range for a {ndim}-d input")
    return d + ndim if d < 0 else d


# --- batchnorm2d (inference form) ------------------------------------------


def _batchnorm2d_shape(x, running_mean, running_var, weight, bias, eps, algorithm):
    op = "batchnorm2d"
    _check_tensor(op, "input", x)
    _check_ndim(op, x, (3, 4), "(N, C, H, W) or (C, H, W)")
    c = x.shape[-3]
    for what, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is None:
            continue
        # float32 statistics with a half CUDA input (autocast) are read as such
        mixed = x.device.type == "cuda" and x.dtype in _HALF and t.dtype == torch.float32
        _check_tensor(op, what, t, None if mixed else x)
        if mixed and t.device != x.device:
            raise ValueError(f"ai3 {op}: {what} is on {t.device} but input is on {x.device}")
        if t.dim() != 1 or t.shape[0] != c:
            raise ValueError(f"ai3 batchnorm2d: {what} must have shape ({c},) (the input's "
                             f"channels), got {tuple(t.shape)}")
    if not eps > 0 or eps == float("inf"):
        raise ValueError(f"ai3 batchnorm2d: eps must be positive and finite, got {eps}")
    _check_algorithm(op, algorithm, x.device.type)
    return x.shape


@_custom_op("batchnorm2d")
def _batchnorm2d_op(x: Tensor, running_mean: Tensor, running_var: Tensor,
                    weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
                    algorithm: str) -> Tensor:
    stats = (running_mean, running_var, weight, bias)
    plan = _plan("batchnorm2d", algorithm, (float(eps),), stats, _keep_norm_plan(*stats))
    return _core.run(plan, x)


@_batchnorm2d_op.register_fake
def _(x, running_mean, running_var, weight, bias, eps, algorithm):
    return _empty_output(x, _batchnorm2d_shape(x, running_mean, running_var, weight, bias, eps,
                                               algorithm))


def _batchnorm2d_setup(ctx, inputs, output):
    x, running_mean, running_var, weight, bias, eps, _ = inputs
    ctx.save_for_backward(x, running_mean, running_var, weight)
    ctx.eps = eps
    ctx.has_bias = bias is not None


def _batchnorm2d_backward(ctx, grad):
    x, mean, var, weight = ctx.saved_tensors
    per_channel = (-1, 1, 1)
    rstd = torch.rsqrt(var + ctx.eps)
    scale = rstd if weight is None else rstd * weight
    others = [d for d in range(x.dim()) if d != x.dim() - 3]
    grad_x = grad * scale.reshape(per_channel) if ctx.needs_input_grad[0] else None
    grad_w = grad_b = None
    if weight is not None and ctx.needs_input_grad[3]:
        x_hat = (x - mean.reshape(per_channel)) * rstd.reshape(per_channel)
        grad_w = (grad * x_hat).sum(others)
    if ctx.has_bias and ctx.needs_input_grad[4]:
        grad_b = grad.sum(others)
    return grad_x, None, None, grad_w, grad_b, None, None


_register_autograd(_batchnorm2d_op, _batchnorm2d_backward, _batchnorm2d_setup)

# --- add, mul (broadcasting) ------------------------------------------------


def _broadcast_shape(op, a, b, algorithm):
    _check_tensor(op, "a", a)
    _check_tensor(op, "b", b)
    if a.dtype != b.dtype:
        raise TypeError(f"ai3 {op}: a has dtype {a.dtype} but b has dtype {b.dtype}")
    if a.device != b.device:
        raise ValueError(f"ai3 {op}: a is on {a.device} but b is on {b.device}")
    if a.dim() > 8 or b.dim() > 8:
        raise ValueError(f"ai3 {op}: at most 8 dimensions are supported")
    _check_algorithm(op, algorithm, a.device.type)
    nd = max(a.dim(), b.dim())
    sa = (1,) * (nd - a.dim()) + tuple(a.shape)
    sb = (1,) * (nd - b.dim()) + tuple(b.shape)
    shape = []
    for i, (x, y) in enumerate(zip(sa, sb)):
        if x != y and x != 1 and y != 1:
            raise ValueError(f"ai3 {op}: shapes {tuple(a.shape)} and {tuple(b.shape)} cannot be "
                             f"broadcast (dimension {i})")
        shape.append(y if x == 1 else x)
    return tuple(shape)


def _sum_to(grad, shape):
    """`grad` summed over the dimensions broadcasting added to `shape`."""
    if tuple(grad.shape) == tuple(shape):
        return grad
    lead = grad.dim() - len(shape)
    grad = grad.sum(list(range(lead))) if lead > 0 else grad
    dims = [i for i, s in enumerate(shape) if s == 1 and grad.shape[i] != 1]
    return grad.sum(dims, keepdim=True) if dims else grad


def _binary_op(op):
    def shape_of(a, b, algorithm):
        return _broadcast_shape(op, a, b, algorithm)

    def impl(a: Tensor, b: Tensor, algorithm: str) -> Tensor:
        return _core.run(_plan(op, algorithm, ()), a, b)

    custom = _custom_op(op)(impl)
    custom.register_fake(lambda a, b, algorithm: _empty_output(a, shape_of(a, b, algorithm)))

    def setup(ctx, inputs, output):
        a, b, _ = inputs
        ctx.shapes = (a.shape, b.shape)
        if op == "mul":
            ctx.save_for_backward(a, b)

    def backward(ctx, grad):
        shape_a, shape_b = ctx.shapes
        if op == "add":
            ga, gb = grad, grad
        else:
            a, b = ctx.saved_tensors
            ga = grad * b if ctx.needs_input_grad[0] else None
            gb = grad * a if ctx.needs_input_grad[1] else None
        ga = _sum_to(ga, shape_a) if ctx.needs_input_grad[0] else None
        gb = _sum_to(gb, shape_b) if ctx.needs_input_grad[1] else None
        return ga, gb, None

    _register_autograd(custom, backward, setup)
    return custom


_add_op = _binary_op("add")
_mul_op = _binary_op("mul")

# --- cat --------------------------------------------------------------------


def _cat_shape(tensors, dim, algorithm):
    op = "cat"
    if len(tensors) == 0:
        raise ValueError("ai3 cat: needs at least one tensor")
    first = tensors[0]
    for i, t in enumerate(tensors):
        _check_tensor(op, f"tensor {i}", t, first)
    nd = first.dim()
    if nd < 1 or nd > 8:
        raise ValueError(f"ai3 cat: tensors must have 1 to 8 dimensions, got {nd}")
    d = _norm_dim(op, "dim", dim, nd)
    total = 0
    for i, t in enumerate(tensors):
        if t.dim() != nd or any(t.shape[k] != first.shape[k] for k in range(nd) if k != d):
            raise ValueError(f"ai3 cat: tensor {i} has shape {tuple(t.shape)}, which differs "
                             f"from tensor 0's {tuple(first.shape)} outside dimension {d}")
        total = total + t.shape[d]
    _check_algorithm(op, algorithm, first.device.type)
    return (*first.shape[:d], total, *first.shape[d + 1:])


@_custom_op("cat")
def _cat_op(tensors: list[Tensor], dim: int, algorithm: str) -> Tensor:
    return _core.run(_plan("cat", algorithm, (dim,)), tensors)


@_cat_op.register_fake
def _(tensors, dim, algorithm):
    shape = _cat_shape(tensors, dim, algorithm)
    return _empty_output(tensors[0], shape)


def _cat_setup(ctx, inputs, output):
    tensors, dim, _ = inputs
    ctx.dim = dim
    ctx.sizes = [t.shape[dim] for t in tensors]


def _cat_backward(ctx, grad):
    return list(grad.split(ctx.sizes, ctx.dim)), None, None


_register_autograd(_cat_op, _cat_backward, _cat_setup)

# --- activations --------------------------------------------------------------


def _hardtanh_shape(x, min_val, max_val, algorithm):
    if not min_val <= max_val:
        raise ValueError(f"ai3 hardtanh: min_val ({min_val}) must not be greater than max_val "
                         f"({max_val})")
    return _check_elementwise("hardtanh", x, algorithm)


@_custom_op("hardtanh")
def _hardtanh_op(x: Tensor, min_val: float, max_val: float, algorithm: str) -> Tensor:
    return _core.run(_plan("hardtanh", algorithm, (float(min_val), float(max_val))), x)


@_hardtanh_op.register_fake
def _(x, min_val, max_val, algorithm):
    return _empty_output(x, _hardtanh_shape(x, min_val, max_val, algorithm))


def _hardtanh_setup(ctx, inputs, output):
    x, min_val, max_val, _ = inputs
    ctx.save_for_backward(x)
    ctx.bounds = (min_val, max_val)


def _hardtanh_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.ops.aten.hardtanh_backward(grad, x, *ctx.bounds), None, None, None


_register_autograd(_hardtanh_op, _hardtanh_backward, _hardtanh_setup)


def _activation_op(op, backward_of):
    """ai3::<op>(x, algorithm) with backward_of(grad, x, out) as gradient."""

    def impl(x: Tensor, algorithm: str) -> Tensor:
        return _core.run(_plan(op, algorithm, ()), x)

    custom = _custom_op(op)(impl)
    custom.register_fake(lambda x, algorithm: _empty_output(x, _check_elementwise(op, x, algorithm)))

    def setup(ctx, inputs, output):
        ctx.save_for_backward(inputs[0], output)

    def backward(ctx, grad):
        x, out = ctx.saved_tensors
        return backward_of(grad, x, out), None

    _register_autograd(custom, backward, setup)
    return custom


_aten = torch.ops.aten
_sigmoid_op = _activation_op("sigmoid", lambda g, x, out: _aten.sigmoid_backward(g, out))
_hardsigmoid_op = _activation_op("hardsigmoid", lambda g, x, out: _aten.hardsigmoid_backward(g, x))
_hardswish_op = _activation_op("hardswish", lambda g, x, out: _aten.hardswish_backward(g, x))
_silu_op = _activation_op("silu", lambda g, x, out: _aten.silu_backward(g, x))


def _gelu_shape(x, approximate, algorithm):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"ai3 gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    return _check_elementwise("gelu", x, algorithm)


@_custom_op("gelu")
def _gelu_op(x: Tensor, approximate: str, algorithm: str) -> Tensor:
    return _core.run(_plan("gelu", algorithm, _gelu_params(approximate)), x)


def _gelu_params(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"ai3 gelu: approximate must be 'none' or 'tanh', not {approximate!r}")
    return (approximate == "tanh",)


@_gelu_op.register_fake
def _(x, approximate, algorithm):
    return _empty_output(x, _gelu_shape(x, approximate, algorithm))


def _gelu_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])
    ctx.approximate = inputs[1]


def _gelu_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return _aten.gelu_backward(grad, x, approximate=ctx.approximate), None, None


_register_autograd(_gelu_op, _gelu_backward, _gelu_setup)

# --- mean -------------------------------------------------------------------


def _mean_dims(x, dims):
    """The reduced dimensions, sorted, non-negative (all of them for [])."""
    nd = x.dim()
    if not dims:
        return list(range(nd))
    norm = [_norm_dim("mean", "dimension", d, max(nd, 1)) for d in dims]
    if len(set(norm)) != len(norm):
        raise ValueError(f"ai3 mean: dims {tuple(dims)} name a dimension more than once")
    return sorted(norm)


def _mean_shape(x, dims, keepdim, algorithm):
    _check_tensor("mean", "input", x)
    _check_ndim("mean", x, range(0, 9), "a tensor of at most 8 dimensions")
    reduced = set(_mean_dims(x, dims))
    _check_algorithm("mean", algorithm, x.device.type)
    if x.dim() == 0:
        return ()
    return tuple(1 if d in reduced else s for d, s in enumerate(x.shape)
                 if keepdim or d not in reduced)


@_custom_op("mean")
def _mean_op(x: Tensor, dims: list[int], keepdim: bool, algorithm: str) -> Tensor:
    return _core.run(_plan("mean", algorithm, (tuple(dims), bool(keepdim))), x)


@_mean_op.register_fake
def _(x, dims, keepdim, algorithm):
    return _empty_output(x, _mean_shape(x, dims, keepdim, algorithm))


def _mean_setup(ctx, inputs, output):
    x, dims, keepdim, _ = inputs
    ctx.shape = x.shape
    ctx.reduced = _mean_dims(x, dims) if x.dim() > 0 else []
    ctx.keepdim = keepdim


def _mean_backward(ctx, grad):
    count = 1
    for d in ctx.reduced:
        count = count * ctx.shape[d]
    if not ctx.keepdim:
        for d in ctx.reduced:
            grad = grad.unsqueeze(d)
    return grad.expand(ctx.shape) / count, None, None, None


_register_autograd(_mean_op, _mean_backward, _mean_setup)

# --- permute ----------------------------------------------------------------


def _permute_shape(x, perm, algorithm):
    _check_tensor("permute", "input", x)
    _check_ndim("permute", x, range(0, 9), "a tensor of at most 8 dimensions")
    if len(perm) != x.dim():
        raise ValueError(f"ai3 permute: perm {tuple(perm)} has {len(perm)} entries but the "
                         f"input has {x.dim()} dimensions")
    norm = [_norm_dim("permute", "perm entry", p, x.dim()) for p in perm]
    if sorted(norm) != list(range(x.dim())):
        raise ValueError(f"ai3 permute: {tuple(perm)} is not a permutation of the dimensions")
    _check_algorithm("permute", algorithm, x.device.type)
    return tuple(x.shape[p] for p in norm)


@_custom_op("permute")
def _permute_op(x: Tensor, perm: list[int], algorithm: str) -> Tensor:
    return _core.run(_plan("permute", algorithm, (tuple(perm),)), x)


@_permute_op.register_fake
def _(x, perm, algorithm):
    return _empty_output(x, _permute_shape(x, perm, algorithm))


def _permute_setup(ctx, inputs, output):
    x, perm, _ = inputs
    norm = [p % x.dim() for p in perm]
    ctx.inverse = sorted(range(len(norm)), key=norm.__getitem__)


def _permute_backward(ctx, grad):
    return grad.permute(ctx.inverse), None, None


_register_autograd(_permute_op, _permute_backward, _permute_setup)

# --- layernorm ----------------------------------------------------------------


def _layernorm_shape(x, normalized_ndim, weight, bias, eps, algorithm):
    op = "layernorm"
    _check_tensor(op, "input", x)
    _check_ndim(op, x, range(1, 9), "a tensor of 1 to 8 dimensions")
    if not 1 <= normalized_ndim <= x.dim():
        raise ValueError(f"ai3 layernorm: normalized_ndim must be in 1..{x.dim()}, got "
                         f"{normalized_ndim}")
    normalized = tuple(x.shape[x.dim() - normalized_ndim:])
    for what, t in (("weight", weight), ("bias", bias)):
        if t is None:
            continue
        _check_tensor(op, what, t, x)
        if tuple(t.shape) != normalized:
            raise ValueError(f"ai3 layernorm: {what} must have shape {normalized}, got "
                             f"{tuple(t.shape)}")
    if not eps > 0 or eps == float("inf"):
        raise ValueError(f"ai3 layernorm: eps must be positive and finite, got {eps}")
    _check_algorithm(op, algorithm, x.device.type)
    return x.shape


@_custom_op("layernorm")
def _layernorm_op(x: Tensor, normalized_ndim: int, weight: Optional[Tensor],
                  bias: Optional[Tensor], eps: float, algorithm: str) -> Tensor:
    return _core.run(_plan("layernorm", algorithm, (normalized_ndim, float(eps)), (weight, bias),
                           _keep_norm_plan(weight, bias)), x)


@_layernorm_op.register_fake
def _(x, normalized_ndim, weight, bias, eps, algorithm):
    return _empty_output(x, _layernorm_shape(x, normalized_ndim, weight, bias, eps, algorithm))


def _layernorm_setup(ctx, inputs, output):
    x, normalized_ndim, weight, bias, eps, _ = inputs
    ctx.save_for_backward(x, weight, bias)
    ctx.normalized = list(x.shape[x.dim() - normalized_ndim:])
    ctx.eps = eps


def _layernorm_backward(ctx, grad):
    x, weight, bias = ctx.saved_tensors
    # torch's backward needs the row statistics; recompute them.
    _, mean, rstd = _aten.native_layer_norm(x, ctx.normalized, weight, bias, ctx.eps)
    mask = [ctx.needs_input_grad[0], weight is not None and ctx.needs_input_grad[2],
            bias is not None and ctx.needs_input_grad[3]]
    gx, gw, gb = _aten.native_layer_norm_backward(grad, x, ctx.normalized, mean, rstd, weight,
                                                  bias, mask)
    return gx, None, gw, gb, None, None


_register_autograd(_layernorm_op, _layernorm_backward, _layernorm_setup)

# --- softmax ------------------------------------------------------------------


def _softmax_shape(x, dim, algorithm):
    _check_tensor("softmax", "input", x)
    _check_ndim("softmax", x, range(0, 9), "a tensor of at most 8 dimensions")
    _norm_dim("softmax", "dim", dim, max(x.dim(), 1))
    _check_algorithm("softmax", algorithm, x.device.type)
    return x.shape


@_custom_op("softmax")
def _softmax_op(x: Tensor, dim: int, algorithm: str) -> Tensor:
    return _core.run(_plan("softmax", algorithm, (dim,)), x)


@_softmax_op.register_fake
def _(x, dim, algorithm):
    return _empty_output(x, _softmax_shape(x, dim, algorithm))


def _softmax_setup(ctx, inputs, output):
    ctx.save_for_backward(output)
    ctx.dim = inputs[1]
    ctx.dtype = inputs[0].dtype


def _softmax_backward(ctx, grad):
    (out,) = ctx.saved_tensors
    return _aten._softmax_backward_data(grad, out, ctx.dim, ctx.dtype), None, None


_register_autograd(_softmax_op, _softmax_backward, _softmax_setup)

# --- the functions the rest of ai3 calls --------------------------------------


def _unary(op: str, x: Tensor, params: tuple, algorithm: str, *args) -> Tensor:
    """ai3::<op>(x, *args, algorithm) of an operation without weights: straight
    to the C core when _path allows (params: the plan's parameters)."""
    path = _path(x)
    if path == _DIRECT:
        return _core.run(_plan(op, algorithm, params), x)
    return _through_torch(path, op, x, *args, algorithm)


def batchnorm2d(x: Tensor, running_mean: Tensor, running_var: Tensor, weight: Optional[Tensor],
                bias: Optional[Tensor], eps: float, algorithm: str) -> Tensor:
    """Batch norm in inference form: normalised with the running statistics."""
    stats = (running_mean, running_var, weight, bias)
    path = _path(x, *stats)
    if path == _DIRECT:
        return _core.run(_plan("batchnorm2d", algorithm, (float(eps),), stats,
                               _keep_norm_plan(*stats)), x)
    return _through_torch(path, "batchnorm2d", x, *stats, float(eps), algorithm)


def add(a: Tensor, b: Tensor, algorithm: str) -> Tensor:
    """a + b with broadcasting (same dtype)."""
    path = _path(a, b)
    if path == _DIRECT:
        return _core.run(_plan("add", algorithm, ()), a, b)
    return _through_torch(path, "add", a, b, algorithm)


def mul(a: Tensor, b: Tensor, algorithm: str) -> Tensor:
    """a * b with broadcasting (same dtype)."""
    path = _path(a, b)
    if path == _DIRECT:
        return _core.run(_plan("mul", algorithm, ()), a, b)
    return _through_torch(path, "mul", a, b, algorithm)


def cat(tensors: Sequence[Tensor], dim: int, algorithm: str) -> Tensor:
    tensors = list(tensors)
    if tensors and _path(*tensors) == _DIRECT:
        return _core.run(_plan("cat", algorithm, (int(dim),)), tensors)
    # (a list of tensors is no autograd.Function input: the custom op records it)
    return torch.ops.ai3.cat(tensors, int(dim), algorithm)


def hardtanh(x: Tensor, min_val: float, max_val: float, algorithm: str) -> Tensor:
    """x clamped to [min_val, max_val]; ReLU6 is hardtanh(x, 0, 6)."""
    lo, hi = float(min_val), float(max_val)
    return _unary("hardtanh", x, (lo, hi), algorithm, lo, hi)


def sigmoid(x: Tensor, algorithm: str) -> Tensor:
    return _unary("sigmoid", x, (), algorithm)


def hardsigmoid(x: Tensor, algorithm: str) -> Tensor:
    return _unary("hardsigmoid", x, (), algorithm)


def hardswish(x: Tensor, algorithm: str) -> Tensor:
    return _unary("hardswish", x, (), algorithm)


def silu(x: Tensor, algorithm: str) -> Tensor:
    return _unary("silu", x, (), algorithm)


def gelu(x: Tensor, approximate: str, algorithm: str) -> Tensor:
    """gelu, exact ('none') or with approximate='tanh', as torch."""
    return _unary("gelu", x, _gelu_params(approximate), algorithm, approximate)


def mean(x: Tensor, dims: Sequence[int], keepdim: bool, algorithm: str) -> Tensor:
    """Mean over `dims` (empty: every dimension)."""
    dims = _ints(dims)
    return _unary("mean", x, (tuple(dims), bool(keepdim)), algorithm, dims, bool(keepdim))


def permute(x: Tensor, perm: Sequence[int], algorithm: str) -> Tensor:
    perm = _ints(perm)
    return _unary("permute", x, (tuple(perm),), algorithm, perm)


def layernorm(x: Tensor, normalized_ndim: int, weight: Optional[Tensor], bias: Optional[Tensor],
              eps: float, algorithm: str) -> Tensor:
    """nn.LayerNorm over the last `normalized_ndim` dimensions."""
    path = _path(x, weight, bias)
    if path == _DIRECT:
        return _core.run(_plan("layernorm", algorithm, (int(normalized_ndim), float(eps)),
                               (weight, bias), _keep_norm_plan(weight, bias)), x)
    return _through_torch(path, "layernorm", x, int(normalized_ndim), weight, bias, float(eps),
                          algorithm)


def softmax(x: Tensor, dim: int, algorithm: str) -> Tensor:
    return _unary("softmax", x, (int(dim),), algorithm, int(dim))
