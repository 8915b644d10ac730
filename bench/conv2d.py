"""conv2d: each ai3 algorithm's time over PyTorch's on the seed's four shapes,
or (--depthwise) on the depthwise layers of MobileNetV2 and EfficientNet-B0.

The seed's shapes: 3x3 convolutions with C_out = C_in, padding 1, stride 1,
at each batch size given. The depthwise layers: every distinct one of the
networks at 224x224 (groups = C_in = C_out, no bias), by default with
'direct' and 'guess' only. Measured in one process: ai3 and PyTorch calls
interleaved, after warm-up, median of the repeats. ai3 runs as a swapped
operation does in inference: its plan (prepared weights) made once and kept.
Also reports the workspace bytes each algorithm's plan needs, and how far
'guess' is from the best algorithm. Prints a table; writes
bench/results/conv2d.json (conv2d_depthwise.json) and, with matplotlib,
bench/results/conv2d.png.

    .venv/bin/python bench/conv2d.py [--batch 1 10] [--repeats 10] [--threads 2]
    .venv/bin/python bench/conv2d.py --depthwise [--nets mobilenet_v2] [--batch 1 8]
"""
import argparse
import json
import pathlib
import statistics
import time

import torch
import torch.nn.functional as F

import ai3
from ai3 import _core, _ops

SHAPES = {
    "early": (3, 224, 224),
    "early-middle": (64, 112, 112),
    "late-middle": (256, 28, 28),
    "late": (512, 14, 14),
}
# (channels, kernel, stride, padding, input size) of each distinct depthwise
# layer, in network order.
DEPTHWISE = {
    "mobilenet_v2": [(32, 3, 1, 1, 112), (96, 3, 2, 1, 112), (144, 3, 1, 1, 56),
                     (144, 3, 2, 1, 56), (192, 3, 1, 1, 28), (192, 3, 2, 1, 28),
                     (384, 3, 1, 1, 14), (576, 3, 1, 1, 14), (576, 3, 2, 1, 14),
                     (960, 3, 1, 1, 7)],
    "efficientnet_b0": [(32, 3, 1, 1, 112), (96, 3, 2, 1, 112), (144, 3, 1, 1, 56),
                        (144, 5, 2, 2, 56), (240, 5, 1, 2, 28), (240, 3, 2, 1, 28),
                        (480, 3, 1, 1, 14), (480, 5, 1, 2, 14), (672, 5, 1, 2, 14),
                        (672, 5, 2, 2, 14), (1152, 5, 1, 2, 7), (1152, 3, 1, 1, 7)],
}
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def conv_call(x, weight, bias, algorithm, stride=1, padding=1, groups=1):
    return lambda: _ops.conv2d(x, weight, bias, (stride, stride), (padding,) * 4, (1, 1),
                               groups, "zeros", algorithm)


def workspace_bytes(x, weight, bias, algorithm, stride=1, padding=1, groups=1):
    params = (stride, stride, *(padding,) * 4, 1, 1, groups, "zeros")
    plan = _core.plan("conv2d", algorithm, (weight, bias), params, tuple(x.shape))
    return _core.workspace_size(plan, tuple(x.shape)), _core.plan_algorithm(plan)


def measure(n, shape, algorithms, repeats, kernel=3, stride=1, padding=1, groups=1):
    """torch and each algorithm on input (n, *shape), C_out = C_in."""
    c, h, w = shape
    x = torch.randn(n, c, h, w)
    weight = torch.randn(c, c // groups, kernel, kernel) / (kernel * (c // groups) ** 0.5)
    bias = torch.randn(c) if groups == 1 else None
    conv = dict(stride=stride, padding=padding, groups=groups)
    calls = {"torch": lambda: F.conv2d(x, weight, bias, **conv)}
    calls.update({a: conv_call(x, weight, bias, a, **conv) for a in algorithms})
    expected = calls["torch"]()
    for algo in algorithms:
        err = (calls[algo]() - expected).abs().max().item()
        assert err < 1e-2 * expected.abs().max().item(), (shape, algo, err)
    times = {k: [] for k in calls}
    for _ in range(2):  # warm-up
        for fn in calls.values():
            fn()
    for _ in range(repeats):
        for k, fn in calls.items():
            times[k].append(timed(fn))
    medians = {k: statistics.median(v) for k, v in times.items()}
    row = {"n": n, "torch_ms": medians["torch"] * 1e3, "algorithms": {}}
    for algo in algorithms:
        ws, chosen = workspace_bytes(x, weight, bias, algo, **conv)
        row["algorithms"][algo] = {"ms": medians[algo] * 1e3,
                                   "ratio": medians[algo] / medians["torch"],
                                   "workspace_bytes": ws, "runs": chosen}
    return row


def depthwise(args):
    """The depthwise layers of args.nets, one table per network and batch."""
    algorithms = args.algorithms or ["direct", "guess"]
    rows = []
    for net in args.nets:
        for n in args.batch:
            print(f"\n{net}, N={n}: ms per call (ratio: ai3 / torch)")
            print(f"{'C':>5} {'k':>2} {'s':>2} {'HxW':>8} {'torch':>8} " +
                  " ".join(f"{a:>17}" for a in algorithms))
            total = {k: 0.0 for k in ["torch", *algorithms]}
            for c, k, s, p, size in DEPTHWISE[net]:
                row = measure(n, (c, size, size), algorithms, args.repeats, kernel=k, stride=s,
                              padding=p, groups=c)
                row.update(net=net, c=c, kernel=k, stride=s, padding=p, size=size)
                rows.append(row)
                total["torch"] += row["torch_ms"]
                cells = []
                for a in algorithms:
                    r = row["algorithms"][a]
                    total[a] += r["ms"]
                    cells.append(f"{r['ms']:8.3f} ({r['ratio']:5.2f})")
                print(f"{c:>5} {k:>2} {s:>2} {f'{size}x{size}':>8} {row['torch_ms']:8.3f} " +
                      " ".join(f"{x:>17}" for x in cells), flush=True)
            cells = [f"{total[a]:8.3f} ({total[a] / total['torch']:5.2f})" for a in algorithms]
            print(f"{'sum':>19} {total['torch']:8.3f} " + " ".join(f"{x:>17}" for x in cells))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "conv2d_depthwise.json").write_text(json.dumps(
        {"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=2))
    print(f"wrote {RESULTS / 'conv2d_depthwise.json'}")


def plot(rows, algorithms, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (bench/run.sh installs it)")
        return
    batches = sorted({r["n"] for r in rows})
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 4), squeeze=False)
    for ax, n in zip(axes[0], batches):
        sub = [r for r in rows if r["n"] == n]
        width = 0.8 / len(algorithms)
        for i, algo in enumerate(algorithms):
            ax.bar([j + i * width for j in range(len(sub))],
                   [r["algorithms"][algo]["ratio"] for r in sub], width, label=algo)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sub))])
        ax.set_xticklabels([r["shape"] for r in sub])
        ax.set_ylabel("time / PyTorch's (lower is better)")
        ax.set_title(f"conv2d 3x3, N={n}")
    axes[0][0].legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--algorithms", nargs="+", default=None)
    parser.add_argument("--depthwise", action="store_true",
                        help="the depthwise layers of --nets instead of the seed's shapes")
    parser.add_argument("--nets", nargs="+", default=["mobilenet_v2"], choices=list(DEPTHWISE))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    ai3.set_num_threads(args.threads)
    if args.depthwise:
        depthwise(args)
        return
    algorithms = args.algorithms or list(ai3.SUPPORTED_ALGORITHMS["conv2d"])

    rows = []
    print(f"ratios: ai3 time / PyTorch time, {args.threads} threads (lower is better)")
    for n in args.batch:
        for name, shape in SHAPES.items():
            row = {"shape": name, **measure(n, shape, algorithms, args.repeats)}
            rows.append(row)
            algos = row["algorithms"]
            concrete = [a for a in algos if a not in ("guess", "default")]
            best = min(concrete, key=lambda a: algos[a]["ratio"]) if concrete else None
            cells = "  ".join(f"{a} {algos[a]['ratio']:5.2f}x" for a in algorithms)
            line = f"N={n:<3} {name:<13} torch {row['torch_ms']:8.2f} ms   {cells}"
            if best:
                row["best"] = best
                line += f"   best {best}"
                if "guess" in algos:
                    row["guess_over_best"] = algos["guess"]["ms"] / algos[best]["ms"]
                    line += f" (guess->{algos['guess']['runs']}: {row['guess_over_best']:.2f}x best)"
            print(line, flush=True)
    print("\nworkspace bytes per plan:")
    for row in rows:
        cells = "  ".join(f"{a} {v['workspace_bytes']:>11,}" for a, v in row["algorithms"].items())
        print(f"N={row['n']:<3} {row['shape']:<13} {cells}")

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "conv2d.json").write_text(json.dumps(
        {"threads": args.threads, "torch": torch.__version__, "rows": rows}, indent=2))
    print(f"wrote {RESULTS / 'conv2d.json'}")
    plot(rows, algorithms, RESULTS / "conv2d.png")


if __name__ == "__main__":
    main()
