"""Whole networks: a converted ai3.Model against PyTorch eager.

ResNet-50, MobileNetV2 and VGG16 (weights=None, eval mode), batch 1,
224x224, float32. Measured in one process: ai3 and PyTorch calls
interleaved, after warm-up, median of the repeats; the ratio is ai3's time
over PyTorch's (below 1: ai3 is faster). Also the memory of the ai3 plan:
the arena holding every intermediate tensor (buffers reused by lifetime,
elementwise operations in place) against the sum of all intermediate
tensors, and the convolutions' workspace. Prints a table; writes
bench/results/models.json.

    .venv/bin/python bench/models.py [--repeats 10] [--threads 2] [--models resnet50 ...]
"""
import argparse
import json
import pathlib
import platform
import statistics
import time

import torch
import torchvision

import ai3

MODELS = ("resnet50", "mobilenet_v2", "vgg16")
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(name, shape, repeats):
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(shape)
    start = time.perf_counter()
    model = ai3.convert(net, sample_input_shape=shape)
    convert_s = time.perf_counter() - start
    with torch.inference_mode():
        expected = net(x)
    err = ((model(x) - expected).norm() / expected.norm()).item()

    def torch_call():
        with torch.inference_mode():
            net(x)

    calls = {"torch": torch_call, "ai3": lambda: model(x)}
    for fn in calls.values():  # warm-up
        fn()
    times = {k: [] for k in calls}
    for _ in range(repeats):
        for k, fn in calls.items():
            times[k].append(timed(fn))
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = model.memory(shape)
    return {
        "model": name, "input_shape": list(shape), "relative_error": err,
        "convert_s": convert_s, "torch_ms": 1e3 * med["torch"], "ai3_ms": 1e3 * med["ai3"],
        "ratio": med["ai3"] / med["torch"],
        "peak_intermediate_bytes": mem["peak"], "total_intermediate_bytes": mem["total"],
        "workspace_bytes": mem["workspace"],
        "conv2d_algorithms": sorted({l.algorithm for l in model.layers if l.op == "conv2d"}),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
        ai3.set_num_threads(args.threads)
    shape = (1, 3, 224, 224)
    rows = [measure(name, shape, args.repeats) for name in args.models]

    mib = 1 << 20
    print(f"{'model':<14}{'torch ms':>10}{'ai3 ms':>10}{'ai3/torch':>11}{'rel err':>10}"
          f"{'peak MiB':>10}{'sum MiB':>10}{'peak/sum':>10}{'ws MiB':>8}")
    for r in rows:
        print(f"{r['model']:<14}{r['torch_ms']:>10.1f}{r['ai3_ms']:>10.1f}{r['ratio']:>11.2f}"
              f"{r['relative_error']:>10.1e}{r['peak_intermediate_bytes'] / mib:>10.1f}"
              f"{r['total_intermediate_bytes'] / mib:>10.1f}"
              f"{r['peak_intermediate_bytes'] / r['total_intermediate_bytes']:>10.2f}"
              f"{r['workspace_bytes'] / mib:>8.1f}")
    RESULTS.mkdir(exist_ok=True)
    out = {
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(), "ai3_threads": ai3.get_num_threads(),
        "repeats": args.repeats, "torch_version": torch.__version__, "results": rows,
    }
    (RESULTS / "models.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {RESULTS / 'models.json'}")


if __name__ == "__main__":
    main()
