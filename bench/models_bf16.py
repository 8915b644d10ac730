"""Whole networks in bfloat16 on the CPU: ai3.convert(net, dtype=torch.bfloat16)
against the same network converted in float32, one build, one process.

ResNet-50 and MobileNetV2 (weights=None, eval mode), batch 1, 224x224. The
two models run interleaved, round after round, after warm-up; the table
has the medians, the median of the per-round ratios (bfloat16 time over
float32 time: below 1, bfloat16 is faster), the relative error of the
bfloat16 output against torch in float32, and the load average before and
after (the machine may be shared). The bfloat16 GEMM kernel is AMX where
the CPU has it; AI3_BF16_KERNEL=avx512 in the environment measures the
AVX512_BF16 one. Writes bench/results/models_bf16_<kernel>.json.

    .venv/bin/python bench/models_bf16.py [--repeats 15] [--threads 2] [--models resnet50 ...]
"""
import argparse
import json
import os
import pathlib
import platform
import statistics
import time

import torch
import torchvision

import ai3

MODELS = ("resnet50", "mobilenet_v2")
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def kernel_name():
    if os.environ.get("AI3_BF16_KERNEL") == "avx512":
        return "avx512"
    try:
        with open("/proc/cpuinfo") as f:
            return "amx" if "amx_bf16" in f.read() else "avx512"
    except OSError:
        return "unknown"


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name, shape, repeats):
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(shape)
    f32 = ai3.convert(net, sample_input_shape=shape)
    bf16 = ai3.convert(net, sample_input_shape=shape, dtype=torch.bfloat16)
    xb = x.bfloat16()
    with torch.inference_mode():
        expected = net(x)
    err = ((bf16(xb).float() - expected).norm() / expected.norm()).item()
    calls = {"f32": lambda: f32(x), "bf16": lambda: bf16(xb)}
    for fn in calls.values():  # warm-up
        fn()
        fn()
    load_before = os.getloadavg()[0]
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            times[k].append(timed(fn))
    load_after = os.getloadavg()[0]
    med = {k: statistics.median(v) for k, v in times.items()}
    ratios = [b / f for b, f in zip(times["bf16"], times["f32"])]
    return {
        "model": name, "input_shape": list(shape), "relative_error": err,
        "f32_ms": 1e3 * med["f32"], "bf16_ms": 1e3 * med["bf16"],
        "ratio_of_medians": med["bf16"] / med["f32"], "median_ratio": statistics.median(ratios),
        "f32_ms_all": [1e3 * t for t in times["f32"]],
        "bf16_ms_all": [1e3 * t for t in times["bf16"]],
        "load_before": load_before, "load_after": load_after,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ai3.set_num_threads(args.threads)
    shape = (1, 3, 224, 224)
    kernel = kernel_name()
    try:
        rows = [measure(name, shape, args.repeats) for name in args.models]
    except ai3.UnsupportedError as e:
        raise SystemExit(f"no bfloat16 run on this machine: {e}")

    print(f"bfloat16 kernel: {kernel}, {ai3.get_num_threads()} threads")
    print(f"{'model':<14}{'f32 ms':>9}{'bf16 ms':>9}{'bf16/f32':>10}{'rel err':>10}{'load':>12}")
    for r in rows:
        print(f"{r['model']:<14}{r['f32_ms']:>9.1f}{r['bf16_ms']:>9.1f}{r['median_ratio']:>10.2f}"
              f"{r['relative_error']:>10.1e}{r['load_before']:>6.1f}-{r['load_after']:<5.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = {
        "machine": platform.processor() or platform.machine(), "bf16_kernel": kernel,
        "threads": ai3.get_num_threads(), "repeats": args.repeats,
        "torch_version": torch.__version__, "results": rows,
    }
    path = RESULTS / f"models_bf16_{kernel}.json"
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
