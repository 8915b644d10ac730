"""Whole networks with every conv2d swapped to ai3's 'default': latency over
PyTorch eager's, batch 1, 224x224, random weights, inference.

The original and the swapped network (a deep copy) run interleaved in one
process, after warm-up; medians. Prints a table and writes
bench/results/swapped_models.json.

    .venv/bin/python bench/swapped_models.py [--models vgg16 resnet50] [--repeats 10]
"""
import argparse
import copy
import json
import pathlib
import statistics
import time

import torch
import torchvision
from torch import nn

import ai3

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["vgg16", "resnet50"])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--algorithm", default="default")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ai3.set_num_threads(args.threads)

    rows = []
    for name in args.models:
        torch.manual_seed(0)
        original = getattr(torchvision.models, name)(weights=None).eval()
        swapped = copy.deepcopy(original)
        ai3.swap_operation(nn.Conv2d, swapped, args.algorithm)
        x = torch.randn(1, 3, 224, 224)
        times = {"torch": [], "ai3": []}
        with torch.no_grad():
            want, got = original(x), swapped(x)
            err = ((got - want).abs().max() / want.abs().max()).item()
            for _ in range(2):
                original(x), swapped(x)
            for _ in range(args.repeats):
                for key, model in (("torch", original), ("ai3", swapped)):
                    start = time.perf_counter()
                    model(x)
                    times[key].append(time.perf_counter() - start)
        t, a = statistics.median(times["torch"]), statistics.median(times["ai3"])
        algos = sorted({m.algorithm for m in swapped.modules() if isinstance(m, ai3.swap.Conv2d)})
        rows.append({"model": name, "torch_ms": t * 1e3, "ai3_ms": a * 1e3, "ratio": a / t,
                     "relative_error": err, "algorithm": args.algorithm})
        print(f"{name:<10} torch {t * 1e3:8.1f} ms   ai3 ({', '.join(algos)}) {a * 1e3:8.1f} ms"
              f"   ratio {a / t:5.2f}x   rel. error {err:.1e}", flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "swapped_models.json").write_text(json.dumps(
        {"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=2))
    print(f"ratios are ai3 time / PyTorch time (lower is better); wrote "
          f"{RESULTS / 'swapped_models.json'}")


if __name__ == "__main__":
    main()
