"""The fixed cost of calling a swapped module: tiny layers, where the compute
is negligible, timed against torch's own module in one process.

Each case builds a torch module and an ai3-swapped copy, then alternates
timing batches of calls of the two (median of rounds) and reports the
microseconds per call and the difference. Run in eval mode under
torch.no_grad() (inference) and, separately, with autograd recording
(training), since the two take different paths.

    python bench/call_overhead.py [--rounds 15] [--calls 2000] [--json out.json]
"""

import argparse
import json
import statistics
import time

import torch
from torch import nn

import ai3


def cases():
    yield "conv2d 1x4x8x8", nn.Conv2d(4, 4, 3, padding=1), (1, 4, 8, 8)
    yield "linear 1x16", nn.Linear(16, 16), (1, 16)
    yield "relu 1x64", nn.ReLU(), (1, 64)
    yield "maxpool2d 1x4x8x8", nn.MaxPool2d(2), (1, 4, 8, 8)
    yield "sigmoid 1x64", nn.Sigmoid(), (1, 64)


def per_call(fn, x, calls):
    start = time.perf_counter()
    for _ in range(calls):
        fn(x)
    return (time.perf_counter() - start) / calls * 1e6


def measure(torch_mod, ai3_mod, x, rounds, calls):
    for _ in range(3):  # warm up (plans, caches)
        per_call(torch_mod, x, calls // 10)
        per_call(ai3_mod, x, calls // 10)
    t, a = [], []
    for _ in range(rounds):
        t.append(per_call(torch_mod, x, calls))
        a.append(per_call(ai3_mod, x, calls))
    return statistics.median(t), statistics.median(a)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    print(f"{'case':<20} {'mode':<10} {'torch us':>9} {'ai3 us':>9} {'over us':>8}")
    for name, module, shape in cases():
        module.eval()
        swapped = nn.Sequential(module)
        ai3.swap_operation(type(module), swapped)
        torch_mod = nn.Sequential(module)
        x = torch.randn(shape)
        for mode in ("no_grad", "autograd"):
            xi = x.clone().requires_grad_(mode == "autograd")
            ctx = torch.no_grad() if mode == "no_grad" else torch.enable_grad()
            with ctx:
                t, a = measure(torch_mod, swapped, xi, args.rounds, args.calls)
            rows.append({"case": name, "mode": mode, "torch_us": t, "ai3_us": a,
                         "overhead_us": a - t})
            print(f"{name:<20} {mode:<10} {t:9.2f} {a:9.2f} {a - t:8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
