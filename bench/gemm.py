"""GEMM benchmark: builds and runs bench/gemm.c, prints a table of the GEMM
and one of the GEMM-based conv2d algorithms, writes bench/results/gemm.json
and bench/results/gemm.png.

    .venv/bin/python bench/gemm.py [--quick] [--repeats R]

See bench/README.md. OpenBLAS (for the comparison only) is loaded by the C
program with dlopen; matplotlib (for the plot only) is installed into the
running environment if missing.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUILD = os.path.join(ROOT, "build", "bench")
RESULTS = os.path.join(ROOT, "bench", "results")
IMPLS = ["openblas", "torch.mm", "avx512", "avx2", "generic"]


def build():
    subprocess.run(["cmake", "-S", ROOT, "-B", BUILD, "-DCMAKE_BUILD_TYPE=Release",
                    "-DAI3_BUILD_BENCH=ON", "-DAI3_BUILD_TESTS=OFF"],
                   check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["cmake", "--build", BUILD, "--target", "ai3_bench_gemm", "-j2"],
                   check=True, stdout=subprocess.DEVNULL)
    return os.path.join(BUILD, "ai3_bench_gemm")


def run(exe, args):
    env = dict(os.environ)
    # OpenBLAS's idle threads spin for a while after each call, which would
    # steal the core from the next contender of an interleaved round.
    env.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
    out = subprocess.run([exe] + args, check=True, stdout=subprocess.PIPE, env=env, text=True)
    return json.loads(out.stdout)


def time_torch(data, repeats):
    """torch.mm (the BLAS torch's CPU build carries, MKL in PyTorch's wheels)
    on every (dtype, shape, threads) of the C program's runs, as more runs:
    timed here, after the C program, the same number of rounds of at least
    20 ms each. Left out if torch is not installed."""
    try:
        import torch
    except ImportError:
        return
    import time
    keys = sorted({(r["dtype"], r["M"], r["N"], r["K"], r["conv"], r["threads"])
                   for r in data["runs"]})
    for dtype, M, N, K, conv, threads in keys:
        torch.set_num_threads(threads)
        dt = getattr(torch, dtype)
        a, b = torch.rand(M, K, dtype=dt) - 0.5, torch.rand(K, N, dtype=dt) - 0.5
        c = torch.empty(M, N, dtype=dt)
        torch.mm(a, b, out=c)
        gflops = []
        for _ in range(repeats):
            calls, t0 = 0, time.perf_counter()
            while True:
                torch.mm(a, b, out=c)
                calls += 1
                t = time.perf_counter() - t0
                if t >= 0.02:
                    break
            gflops.append(2.0 * M * N * K * calls / t / 1e9)
        data["runs"].append({"dtype": dtype, "M": M, "N": N, "K": K, "conv": conv,
                             "threads": threads, "impl": "torch.mm", "gflops": gflops})


def summarise(data):
    """Rows of the table: one per (dtype, shape, threads)."""
    cells = {}
    for r in data["runs"]:
        key = (r["dtype"], r["M"], r["N"], r["K"], r["conv"], r["threads"])
        g = r["gflops"]
        med = statistics.median(g)
        cells.setdefault(key, {})[r["impl"]] = {
            "median": med,
            # spread of the rounds around the median, as a fraction of it
            "spread": (max(g) - min(g)) / med if med else 0.0,
        }
    return cells


def print_table(data, cells):
    peak = data["peak"]
    print(f"kernels: {data['kernels']}")
    print(f"OpenBLAS: {data['openblas'] or 'not found'}")
    print(f"FMA peak GFLOP/s (1 thread, 2 threads): f32 {peak['f32']}, f64 {peak['f64']}")
    head = (f"{'dtype':8} {'M':>5} {'N':>6} {'K':>5} {'thr':>3} " +
            " ".join(f"{i:>9}" for i in IMPLS) +
            f" {'ai3/blas':>8} {'ai3/torch':>9} {'%peak':>6} {'torch%':>6} {'spread':>6}")
    print(head)
    print("-" * len(head))
    for key in sorted(cells, key=lambda k: (k[0], k[4], k[1] * k[2] * k[3], k[5])):
        dtype, M, N, K, conv, threads = key
        c = cells[key]
        vals = " ".join(f"{c[i]['median']:9.1f}" if i in c else f"{'-':>9}" for i in IMPLS)
        best = max((v["median"] for i, v in c.items() if i not in ("openblas", "torch.mm")),
                   default=0)
        ratio = f"{best / c['openblas']['median']:8.2f}" if "openblas" in c else f"{'-':>8}"
        tratio = f"{best / c['torch.mm']['median']:9.2f}" if "torch.mm" in c else f"{'-':>9}"
        p = peak["f32" if dtype == "float32" else "f64"][threads - 1]
        pct = f"{100 * best / p:6.0f}" if p else f"{'-':>6}"
        tpct = f"{100 * c['torch.mm']['median'] / p:6.0f}" if p and "torch.mm" in c else f"{'-':>6}"
        spread = max(v["spread"] for v in c.values())
        print(f"{dtype:8} {M:5d} {N:6d} {K:5d} {threads:3d} {vals} {ratio} {tratio} {pct} {tpct}"
              f" {spread:6.2f}" + ("  conv" if conv else ""))


def print_conv_table(data):
    """The GEMM-based conv2d algorithms: median GFLOP/s and the median of
    each round's share of the FMA peak measured just before it."""
    runs = data.get("conv_runs", [])
    if not runs:
        return
    print("\nconv2d float32, batch 1, 3x3, padding 1 (M = C_out, N = H*W, K = C_in*9): "
          "median GFLOP/s (% of the FMA peak of the same round)")
    print(f"implicit gemm's column kernel: {data.get('conv_kernel') or 'none (no AVX-512)'}")
    algos = list(dict.fromkeys(r["algorithm"] for r in runs))
    head = f"{'M':>5} {'N':>6} {'K':>5} {'thr':>3} " + " ".join(f"{a:>24}" for a in algos)
    print(head)
    print("-" * len(head))
    cells = {}
    for r in runs:
        share = [g / p for g, p in zip(r["gflops"], r["peak"]) if p]
        pct = f"({100 * statistics.median(share):3.0f}%)" if share else "(  -%)"
        cells.setdefault((r["M"], r["N"], r["K"], r["threads"]), {})[r["algorithm"]] = \
            f"{statistics.median(r['gflops']):.1f} {pct}"
    for key in sorted(cells, key=lambda k: (k[0] * k[1] * k[2], k[3])):
        print(f"{key[0]:5d} {key[1]:6d} {key[2]:5d} {key[3]:3d} " +
              " ".join(f"{cells[key].get(a, '-'):>24}" for a in algos))


def plot(data, cells, path):
    try:
        import matplotlib
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "matplotlib"], check=True)
        import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = ["float32", "float64"]
    fig, axes = plt.subplots(2, 2, figsize=(15, 9), squeeze=False)
    for row, dtype in enumerate(dtypes):
        for col, threads in enumerate([1, 2]):
            ax = axes[row][col]
            keys = sorted((k for k in cells if k[0] == dtype and k[5] == threads),
                          key=lambda k: (k[4], k[1] * k[2] * k[3]))
            labels = [f"{k[1]}x{k[2]}\nx{k[3]}" + (" conv" if k[4] else "") for k in keys]
            width = 0.8 / len(IMPLS)
            for j, impl in enumerate(IMPLS):
                xs = [i + (j - (len(IMPLS) - 1) / 2) * width for i in range(len(keys))]
                ys = [cells[k][impl]["median"] if impl in cells[k] else 0 for k in keys]
                ax.bar(xs, ys, width, label=impl)
            p = data["peak"]["f32" if dtype == "float32" else "f64"][threads - 1]
            if p:
                ax.axhline(p, color="black", linestyle="--", linewidth=1, label="FMA peak")
            ax.set_xticks(range(len(keys)))
            ax.set_xticklabels(labels, fontsize=7)
            ax.set_ylabel("GFLOP/s (median)")
            ax.set_title(f"{dtype}, {threads} thread{'s' if threads > 1 else ''}")
            if row == 0 and col == 0:
                ax.legend(fontsize=8)
    fig.suptitle("ai3 GEMM (M x N x K) per ISA vs OpenBLAS and torch.mm")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip 2048^3")
    ap.add_argument("--repeats", type=int, default=9, help="interleaved rounds per cell")
    args = ap.parse_args()
    exe = build()
    data = run(exe, (["--quick"] if args.quick else []) + ["--reps", str(args.repeats)])
    time_torch(data, args.repeats)
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, "gemm.json"), "w") as f:
        json.dump(data, f, indent=1)
    cells = summarise(data)
    print_table(data, cells)
    print_conv_table(data)
    plot(data, cells, os.path.join(RESULTS, "gemm.png"))
    print(f"wrote {os.path.join(RESULTS, 'gemm.json')} and gemm.png")


if __name__ == "__main__":
    main()
