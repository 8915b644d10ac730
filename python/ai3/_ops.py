"""The torch custom ops ``ai3::<op>``: each operation as an opaque op that runs
in eager mode, under autograd and under ``torch.compile``.

For every op there is one validation function that checks the arguments and
returns the output shape with plain arithmetic (so it also works on the
symbolic sizes ``torch.compile`` traces with); the real implementation and
the fake one both call it, so both raise the same clear errors. The real
implementation makes the input contiguous, allocates the output with
``torch.empty`` and lets the C core write it. Backward passes use torch's
own gradient functions.

The functions at the bottom (:func:`conv2d`, :func:`linear`, ...) are what
the rest of ai3 calls.
"""

from __future__ import annotations

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


def _check_tensor(op: str, what: str, t: Tensor, like: Optional[Tensor] = None) -> None:
    """dtype float32/float64, a device ai3 computes on, and (given `like`) the
    same dtype and device as `like`."""
    if t.dtype not in (torch.float32, torch.float64):
        raise TypeError(
            f"ai3 {op}: {what} has dtype {t.dtype}; ai3 computes in torch.float32 and "
            "torch.float64 only"
        )
    if like is not None:
        if t.dtype != like.dtype:
            raise TypeError(f"ai3 {op}: {what} has dtype {t.dtype} but input has dtype {like.dtype}")
        if t.device != like.device:
            raise ValueError(f"ai3 {op}: {what} is on {t.device} but input is on {like.device}")
    # "meta" is accepted so that shapes can be propagated without data.
    if t.device.type not in ("cpu", "meta"):
        raise UnsupportedError(
            f"ai3 {op}: {what} is on {t.device}, but this build of ai3 computes on the CPU "
            "only; CUDA tensors are not supported by this build"
        )


def _check_algorithm(op: str, algorithm: str) -> None:
    if algorithm == "default":
        return
    known = _core.list_algorithms(op)
    if algorithm not in known:
        raise ValueError(
            f"ai3 {op}: unknown algorithm {algorithm!r}; known: "
            + ", ".join(("default",) + tuple(known))
        )


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


# ---------------------------------------------------------------------------
# Plans: weights prepared once (re-laid out, packed, transformed) and reused
# ---------------------------------------------------------------------------

# id(weight) -> (weak reference to the weight, key, plan): a plan lives as
# long as its weight. The key holds the weight's and bias's version counters,
# which every in-place change (an optimizer step, load_state_dict)
# increments, so a changed weight gets a new plan on its next use. (A
# WeakKeyDictionary would compare tensors with ==, which is elementwise.)
_plans: dict = {}


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


def _keep_plan(weight: Tensor, bias: Optional[Tensor]) -> bool:
    """Whether a plan may be kept for these weights: not while they are being
    trained (they change every step, and tools such as gradcheck perturb
    them through .data, which no version counter sees)."""
    tensors = (weight,) if bias is None else (weight, bias)
    return not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))


def _plan_for(weight: Tensor, bias: Optional[Tensor], config: tuple, make_plan):
    if weight.is_inference() or (bias is not None and bias.is_inference()):
        return make_plan()  # inference tensors have no version counter
    key = (config, weight._version, weight.data_ptr(), weight.dtype,
           None if bias is None else (id(bias), bias._version, bias.data_ptr()))
    entry = _plans.get(id(weight))
    alive = entry is not None and entry[0]() is weight
    if alive and entry[1] == key:
        return entry[2]
    plan = make_plan()
    _plans[id(weight)] = (entry[0] if alive else weakref.ref(weight, _forget), key, plan)
    return plan


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
    _check_algorithm(op, algorithm)
    oh = (hp - ekh) // stride[0] + 1
    ow = (wp - ekw) // stride[1] + 1
    return (*x.shape[:-3], c_out, oh, ow)


@torch.library.custom_op("ai3::conv2d", mutates_args=())
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
    shape = _conv2d_shape(x, weight, bias, stride, padding, dilation, groups, padding_mode, algorithm)
    out = _empty_output(x, shape)
    if out.numel() == 0:
        return out
    x = x.contiguous()
    config = ("conv2d", algorithm, *stride, *padding, *dilation, groups, padding_mode)

    def make_plan():
        return _core.conv2d_plan(
            algorithm, weight.contiguous(), bias.contiguous() if bias is not None else None,
            stride[0], stride[1], *padding, dilation[0], dilation[1], groups, padding_mode, x)

    if not keep_plan:
        return _core.conv2d_plan_run(make_plan(), x, out)
    return _core.conv2d_plan_run(_plan_for(weight, bias, config, make_plan), x, out)


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


_conv2d_op.register_autograd(_conv2d_backward, setup_context=_conv2d_setup)

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
    _check_algorithm(op, algorithm)
    return (*x.shape[:-1], out_features)


@torch.library.custom_op("ai3::linear", mutates_args=())
def _linear_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], algorithm: str,
               keep_plan: bool) -> Tensor:
    out = _empty_output(x, _linear_shape(x, weight, bias, algorithm))
    if out.numel() == 0:
        return out
    bias = bias.contiguous() if bias is not None else None
    config = ("linear", algorithm)

    def make_plan():
        return _core.linear_plan(algorithm, weight.contiguous(),
                                 bias.contiguous() if bias is not None else None)

    plan = _plan_for(weight, bias, config, make_plan) if keep_plan else make_plan()
    return _core.linear_plan_run(plan, x.contiguous(), out)


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


_linear_op.register_autograd(_linear_backward, setup_context=_linear_setup)

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
    h, w = x.shape[-2], x.shape[-1]
    oh = _pool_out_size(h, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = _pool_out_size(w, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    if oh < 1 or ow < 1:
        raise ValueError(
            f"ai3 {op}: input of size {(h, w)} with padding {tuple(padding)} is smaller than "
            f"the (dilated) kernel {tuple(kernel_size)}; the output would be {(oh, ow)}"
        )
    _check_algorithm(op, algorithm)
    return (*x.shape[:-2], oh, ow)


def _maxpool2d_shape(x, kernel_size, stride, padding, dilation, ceil_mode, algorithm):
    return _pool_shape("maxpool2d", x, kernel_size, stride, padding, dilation, ceil_mode, algorithm)


@torch.library.custom_op("ai3::maxpool2d", mutates_args=())
def _maxpool2d_op(
    x: Tensor,
    kernel_size: list[int],
    stride: list[int],
    padding: list[int],
    dilation: list[int],
    ceil_mode: bool,
    algorithm: str,
) -> Tensor:
    shape = _maxpool2d_shape(x, kernel_size, stride, padding, dilation, ceil_mode, algorithm)
    out = _empty_output(x, shape)
    if out.numel() == 0:
        return out
    return _core.maxpool2d(algorithm, x.contiguous(), out, *kernel_size, *stride, *padding,
                           *dilation, ceil_mode)


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


_maxpool2d_op.register_autograd(_maxpool2d_backward, setup_context=_maxpool2d_setup)


def _avgpool2d_shape(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                     divisor_override, algorithm):
    if divisor_override is not None and divisor_override == 0:
        raise ValueError("ai3 avgpool2d: divisor_override must not be zero")
    return _pool_shape("avgpool2d", x, kernel_size, stride, padding, (1, 1), ceil_mode, algorithm)


@torch.library.custom_op("ai3::avgpool2d", mutates_args=())
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
    shape = _avgpool2d_shape(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                             divisor_override, algorithm)
    out = _empty_output(x, shape)
    if out.numel() == 0:
        return out
    return _core.avgpool2d(algorithm, x.contiguous(), out, *kernel_size, *stride, *padding,
                           ceil_mode, count_include_pad, divisor_override or 0)


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


_avgpool2d_op.register_autograd(_avgpool2d_backward, setup_context=_avgpool2d_setup)

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
    _check_algorithm(op, algorithm)
    return (*x.shape[:-2], output_size[0], output_size[1])


@torch.library.custom_op("ai3::adaptiveavgpool2d", mutates_args=())
def _adaptiveavgpool2d_op(x: Tensor, output_size: list[int], algorithm: str) -> Tensor:
    out = _empty_output(x, _adaptiveavgpool2d_shape(x, output_size, algorithm))
    if out.numel() == 0:
        return out
    return _core.adaptiveavgpool2d(algorithm, x.contiguous(), out)


@_adaptiveavgpool2d_op.register_fake
def _(x, output_size, algorithm):
    return _empty_output(x, _adaptiveavgpool2d_shape(x, output_size, algorithm))


def _adaptiveavgpool2d_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0])


def _adaptiveavgpool2d_backward(ctx, grad):
    (x,) = ctx.saved_tensors
    return torch.ops.aten._adaptive_avg_pool2d_backward(grad, x), None, None


_adaptiveavgpool2d_op.register_autograd(_adaptiveavgpool2d_backward,
                                        setup_context=_adaptiveavgpool2d_setup)

# ---------------------------------------------------------------------------
# relu
# ---------------------------------------------------------------------------


def _relu_shape(x, algorithm):
    _check_tensor("relu", "input", x)
    _check_ndim("relu", x, range(0, 9), "a tensor of at most 8 dimensions")
    _check_algorithm("relu", algorithm)
    return x.shape


@torch.library.custom_op("ai3::relu", mutates_args=())
def _relu_op(x: Tensor, algorithm: str) -> Tensor:
    out = _empty_output(x, _relu_shape(x, algorithm))
    if out.numel() == 0:
        return out
    return _core.relu(algorithm, x.contiguous(), out)


@_relu_op.register_fake
def _(x, algorithm):
    return _empty_output(x, _relu_shape(x, algorithm))


def _relu_setup(ctx, inputs, output):
    ctx.save_for_backward(output)


def _relu_backward(ctx, grad):
    (out,) = ctx.saved_tensors
    return torch.ops.aten.threshold_backward(grad, out, 0), None


_relu_op.register_autograd(_relu_backward, setup_context=_relu_setup)

# ---------------------------------------------------------------------------
# flatten
# ---------------------------------------------------------------------------


def _flatten_shape(x, start_dim, end_dim, algorithm):
    op = "flatten"
    _check_tensor(op, "input", x)
    _check_ndim(op, x, range(0, 9), "a tensor of at most 8 dimensions")
    _check_algorithm(op, algorithm)
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


@torch.library.custom_op("ai3::flatten", mutates_args=())
def _flatten_op(x: Tensor, start_dim: int, end_dim: int, algorithm: str) -> Tensor:
    out = _empty_output(x, _flatten_shape(x, start_dim, end_dim, algorithm))
    if out.numel() == 0:
        return out
    return _core.flatten(algorithm, x.contiguous(), out, start_dim, end_dim)


@_flatten_op.register_fake
def _(x, start_dim, end_dim, algorithm):
    return _empty_output(x, _flatten_shape(x, start_dim, end_dim, algorithm))


def _flatten_setup(ctx, inputs, output):
    ctx.input_shape = inputs[0].shape


def _flatten_backward(ctx, grad):
    return grad.reshape(ctx.input_shape), None, None, None


_flatten_op.register_autograd(_flatten_backward, setup_context=_flatten_setup)

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
    return torch.ops.ai3.conv2d(x, weight, bias, _ints(stride), _ints(padding), _ints(dilation),
                                int(groups), padding_mode, algorithm, _keep_plan(weight, bias))


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
    return torch.ops.ai3.linear(x, weight, bias, algorithm, _keep_plan(weight, bias))


def maxpool2d(
    x: Tensor,
    kernel_size: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    ceil_mode: bool,
    algorithm: str,
) -> Tensor:
    return torch.ops.ai3.maxpool2d(x, _ints(kernel_size), _ints(stride), _ints(padding),
                                   _ints(dilation), bool(ceil_mode), algorithm)


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
    return torch.ops.ai3.avgpool2d(x, _ints(kernel_size), _ints(stride), _ints(padding),
                                   bool(ceil_mode), bool(count_include_pad),
                                   None if divisor_override is None else int(divisor_override),
                                   algorithm)


def adaptiveavgpool2d(x: Tensor, output_size: tuple[int, int], algorithm: str) -> Tensor:
    return torch.ops.ai3.adaptiveavgpool2d(x, _ints(output_size), algorithm)


def relu(x: Tensor, algorithm: str) -> Tensor:
    return torch.ops.ai3.relu(x, algorithm)


def flatten(x: Tensor, start_dim: int, end_dim: int, algorithm: str) -> Tensor:
    return torch.ops.ai3.flatten(x, int(start_dim), int(end_dim), algorithm)
