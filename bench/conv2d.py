"""conv2d: each ai3 algorithm's time over PyTorch's on the seed's four shapes.

3x3 convolutions with C_out = C_in, padding 1, measured in one process:
ai3 and PyTorch calls interleaved, after warm-up, median of the repeats.
Prints a table and writes bench/results/conv2d.json.

    .venv/bin/python bench/conv2d.py [--batch 1 10] [--repeats 10] [--threads 2]
"""
import argparse
import json
import pathlib
import statistics
import time

import torch
import torch.nn.functional as F

import ai3
from ai3 import _ops

SHAPES = {
    "early": (3, 224, 224),
    "early-middle": (64, 112, 112),
    "late-middle": (256, 28, 28),
    "late": (512, 14, 14),
}


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--algorithms", nargs="+", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ai3.set_num_threads(args.threads)
    algorithms = args.algorithms or list(ai3.SUPPORTED_ALGORITHMS["conv2d"])

    rows = []
    for n in args.batch:
        for name, (c, h, w) in SHAPES.items():
            x = torch.randn(n, c, h, w)
            weight = torch.randn(c, c, 3, 3)
            bias = torch.randn(c)
            calls = {"torch": lambda: F.conv2d(x, weight, bias, padding=1)}
            for algo in algorithms:
                calls[algo] = (lambda a: lambda: _ops.conv2d(
                    x, weight, bias, (1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros", a))(algo)
            expected = calls["torch"]()
            for algo in algorithms:
                err = (calls[algo]() - expected).abs().max().item()
                assert err < 1e-3 * expected.abs().max().item(), (name, algo, err)
            times = {k: [] for k in calls}
            for _ in range(2):  # warm-up
                for fn in calls.values():
                    fn()
            for _ in range(args.repeats):
                for k, fn in calls.items():
                    times[k].append(timed(fn))
            medians = {k: statistics.median(v) for k, v in times.items()}
            row = {"shape": name, "n": n, "torch_ms": medians["torch"] * 1e3}
            for algo in algorithms:
                row[algo + "_ms"] = medians[algo] * 1e3
                row[algo + "_ratio"] = medians[algo] / medians["torch"]
            rows.append(row)
            cells = "  ".join(f"{a} {row[a + '_ratio']:5.2f}x" for a in algorithms)
            print(f"N={n:<3} {name:<13} torch {row['torch_ms']:8.2f} ms   {cells}", flush=True)

    out = pathlib.Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "conv2d.json").write_text(json.dumps(
        {"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=2))
    print(f"ratios are ai3 time / PyTorch time (lower is better); wrote {out / 'conv2d.json'}")


if __name__ == "__main__":
    main()
