"""CUDA conv2d: each ai3 algorithm against torch's nn.Conv2d on one GPU.

The seed's four 3x3 convolutions (stride 1, padding 1, C_out = C_in, no
bias) at batch sizes 1, 10, 64 (and, with --shapes, depthwise layers of
MobileNetV2, EfficientNet-B0 and ConvNeXt-T: --shapes depthwise for all), in float32 with TF32 off ('fp32'), float32
with TF32 on ('tf32') and float16 ('fp16'). Contestants: torch with
cudnn.benchmark off and on, and every algorithm of
ai3.list_algorithms('conv2d', 'cuda') in a swapped layer. Each ai3 output is
checked against torch's once before timing (max abs error over max |torch|).
GPU time per call: CUDA events around R back-to-back calls (R chosen so a
sample takes >= 2 ms, at most 50 calls), samples taken round-robin over the
contestants, median. Then the per-call overhead at N=1 (fp32): host time of
K back-to-back calls with a synchronize only outside the loop, and the wall
time with a synchronize at the end. Prints a table per mode and a summary of
the targets; writes everything to JSON with --json. An algorithm cuDNN
refuses is 'n/a'; any other failure of a cell is recorded and the run goes on.

    python bench/gpu_conv2d.py [--quick] [--json out.json]
        [--modes fp32,tf32,fp16] [--shapes early,late|depthwise] [--batches 1,10]
"""
import argparse
import json
import math
import statistics
import sys
import time

import torch
from torch import nn

import ai3

# name: (C, H, W, kernel, stride, groups); padding kernel // 2, C_out = C
SEED_SHAPES = {"early": (3, 224, 224, 3, 1, 1), "early-middle": (64, 112, 112, 3, 1, 1),
               "late-middle": (256, 28, 28, 3, 1, 1), "late": (512, 14, 14, 3, 1, 1)}
DEPTHWISE_SHAPES = {  # MobileNetV2 (3x3), EfficientNet-B0 (5x5), ConvNeXt-T (7x7)
    "dw3 32x112": (32, 112, 112, 3, 1, 32), "dw3 96x112 s2": (96, 112, 112, 3, 2, 96),
    "dw3 144x56": (144, 56, 56, 3, 1, 144), "dw3 576x14": (576, 14, 14, 3, 1, 576),
    "dw3 960x7": (960, 7, 7, 3, 1, 960), "dw5 240x28": (240, 28, 28, 5, 1, 240),
    "dw5 144x56 s2": (144, 56, 56, 5, 2, 144), "dw5 672x14": (672, 14, 14, 5, 1, 672),
    "dw7 96x56": (96, 56, 56, 7, 1, 96), "dw7 192x28": (192, 28, 28, 7, 1, 192),
    "dw7 384x14": (384, 14, 14, 7, 1, 384), "dw7 768x7": (768, 7, 7, 7, 1, 768)}
SHAPES = {**SEED_SHAPES, **DEPTHWISE_SHAPES}


def make_conv(shape):
    c, _, _, k, stride, groups = SHAPES[shape]
    return nn.Conv2d(c, c, k, stride=stride, padding=k // 2, groups=groups, bias=False)
MODES = ("fp32", "tf32", "fp16")
TOL = {"fp32": 1e-3, "tf32": 5e-3, "fp16": 1e-2}
SHORT = {"implicit gemm": "igemm", "implicit precomp gemm": "ipgemm", "winograd": "wino",
         "winograd nonfused": "winonf", "fft tiling": "fftt"}
OWN = ("direct", "smm")
TORCH_OFF, TORCH_ON = "torch", "torch bench"
MIN_SAMPLE_US, MAX_CALLS = 2000.0, 50


def set_mode(mode):
    """torch's flags for a mode (ai3 reads cuDNN's TF32 flag when it plans)."""
    tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.benchmark = False
    ai3.clear_plans()


def reason(e):
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def swapped(conv, algorithm):
    m = nn.Sequential(conv)  # the swap replaces m[0]; conv itself stays torch's
    ai3.swap_conv2d(m, algorithm)
    return m[0]


def gpu_us(layer, x, calls, bench):
    """Microseconds per call of `calls` back-to-back calls, by CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.backends.cudnn.benchmark = bench
    try:
        start.record()
        for _ in range(calls):
            layer(x)
        end.record()
        end.synchronize()
    finally:
        torch.backends.cudnn.benchmark = False
    return start.elapsed_time(end) * 1e3 / calls


def measure(contestants, x, samples):
    """{name: {'us', 'calls', 'samples_us'} or {'error'}} for (layer, bench) contestants."""
    out, live = {}, {}
    for name, (layer, bench) in contestants.items():
        try:
            for _ in range(2):  # warm-up (plans, torch's autotuning)
                gpu_us(layer, x, 1, bench)
            t = gpu_us(layer, x, 3, bench)
            calls = max(1, min(MAX_CALLS, math.ceil(MIN_SAMPLE_US / max(t, 1e-3))))
            n = samples if t < 50e3 else min(samples, 3)  # very slow: fewer samples
            live[name] = (layer, bench, calls, n)
            out[name] = {"calls": calls, "samples_us": []}
        except Exception as e:
            out[name] = {"error": reason(e)}
    for i in range(samples):
        names = list(live)
        names = names[i % len(names):] + names[:i % len(names)] if names else names
        for name in names:
            layer, bench, calls, n = live[name]
            if len(out[name]["samples_us"]) >= n:
                continue
            try:
                out[name]["samples_us"].append(gpu_us(layer, x, calls, bench))
            except Exception as e:
                out[name] = {"error": reason(e)}
                del live[name]
    for r in out.values():
        if "samples_us" in r:
            r["us"] = statistics.median(r["samples_us"])
    return out


def run_cell(mode, shape, n, algorithms, samples):
    c, h, w = SHAPES[shape][:3]
    dtype = torch.float16 if mode == "fp16" else torch.float32
    cell = {"mode": mode, "shape": shape, "n": n, "input": [n, c, h, w], "results": {}}
    torch.manual_seed(0)
    conv = make_conv(shape).cuda().to(dtype)
    x = torch.randn(n, c, h, w, device="cuda", dtype=dtype)
    ref = conv(x).float()
    scale = ref.abs().max().item()
    contestants = {TORCH_OFF: (conv, False), TORCH_ON: (conv, True)}
    res = cell["results"]
    for name in contestants:
        res[name] = {"status": "ok"}
    for algo in algorithms:  # correctness first
        r = res[algo] = {}
        try:
            layer = swapped(conv, algo)
            err = ((layer(x).float() - ref).abs().max().item()) / max(scale, 1e-30)
            r["rel_err"] = err
            r["status"] = "ok" if err <= TOL[mode] else "MISMATCH"  # (NaN: mismatch)
            contestants[algo] = (layer, False)
        except ai3.UnsupportedError as e:
            r.update(status="n/a", reason=reason(e))
        except Exception as e:
            r.update(status="error", reason=reason(e))
    del ref
    for name, m in measure(contestants, x, samples).items():
        res[name].update(m)
        if "error" in m:
            res[name].update(status="error", reason=m.pop("error"))
    t_off, t_on = res[TORCH_OFF].get("us"), res[TORCH_ON].get("us")
    for name, r in res.items():
        if "us" in r and t_off and t_on:
            r["vs_torch"], r["vs_torch_bench"] = r["us"] / t_off, r["us"] / t_on

    def best(names):
        ok = [(res[k]["us"], k) for k in names if res[k].get("status") == "ok" and "us" in res[k]]
        return min(ok) if ok else (None, None)
    cell["best_ai3_us"], cell["best_ai3"] = best(algorithms)
    cell["own_best_us"], cell["own_best"] = best([a for a in algorithms if a in OWN])
    cell["cudnn_best_us"], cell["cudnn_best"] = best(
        [a for a in algorithms if a not in OWN] + [TORCH_OFF, TORCH_ON])
    if cell["best_ai3_us"] and t_off and t_on:
        cell["best_vs_torch"] = cell["best_ai3_us"] / t_off
        cell["best_vs_torch_bench"] = cell["best_ai3_us"] / t_on
    if cell["own_best_us"] and cell["cudnn_best_us"]:
        cell["own_vs_cudnn"] = cell["own_best_us"] / cell["cudnn_best_us"]
    del conv, x, contestants
    return cell


def overhead(shape, rounds, calls):
    """Host and wall µs per call at N=1, fp32: ai3 'guess' (and 'smm', ai3's own
    kernel) vs torch (benchmark off)."""
    set_mode("fp32")
    c, h, w = SHAPES[shape][:3]
    torch.manual_seed(0)
    conv = make_conv(shape).cuda()
    x = torch.randn(1, c, h, w, device="cuda")
    fns = {"torch": conv, "ai3": swapped(conv, "guess"), "smm": swapped(conv, "smm")}
    host, wall = {k: [] for k in fns}, {k: [] for k in fns}
    for i in range(rounds + 2):  # the first two rounds warm up
        for k in (("torch", "ai3", "smm") if i % 2 else ("smm", "ai3", "torch")):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for _ in range(calls):
                fns[k](x)
            t1 = time.perf_counter()
            torch.cuda.synchronize()
            t2 = time.perf_counter()
            if i >= 2:
                host[k].append((t1 - t0) / calls * 1e6)
                wall[k].append((t2 - t0) / calls * 1e6)
    r = {"shape": shape, "n": 1, "mode": "fp32", "calls": calls, "rounds": rounds}
    for k in fns:
        r[f"{k}_host_us"], r[f"{k}_wall_us"] = statistics.median(host[k]), statistics.median(wall[k])
    r["host_over_us"] = r["ai3_host_us"] - r["torch_host_us"]
    r["wall_over_us"] = r["ai3_wall_us"] - r["torch_wall_us"]
    r["smm_host_over_us"] = r["smm_host_us"] - r["torch_host_us"]
    del conv, x, fns
    return r


def fmt_us(v):
    return "-" if v is None else f"{v:.1f}" if v < 1e4 else f"{v:.0f}"


def print_table(mode, cells, algorithms):
    cols = [TORCH_OFF, TORCH_ON] + algorithms
    heads = ["torch", "t.bench"] + [SHORT.get(a, a) for a in algorithms]
    print(f"\n== {mode}: µs per call (GPU time); /torch and /bench: ratio to torch with "
          f"cudnn.benchmark off / on")
    print(f"{'shape':<13}{'N':>3} {'':<7}" + "".join(f"{h:>9}" for h in heads)
          + f"{'best ai3':>10}{'own/cuDNN':>10}")
    for cell in cells:
        if "skipped" in cell or "error" in cell:
            print(f"{cell['shape']:<13}{cell['n']:>3}  {cell.get('skipped') or cell['error']}")
            continue
        res = cell["results"]
        for line, key in (("us", "us"), ("/torch", "vs_torch"), ("/bench", "vs_torch_bench")):
            vals = []
            for name in cols:
                r = res[name]
                if r.get("status") in ("n/a", "MISMATCH", "error") and line == "us":
                    vals.append(r["status"])
                elif key not in r or (line != "us" and name in (TORCH_OFF, TORCH_ON)):
                    vals.append("" if line != "us" else "-")
                else:
                    vals.append(fmt_us(r[key]) if line == "us" else f"{r[key]:.2f}")
            b = cell.get("best_ai3")
            extra = {"us": (SHORT.get(b, b) or "-", f"{cell['own_vs_cudnn']:.2f}"
                            if "own_vs_cudnn" in cell else "-"),
                     "/torch": (f"{cell['best_vs_torch']:.2f}" if "best_vs_torch" in cell else "", ""),
                     "/bench": (f"{cell['best_vs_torch_bench']:.2f}"
                                if "best_vs_torch_bench" in cell else "", "")}[line]
            label = f"{cell['shape']:<13}{cell['n']:>3}" if line == "us" else " " * 16
            print(f"{label} {line:<7}" + "".join(f"{v:>9}" for v in vals)
                  + f"{extra[0]:>10}{extra[1]:>10}")


def targets(cells, over):
    """[(target, met, detail)] of the four targets."""
    done = [c for c in cells if "results" in c]
    out = []

    def worst(items, what):
        items = [i for i in items if i[0] is not None]
        if not items:
            return None, "no data"
        v, where = max(items)
        if v == float("inf"):
            return v, f"no ok result at {where}"
        return v, f"worst {what} {v:.3f} at {where}"
    guess = [(c["results"]["guess"].get("vs_torch") if c["results"].get("guess", {}).get(
        "status") == "ok" else float("inf"), f"{c['mode']} {c['shape']} N={c['n']}") for c in done]
    v, d = worst(guess, "guess/torch")
    out.append(("guess within 5% of torch (benchmark off), every cell", v is not None and v <= 1.05, d))
    best = [(c.get("best_vs_torch", float("inf")), f"{c['mode']} {c['shape']} N={c['n']}")
            for c in done]
    v, d = worst(best, "best ai3/torch")
    vb, db = worst([(c.get("best_vs_torch_bench"), f"{c['mode']} {c['shape']} N={c['n']}")
                    for c in done], "vs torch bench")
    out.append(("best ai3 no slower than torch (benchmark off; 2% noise allowance)",
                v is not None and v <= 1.02, d + ("" if vb is None else f"; {db}")))
    own = [(c.get("own_vs_cudnn", float("inf")), f"{c['shape']} N={c['n']}")
           for c in done if c["mode"] == "fp32"]
    v, d = worst(own, "own best/cuDNN best")
    out.append(("own direct/smm within 2x of cuDNN's best, fp32", v is not None and v <= 2.0, d))
    h = [(o.get("host_over_us"), o["shape"]) for o in over if "host_over_us" in o]
    v, d = worst(h, "host overhead µs")
    out.append(("host overhead over torch <= 10 µs per call, N=1", v is not None and v <= 10.0, d))
    return out


def csv(kind):
    return lambda s: [kind(v.strip()) for v in s.split(",") if v.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="N in 1,10, fewer samples")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--modes", type=csv(str), default=list(MODES))
    parser.add_argument("--shapes", type=csv(str), default=list(SEED_SHAPES),
                        help="names from SHAPES, or 'depthwise' for all depthwise layers")
    parser.add_argument("--batches", type=csv(int), default=None)
    parser.add_argument("--samples", type=int, default=None, help="per contestant (9; quick 5)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds for the cells; later ones are skipped (200; quick 45)")
    args = parser.parse_args()
    if args.shapes == ["depthwise"]:
        args.shapes = list(DEPTHWISE_SHAPES)
    bad = [m for m in args.modes if m not in MODES] + [s for s in args.shapes if s not in SHAPES]
    if bad:
        parser.error(f"unknown mode or shape: {', '.join(bad)}")
    batches = args.batches or ([1, 10] if args.quick else [1, 10, 64])
    samples = args.samples or (5 if args.quick else 9)
    budget = args.budget or (45.0 if args.quick else 200.0)
    backends = ai3.backends()
    algorithms = ai3.list_algorithms("conv2d", "cuda")
    if not torch.cuda.is_available() or not algorithms:
        print(f"gpu_conv2d: no CUDA device present (torch sees {torch.cuda.device_count()} GPUs; "
              f"ai3 CUDA backend: {backends['cuda']['detail']}); nothing to measure.")
        return 0
    header = {"benchmark": "gpu_conv2d", "gpu": torch.cuda.get_device_name(),
              "torch_version": torch.__version__, "cudnn_version": torch.backends.cudnn.version(),
              "ai3_version": ai3.__version__, "ai3_backends": backends, "algorithms": algorithms,
              "samples": samples, "batches": batches, "quick": args.quick,
              "tolerances": TOL, "min_sample_us": MIN_SAMPLE_US, "max_calls": MAX_CALLS}
    print(f"{header['gpu']}, torch {torch.__version__}, cuDNN {header['cudnn_version']}, "
          f"ai3 {ai3.__version__}: {', '.join(algorithms)}")
    start = time.perf_counter()
    cells, over = [], []
    with torch.no_grad():
        for mode in args.modes:
            set_mode(mode)
            mode_cells = []
            for shape in args.shapes:
                for n in batches:
                    if time.perf_counter() - start > budget:
                        cell = {"mode": mode, "shape": shape, "n": n,
                                "skipped": f"skipped: past the {budget:.0f} s budget"}
                    else:
                        try:
                            cell = run_cell(mode, shape, n, algorithms, samples)
                        except Exception as e:  # (the cell, not the run)
                            cell = {"mode": mode, "shape": shape, "n": n, "error": reason(e)}
                    mode_cells.append(cell)
                    torch.cuda.empty_cache()
            set_mode(mode)
            print_table(mode, mode_cells, algorithms)
            cells += mode_cells
        print("\n== per-call overhead, N=1, fp32, guess vs torch (benchmark off): µs per call")
        print(f"{'shape':<13}{'torch host':>11}{'ai3 host':>10}{'over':>7}"
              f"{'torch wall':>12}{'ai3 wall':>10}{'over':>7}{'smm host':>10}{'over':>7}")
        for shape in ("late", "early-middle"):
            try:
                o = overhead(shape, 5 if args.quick else 15, 200)
                print(f"{shape:<13}{o['torch_host_us']:>11.1f}{o['ai3_host_us']:>10.1f}"
                      f"{o['host_over_us']:>7.1f}{o['torch_wall_us']:>12.1f}"
                      f"{o['ai3_wall_us']:>10.1f}{o['wall_over_us']:>7.1f}"
                      f"{o['smm_host_us']:>10.1f}{o['smm_host_over_us']:>7.1f}")
            except Exception as e:
                o = {"shape": shape, "error": reason(e)}
                print(f"{shape:<13}  {o['error']}")
            over.append(o)
            torch.cuda.empty_cache()
    goals = targets(cells, over)
    print("\n== targets")
    for what, met, detail in goals:
        print(f"  [{'met' if met else 'MISSED'}] {what}: {detail}")
    elapsed = time.perf_counter() - start
    print(f"({elapsed:.0f} s)")
    if args.json:
        out = dict(header, elapsed_s=elapsed, cells=cells, overhead=over,
                   targets=[{"target": w, "met": m, "detail": d} for w, m, d in goals])
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
