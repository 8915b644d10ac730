"""ai3 on CUDA devices: every swapped operation computed on the GPU against
torch (every conv2d algorithm x random valid parameters x dtypes, the other
operations, training, torch.compile, moves between devices, autocast,
streams) and clear errors for bad input.

The tests marked `cuda` need a GPU and ai3's CUDA backend and skip cleanly
without them; the others check what holds on any machine (the backend's
report, importing without a GPU)."""

import copy
import io
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from torch import nn

import ai3
from ai3 import _ops
from conftest import randn
from test_ops import conv2d_cases, conv2d_reference, conv2d_tensors

HAS_GPU = torch.cuda.is_available() and _ops.cuda_backend()[0]


def cuda(test):
    """Marks a test `cuda` (pytest -m cuda selects them) and skips it without
    a GPU or without ai3's CUDA backend."""
    skip = pytest.mark.skipif(not HAS_GPU, reason="needs a CUDA device and ai3's CUDA backend")
    return pytest.mark.cuda(skip(test))



GPU_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# Against torch's float64 result on the same (rounded) inputs.
GPU_TOLERANCES = {
    torch.float32: dict(rtol=1e-4, atol=1e-4),
    torch.float64: dict(rtol=1e-9, atol=1e-9),
    torch.float16: dict(rtol=1e-2, atol=1e-2),
    torch.bfloat16: dict(rtol=4e-2, atol=4e-2),
}
# cuDNN's transform-domain algorithms round more.
LOOSER = {"winograd": 20, "winograd nonfused": 20, "fft": 20, "fft tiling": 20}
# Algorithms that compute every convolution torch does; cuDNN's named ones
# may refuse some (with ai3.UnsupportedError naming the algorithm).
COMPLETE = {"direct", "smm", "guess", "default"}


def cuda_algorithms(op):
    return (list(_ops._core.list_algorithms(op, "cuda")) if HAS_GPU else []) + ["default"]


def assert_close_gpu(actual, expected, algorithm=None):
    assert actual.is_cuda and actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = LOOSER.get(algorithm, 1)
    tol = {k: v * scale for k, v in GPU_TOLERANCES[actual.dtype].items()}
    torch.testing.assert_close(actual.double().cpu(), expected.double().cpu(), **tol)


# float32 without TF32 unless a test turns it on (conftest.no_tf32)
pytestmark = pytest.mark.usefixtures("no_tf32")


# ---------------------------------------------------------------------------
# Any machine
# ---------------------------------------------------------------------------


def test_backends_tell_the_truth():
    b = ai3.backends()
    assert b["cpu"]["available"]
    gpu = b["cuda"]
    assert isinstance(gpu["detail"], str) and gpu["detail"]
    if gpu["available"]:
        assert gpu["built"] and "cuDNN" in gpu["detail"] and "cuBLAS" in gpu["detail"]
        assert gpu["devices"] == torch.cuda.device_count()
    assert ai3.using_cudnn() == ai3.using_cublas() == (gpu["available"] and gpu["devices"] > 0)
    assert not ai3.using_sycl() and not ai3.using_mps_and_metal()
    if gpu["available"]:
        names = ai3.list_algorithms("conv2d", "cuda")
        for name in ("direct", "smm", "gemm", "implicit gemm", "implicit precomp gemm",
                     "winograd", "winograd nonfused", "fft", "fft tiling", "guess"):
            assert name in names
        assert ai3.list_algorithms(nn.Linear, "cuda") == ["gemm"]


def test_import_and_cpu_work_without_a_gpu():
    code = ("import torch, ai3; from torch import nn; m = nn.Sequential(nn.Conv2d(3, 4, 3)); "
            "x = torch.randn(1, 3, 8, 8); r = m(x); ai3.swap_conv2d(m, 'smm'); "
            "assert torch.allclose(m(x), r, atol=1e-5); print('ok')")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr


# ---------------------------------------------------------------------------
# conv2d: every algorithm x random valid parameters x dtypes
# ---------------------------------------------------------------------------


def to_gpu(*tensors):
    return [None if t is None else t.cuda() for t in tensors]


def run_conv2d(algorithm, dtype, case):
    x, weight, bias = conv2d_tensors(case, dtype)
    gx, gw, gb = to_gpu(x, weight, bias)
    before = [t.clone() for t in (gx, gw, gb) if t is not None]
    try:
        out = _ops.conv2d(gx, gw, gb, case["stride"], case["explicit"], case["dilation"],
                          case["groups"], case["padding_mode"], algorithm)
    except ai3.UnsupportedError as e:
        assert algorithm not in COMPLETE, f"{algorithm} refused: {e}"
        assert algorithm in str(e), str(e)
        return None
    for b, t in zip(before, [t for t in (gx, gw, gb) if t is not None]):
        assert torch.equal(b, t), "an input was modified"
    assert out.dtype == dtype and out.device == gx.device
    assert_close_gpu(out, conv2d_reference(case, x, weight, bias), algorithm)
    return out


@cuda
@pytest.mark.filterwarnings("ignore:Using padding='same'")
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("algorithm", cuda_algorithms("conv2d"))
@settings(max_examples=15, deadline=None)
@given(case=conv2d_cases())
def test_conv2d_on_cuda_matches_torch(algorithm, dtype, case):
    run_conv2d(algorithm, dtype, case)


# cuDNN's algorithms that compute the seed's convolution (3x3, stride 1,
# padding 1) in float32 and float16 on the GPUs tested (an H200, cuDNN 9.19);
# the others must refuse it saying why (run_conv2d checks).
SEED_SHAPE_ALGORITHMS = COMPLETE | {"gemm", "implicit gemm", "implicit precomp gemm"}


@cuda
@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
@pytest.mark.parametrize("algorithm", cuda_algorithms("conv2d"))
def test_cuda_algorithms_compute_the_seed_shape(algorithm, dtype):
    case = dict(batch=(2,), c_in=16, c_out=16, h=14, w=14, kernel=(3, 3), stride=(1, 1),
                padding=1, explicit=(1, 1, 1, 1), dilation=(1, 1), groups=1,
                padding_mode="zeros", bias=True, seed=7)
    computed = run_conv2d(algorithm, dtype, case) is not None
    assert computed or algorithm not in SEED_SHAPE_ALGORITHMS


@cuda
def test_cudnn_refusals_name_the_algorithm_and_reason():
    x = torch.randn(1, 4, 9, 9, device="cuda")
    w = torch.randn(4, 4, 5, 5, device="cuda")
    refused = 0
    for algorithm in ("winograd", "fft", "fft tiling", "winograd nonfused", "gemm"):
        try:  # stride 3 and dilation 2: outside what several of them take
            _ops.conv2d(x, w, None, (3, 3), (0, 0, 0, 0), (2, 2), 1, "zeros", algorithm)
        except ai3.UnsupportedError as e:
            refused += 1
            assert f"'{algorithm}'" in str(e) and "cuDNN" in str(e), str(e)
            assert "CUDNN_STATUS" in str(e) or "support" in str(e)
    assert refused >= 1


@cuda
def test_guess_reports_cudnns_choice():
    conv = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1)).cuda()
    ai3.swap_conv2d(conv, "guess")
    chosen = conv[0].algorithm_for((1, 8, 16, 16))
    # cuDNN's graph-API engine, or (unaligned data) a legacy algorithm by name
    assert chosen == "cudnn heuristic engine" or chosen in ai3.list_algorithms("conv2d", "cuda")
    assert chosen != "guess"


# ---------------------------------------------------------------------------
# The other swapped operations
# ---------------------------------------------------------------------------


def batchnorm():
    bn = nn.BatchNorm2d(6)
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    return bn.eval()


MODULES = {
    "maxpool": lambda: nn.MaxPool2d(3, 2, 1),
    "maxpool_ceil_dilated": lambda: nn.MaxPool2d(3, 2, 1, dilation=2, ceil_mode=True),
    "avgpool": lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
    "avgpool_ceil": lambda: nn.AvgPool2d(3, 2, 1, ceil_mode=True),
    "avgpool_divisor": lambda: nn.AvgPool2d(2, divisor_override=3),
    "adaptive": lambda: nn.AdaptiveAvgPool2d((3, 5)),
    "adaptive_1": lambda: nn.AdaptiveAvgPool2d(1),
    "relu": nn.ReLU,
    "flatten": nn.Flatten,
    "batchnorm": batchnorm,
    "hardtanh": lambda: nn.Hardtanh(-0.5, 0.7),
    "relu6": nn.ReLU6,
    "sigmoid": nn.Sigmoid,
    "hardsigmoid": nn.Hardsigmoid,
    "hardswish": nn.Hardswish,
    "silu": nn.SiLU,
    "gelu": nn.GELU,
    "gelu_tanh": lambda: nn.GELU("tanh"),
}


@cuda
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("name", sorted(MODULES))
@pytest.mark.parametrize("batched", (True, False))
def test_operation_on_cuda_matches_torch(name, dtype, batched):
    if name == "batchnorm" and not batched:
        pytest.skip("nn.BatchNorm2d takes 4-d input only")
    module = MODULES[name]()
    x = randn((2, 6, 13, 11) if batched else (6, 13, 11), torch.float64, 3)
    expected = module.double()(x)
    swapped = nn.Sequential(copy.deepcopy(module)).cuda().to(dtype)
    op_type = type(module) if not isinstance(module, nn.ReLU6) else nn.Hardtanh
    ai3.swap_operation(op_type, swapped, "default")
    assert type(swapped[0]).__module__.startswith("ai3")
    gx = x.to(dtype).cuda()
    with torch.no_grad():
        out = swapped(gx)
    assert out.dtype == dtype and out.is_cuda
    # the input rounded to dtype is the reference's input too
    assert_close_gpu(out, module.double()(gx.double().cpu()))
    assert out.shape == expected.shape


@cuda
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("lead", [(), (3,), (2, 5)])
@pytest.mark.parametrize("bias", (True, False))
def test_linear_on_cuda_matches_torch(dtype, lead, bias):
    linear = nn.Linear(17, 9, bias=bias).double()
    x = randn((*lead, 17), torch.float64, 5)
    swapped = nn.Sequential(copy.deepcopy(linear)).cuda().to(dtype)
    ai3.swap_operation(nn.Linear, swapped, "gemm")
    gx = x.to(dtype).cuda()
    with torch.no_grad():
        out = swapped(gx)
    ref = F.linear(gx.double().cpu(), swapped[0].weight.double().cpu(),
                   swapped[0].bias.double().cpu() if bias else None)
    assert_close_gpu(out, ref)


# ---------------------------------------------------------------------------
# Whole swapped models: training, compile, moves, autocast, streams
# ---------------------------------------------------------------------------


def small_cnn():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, stride=2, padding="valid", padding_mode="reflect"), nn.SiLU(),
        nn.Conv2d(16, 16, 3, padding=1, groups=16), nn.Hardswish(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))


def swap_all(model, conv="smm"):
    ai3.swap_conv2d(model, conv)
    for op in (nn.Linear, nn.MaxPool2d, nn.ReLU, nn.SiLU, nn.Hardswish, nn.AdaptiveAvgPool2d,
               nn.Flatten, nn.BatchNorm2d):
        ai3.swap_operation(op, model, "default")
    return model


@cuda
@pytest.mark.parametrize("conv", ["smm", "direct", "guess", "implicit gemm"])
def test_training_on_cuda_matches_torch(conv):
    reference = small_cnn().cuda()
    swapped = swap_all(copy.deepcopy(reference), conv)
    x = torch.randn(4, 3, 16, 16, device="cuda")
    target = torch.randint(0, 10, (4,), device="cuda")
    opt_r = torch.optim.SGD(reference.parameters(), lr=0.1)
    opt_s = torch.optim.SGD(swapped.parameters(), lr=0.1)
    for step in range(3):  # the plans read the weights in place: steps are seen
        for model, opt in ((reference, opt_r), (swapped, opt_s)):
            opt.zero_grad()
            F.cross_entropy(model(x), target).backward()
            opt.step()
        for (name, p), q in zip(reference.named_parameters(), swapped.parameters()):
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5, msg=name)
    reference.eval()
    swapped.eval()
    with torch.no_grad():
        torch.testing.assert_close(swapped(x), reference(x), rtol=1e-4, atol=1e-5)


@cuda
def test_compile_fullgraph_on_cuda():
    reference = small_cnn().cuda().eval()
    swapped = swap_all(copy.deepcopy(reference))
    compiled = torch.compile(swapped, fullgraph=True)
    x = torch.randn(2, 3, 16, 16, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), reference(x), rtol=1e-4, atol=1e-5)


@cuda
def test_moves_copies_and_saves_between_devices():
    reference = small_cnn().eval()
    swapped = swap_all(copy.deepcopy(reference))
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(swapped(x), expected, rtol=1e-4, atol=1e-5)  # CPU plans
        swapped.cuda()
        torch.testing.assert_close(swapped(x.cuda()).cpu(), expected, rtol=1e-4, atol=1e-5)
        twin = copy.deepcopy(swapped)
        torch.testing.assert_close(twin(x.cuda()).cpu(), expected, rtol=1e-4, atol=1e-5)
        buffer = io.BytesIO()
        torch.save(swapped, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        torch.testing.assert_close(loaded(x.cuda()).cpu(), expected, rtol=1e-4, atol=1e-5)
        swapped.cpu()  # back: CUDA plans are not used for CPU tensors
        torch.testing.assert_close(swapped(x), expected, rtol=1e-4, atol=1e-5)
        swapped.to("cuda", torch.float64)
        torch.testing.assert_close(swapped(x.cuda().double()).cpu(), reference.double()(x.double()),
                                   rtol=1e-9, atol=1e-9)


@cuda
def test_autocast_on_cuda():
    reference = small_cnn().cuda().eval()
    swapped = swap_all(copy.deepcopy(reference), "guess")
    x = torch.randn(2, 3, 16, 16, device="cuda")
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        expected = reference(x)
        out = swapped(x)
    assert out.dtype == expected.dtype
    torch.testing.assert_close(out.float(), expected.float(), rtol=2e-2, atol=2e-2)


@cuda
def test_runs_on_torchs_current_stream():
    model = swap_all(small_cnn().cuda().eval(), "guess")
    reference = small_cnn().cuda().eval()
    x = torch.randn(8, 3, 32, 32, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.no_grad(), torch.cuda.stream(stream):
        outs = [model(x * i) for i in range(4)]  # enqueued, never synchronised inside
    stream.synchronize()
    with torch.no_grad():
        for i, out in enumerate(outs):
            torch.testing.assert_close(out, reference(x * i), rtol=1e-4, atol=1e-5)


@cuda
def test_tf32_follows_torchs_flag():
    x = torch.randn(4, 64, 28, 28, device="cuda")
    w = torch.randn(64, 64, 3, 3, device="cuda")
    exact = F.conv2d(x.double(), w.double(), padding=1)
    full = _ops.conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros", "implicit gemm")
    assert (full.double() - exact).abs().max() / exact.abs().max() < 1e-5
    torch.backends.cudnn.allow_tf32 = True
    fast = _ops.conv2d(x, w, None, (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros", "guess")
    assert (fast.double() - exact).abs().max() / exact.abs().max() < 1e-2


# ---------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------


@cuda
def test_bad_input_on_cuda_is_refused_clearly():
    model = swap_all(small_cnn().cuda().eval())
    x = torch.randn(2, 3, 16, 16, device="cuda")
    with torch.no_grad():
        good = model(x)
        with pytest.raises(ValueError, match="cpu"):
            model(x.cpu())                     # input on the CPU, weights on the GPU
        with pytest.raises((ValueError, TypeError), match="float16|dtype"):
            model(x.half())                    # another dtype than the weights
        with pytest.raises(ValueError, match="channels"):
            model(torch.randn(2, 4, 16, 16, device="cuda"))
        with pytest.raises(TypeError, match="dtype"):
            model(x.to(torch.int32))
        with pytest.raises(ValueError, match="unknown algorithm"):
            _ops.conv2d(x, torch.randn(4, 3, 3, 3, device="cuda"), None, (1, 1),
                        (0, 0, 0, 0), (1, 1), 1, "zeros", "nothing")
        conv = nn.Sequential(nn.Conv2d(3, 4, 3))
        ai3.swap_conv2d(conv, "fft")
        with pytest.raises(ValueError, match="fft"):
            conv(torch.randn(1, 3, 8, 8))      # a cuDNN algorithm, CPU tensors
        torch.testing.assert_close(model(x), good)  # and the next good call works


@cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_two_gpus_are_not_mixed():
    model = swap_all(small_cnn().to("cuda:0").eval())
    with torch.no_grad(), pytest.raises(ValueError, match="cuda:1"):
        model(torch.randn(2, 3, 16, 16, device="cuda:1"))


# ---------------------------------------------------------------------------
# The operations of whole networks (what convert runs) on CUDA
# ---------------------------------------------------------------------------


def gpu_randn(shape, dtype, seed):
    return randn(shape, torch.float64, seed).to(dtype).cuda()


TENSOR_OPS = {
    "add": (lambda a, b: _ops.add(a, b, "default"), torch.add,
            [((2, 3, 4, 5), (1, 3, 1, 1)), ((2, 3, 4, 5), (5,)), ((4, 1), (1, 6)),
             ((2, 3), (2, 3)), ((1, 1, 1, 1), (2, 3, 4, 5))]),
    "mul": (lambda a, b: _ops.mul(a, b, "default"), torch.mul,
            [((2, 8, 7, 7), (2, 8, 1, 1)), ((3, 5), (3, 1)), ((6,), (6,))]),
}


@cuda
@pytest.mark.parametrize("dtype", GPU_DTYPES)
@pytest.mark.parametrize("name", sorted(TENSOR_OPS))
def test_binary_ops_on_cuda_match_torch(name, dtype):
    ours, theirs, shapes = TENSOR_OPS[name]
    for i, (sa, sb) in enumerate(shapes):
        a, b = gpu_randn(sa, dtype, i), gpu_randn(sb, dtype, 100 + i)
        assert_close_gpu(ours(a, b), theirs(a.double(), b.double()))


@cuda
@pytest.mark.parametrize("dtype", GPU_DTYPES)
def test_tensor_ops_on_cuda_match_torch(dtype):
    x = gpu_randn((2, 6, 5, 7), dtype, 1)
    d = x.double()
    for dim in (0, 1, -1):
        parts = [gpu_randn(s, dtype, 10 + k) for k, s in enumerate(
            [(2, 6, 5, 7)[:dim % 4] + (n,) + (2, 6, 5, 7)[dim % 4 + 1:] for n in (1, 3, 2)])]
        assert_close_gpu(_ops.cat(parts, dim, "default"), torch.cat([p.double() for p in parts], dim))
    for dims, keep in (((2, 3), True), ((2, 3), False), ((0, 2), False), ((), False), ((-1,), True)):
        expected = d.mean(dims, keepdim=keep) if dims else d.mean()
        assert_close_gpu(_ops.mean(x, dims, keep, "default"), expected)
    for perm in ((0, 2, 3, 1), (3, 2, 1, 0), (1, 0, 2, 3)):
        assert_close_gpu(_ops.permute(x, perm, "default"), d.permute(perm))
    for dim in (0, 1, -1):
        assert_close_gpu(_ops.softmax(x, dim, "default"), torch.softmax(d, dim))
    for k, affine in ((1, True), (2, False), (3, True)):
        shape = x.shape[-k:]
        w = gpu_randn(shape, dtype, 3) if affine else None
        b = gpu_randn(shape, dtype, 4) if affine else None
        expected = F.layer_norm(d, shape, None if w is None else w.double(),
                                None if b is None else b.double(), 1e-5)
        assert_close_gpu(_ops.layernorm(x, k, w, b, 1e-5, "default"), expected)
