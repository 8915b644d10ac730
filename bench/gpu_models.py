"""Whole networks on a GPU: ai3.convert against torch eager and torch's own CUDA graph.

torchvision's resnet50, mobilenet_v2, vgg16, efficientnet_b0, convnext_tiny
(weights=None, eval, on CUDA) at batch 1 and 32, 224x224, float32 with TF32
off ('fp32') and float16 ('fp16': net.half(), half inputs); cudnn.benchmark
off (torch's default). BatchNorm statistics are first set from one
training-mode batch: left at 0/1 they shrink mobilenet_v2's and
efficientnet_b0's activations below float16's range (the work is the same).
Contestants: torch eager (no_grad); torch's CUDA graph (warmed up on a side
stream, captured with torch.cuda.graph, timed as static_x.copy_(x) +
g.replay()); ai3.convert(net) (CUDA graphs) and ai3.convert(net,
cuda_graph=False); with --compile torch.compile(net, mode='max-autotune')
(slow). Each output is checked once (relative L2): in fp32 against torch
eager (over 1e-3 is a MISMATCH); in fp16 against the net in float32, where
ai3 over twice torch eager's own fp16 error + 1e-3 is a MISMATCH. GPU ms per forward: CUDA
events around R back-to-back calls (a sample >= 5 ms, R <= 50), samples
round-robin over the contestants, median. Peak memory: torch eager and
graph as torch.cuda.max_memory_allocated around a fresh run (weights and
input included), taken before any ai3 model exists; ai3 planned: the net's
parameter bytes + memory()['peak'] + memory()['workspace']. A failing cell
or contestant is recorded and the run goes on; cells past --budget seconds
are skipped. Without a CUDA device it says so and exits 0. About 2-3
minutes on an H200.

    python bench/gpu_models.py [--quick] [--json out.json] [--compile]
        [--models resnet50,vgg16] [--batches 1,32] [--dtypes fp32,fp16]
"""
import argparse
import copy
import gc
import json
import math
import statistics
import sys
import time

import torch
import torchvision

import ai3

MODELS = ("resnet50", "mobilenet_v2", "vgg16", "efficientnet_b0", "convnext_tiny")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
TOL = {"fp32": 1e-3}
EAGER, GRAPH, AI3, AI3_NOG, COMPILE = "eager", "torch graph", "ai3", "ai3 no graph", "compile"
AI3S = (AI3, AI3_NOG)
MIN_SAMPLE_MS, MAX_CALLS = 5.0, 50
MIB = 2.0 ** 20


def reason(e):
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0] if lines else ''}"


def free():
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()


def make_x(n, dtype):
    g = torch.Generator(device="cuda").manual_seed(n)
    return torch.randn(n, 3, 224, 224, device="cuda", dtype=dtype, generator=g)


def build(name, dtype):
    """The torchvision net on CUDA in eval mode, BatchNorm statistics set from one batch."""
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None).cuda()
    for m in net.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a cumulative average: after one batch, that batch's stats
    net.train()
    net(make_x(4, torch.float32))
    net.eval()
    return net.to(dtype)


def capture(net, x, after_warm_up=None):
    """torch's own CUDA graph of net on a static copy of x: (graph, static_x, out)."""
    static_x = x.clone()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            net(static_x)
    torch.cuda.current_stream().wait_stream(side)
    if after_warm_up:
        after_warm_up()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = net(static_x)
    return g, static_x, out


def peak_bytes(run):
    """torch.cuda.max_memory_allocated around a fresh run(): (bytes, what run returned)."""
    free()
    torch.cuda.reset_peak_memory_stats()
    kept = run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated(), kept


def torch_graph_peak(net, x):
    def run():
        g, static_x, out = capture(net, x, lambda: (free(), torch.cuda.reset_peak_memory_stats()))
        g.replay()
        return g, static_x, out
    return peak_bytes(run)[0]  # (the graph, its pool and tensors go when this returns)


def gpu_ms(fn, calls):
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls


def measure(contestants, samples):
    """{name: {'ms', 'calls', 'samples_ms'} or {'error'}}, samples taken round-robin."""
    out, live = {}, {}
    for name, fn in contestants.items():
        try:
            gpu_ms(fn, 3)  # warm-up (ai3: the op-by-op run, then the graph's capture)
            t = gpu_ms(fn, 3)
            live[name] = (fn, max(1, min(MAX_CALLS, math.ceil(MIN_SAMPLE_MS / max(t, 1e-3)))))
            out[name] = {"calls": live[name][1], "samples_ms": []}
        except Exception as e:
            out[name] = {"error": reason(e)}
    for i in range(samples):
        names = list(live)
        for name in names[i % len(names):] + names[:i % len(names)] if names else []:
            try:
                out[name]["samples_ms"].append(gpu_ms(*live[name]))
            except Exception as e:
                out[name] = {"error": reason(e)}
                del live[name]
    for r in out.values():
        if r.get("samples_ms"):
            r["ms"] = statistics.median(r["samples_ms"])
    return out


def rel_err(y, ref):
    return ((y.float() - ref).norm() / ref.norm()).item()


def run_group(name, mode, batches, args, deadline):
    """The cells of one net in one dtype; one conversion of each ai3 variant for all batches."""
    dtype = DTYPES[mode]
    cells = {n: {"model": name, "mode": mode, "n": n, "results": {}} for n in batches}
    net = models = compiled = None
    try:
        net = build(name, dtype)
        weights = sum(p.numel() * p.element_size() for p in net.parameters())
        for n, cell in cells.items():  # memory first, with nothing of ai3 allocated
            cell["weights_bytes"] = weights
            x = make_x(n, dtype)
            for key, fn in ((EAGER, lambda: peak_bytes(lambda: net(x))[0]),
                            (GRAPH, lambda: torch_graph_peak(net, x))):
                r = cell["results"][key] = {"status": "ok"}
                try:
                    r["peak_bytes"] = fn()
                except Exception as e:
                    r["memory_error"] = reason(e)
            del x
            free()
        models = {}
        for key, kw in ((AI3, {}), (AI3_NOG, {"cuda_graph": False})):
            t0 = time.perf_counter()
            try:
                models[key] = ai3.convert(net, **kw)
            except Exception as e:
                models[key] = reason(e)
            for cell in cells.values():
                cell[f"{key} convert_s"] = time.perf_counter() - t0
        print(f"{name} {mode}: ai3.convert {cells[batches[0]]['ai3 convert_s']:.1f} s, "
              f"without graphs {cells[batches[0]]['ai3 no graph convert_s']:.1f} s",
              file=sys.stderr, flush=True)
        if args.compile:
            compiled = torch.compile(net, mode="max-autotune", dynamic=False)
        for n, cell in cells.items():
            if time.perf_counter() > deadline:
                cell["skipped"] = f"skipped: past the {args.budget:.0f} s budget"
                continue
            try:
                run_cell(cell, net, models, compiled, weights, args.samples)
            except Exception as e:  # (the cell, not the run)
                cell["error"] = reason(e)
            free()
    except Exception as e:
        for cell in cells.values():
            cell.setdefault("error", reason(e))
    del net, models, compiled
    if args.compile:
        torch._dynamo.reset()
    free()
    return list(cells.values())


def run_cell(cell, net, models, compiled, weights, samples):
    n, mode, res = cell["n"], cell["mode"], cell["results"]
    x = make_x(n, DTYPES[mode])
    ref = net(x).float()
    torch_err = None
    if mode != "fp32":  # half outputs against float32, within twice torch's own error
        ref = copy.deepcopy(net).float()(x.float())
        torch_err = res[EAGER]["rel_err"] = rel_err(net(x), ref)
    contestants = {EAGER: lambda: net(x)}
    try:
        g, static_x, out = capture(net, x)
        g.replay()
        res[GRAPH]["rel_err"] = rel_err(out, ref)
        contestants[GRAPH] = lambda: (static_x.copy_(x), g.replay())
    except Exception as e:
        res[GRAPH].update(status="error", reason=reason(e))
    for key, m in models.items():
        r = res[key] = {}
        if isinstance(m, str):
            r.update(status="error", reason=f"convert: {m}")
            continue
        try:
            r["rel_err"] = max(rel_err(m(x), ref) for _ in range(2))  # op by op, then the graph
            limit = TOL[mode] if torch_err is None else 2 * torch_err + 1e-3
            r["status"] = "ok" if r["rel_err"] <= limit else "MISMATCH"  # (NaN: mismatch)
            mem = m.memory((n, 3, 224, 224))
            r["memory"] = mem
            r["peak_bytes"] = weights + mem["peak"] + mem["workspace"]
            contestants[key] = lambda m=m: m(x)
        except Exception as e:
            r.update(status="error", reason=reason(e))
    if compiled is not None:
        r = res[COMPILE] = {"status": "ok"}
        try:
            t0 = time.perf_counter()
            for _ in range(3):
                y = compiled(x)
            r["compile_s"] = time.perf_counter() - t0
            r["rel_err"] = rel_err(y, ref)
            del y
            contestants[COMPILE] = lambda: compiled(x)
        except Exception as e:
            r.update(status="error", reason=reason(e))
    for key, m in measure(contestants, samples).items():
        res[key].update(m)
        if "error" in m:
            res[key].update(status="error", reason=m.pop("error"))
    eager, graph = res[EAGER].get("ms"), res.get(GRAPH, {}).get("ms")
    for key in (AI3, AI3_NOG, COMPILE):
        r = res.get(key, {})
        if "ms" in r:
            r["vs_eager"] = r["ms"] / eager if eager else None
            r["vs_graph"] = r["ms"] / graph if graph else None


def fmt(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def print_table(mode, cells, with_compile):
    keys = [EAGER, GRAPH, AI3, AI3_NOG] + ([COMPILE] if with_compile else [])
    heads = ["eager", "t.graph", "ai3", "ai3 nog"] + (["compile"] if with_compile else [])
    print(f"\n== {mode}{' (TF32 off)' if mode == 'fp32' else ''}: ms per forward (GPU time, "
          f"median); ratios ai3/eager, ai3/t.graph (nog: ai3 without CUDA graphs); rel L2 error; "
          f"peak MiB (ai3: planned)")
    print(f"{'model':<16}{'N':>3}" + "".join(f"{h:>9}" for h in heads)
          + "".join(f"{h:>9}" for h in ("/eager", "/graph", "nog/eag", "nog/gr"))
          + f"{'err ai3':>10}{'err nog':>10}{'err torch':>10}" + "".join(
              f"{h:>8}" for h in ("M eager", "M graph", "M ai3", "weights")))
    for c in cells:
        head = f"{c['model']:<16}{c['n']:>3}"
        if "skipped" in c or "error" in c:
            print(f"{head}  {c.get('skipped') or c['error']}")
            continue
        res = c["results"]

        def ms(k):
            r = res.get(k, {})
            if r.get("status") == "error":
                return "error"
            return fmt(r.get("ms"), ".3f") + ("!" if r.get("status") == "MISMATCH" else "")
        row = head + "".join(f"{ms(k):>9}" for k in keys)
        row += "".join(f"{fmt(res.get(k, {}).get(q)):>9}" for k in AI3S
                       for q in ("vs_eager", "vs_graph"))
        row += "".join(f"{fmt(res.get(k, {}).get('rel_err'), '.1e'):>10}" for k in AI3S + (EAGER,))
        mib = [res.get(k, {}).get("peak_bytes") for k in (EAGER, GRAPH, AI3)]
        row += "".join(f"{fmt(b and b / MIB, '.0f'):>8}" for b in mib)
        print(row + f"{c.get('weights_bytes', 0) / MIB:>8.0f}")
        for k in keys:
            for what in ("reason", "memory_error"):
                if what in res.get(k, {}):
                    print(f"{'':<19}{k}: {what.replace('_', ' ')}: {res[k][what]}")
    print("('!': output MISMATCH: fp32 against torch eager; fp16 against torch in float32, "
          "over twice torch's own fp16 error ('err torch') + 1e-3)")


def targets(cells):
    """[(target, met or None for no data, detail)]."""
    out = []
    for n, key, limit, what in ((1, "vs_eager", 0.5, "torch eager"), (1, "vs_graph", 1.0,
                                "torch CUDA graph"), (32, "vs_eager", 1.0, "torch eager")):
        mine = [c for c in cells if c["n"] == n]
        items = []
        for c in mine:
            r = c.get("results", {}).get(AI3, {})
            where = f"{c['model']} {c['mode']}"
            v = r.get(key) if r.get("status") == "ok" else None
            items.append((math.inf if v is None else v, where, r.get("status") or
                          c.get("skipped") or c.get("error") or "no result"))
        goal = f"batch {n}: ai3 <= {limit:.1f}x {what}, every model"
        missed = [f"{w} {v:.2f}" if v != math.inf else f"{w} ({s})"
                  for v, w, s in items if v > limit]
        finite = max([i for i in items if i[0] != math.inf], default=None)
        detail = (f"worst {finite[0]:.2f} at {finite[1]}" if finite
                  else "no result" if items else "not measured")
        out.append((goal, not missed if items else None,
                    detail + (f"; missed: {', '.join(missed)}" if missed else "")))
    return out


def csv(s):
    return [v.strip() for v in s.split(",") if v.strip()]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="batch 1, fp32, fewer samples")
    parser.add_argument("--models", type=csv, default=list(MODELS))
    parser.add_argument("--batches", type=lambda s: [int(v) for v in csv(s)], default=None)
    parser.add_argument("--dtypes", type=csv, default=None, help="fp32,fp16")
    parser.add_argument("--compile", action="store_true",
                        help="also torch.compile(mode='max-autotune'): SLOW, minutes per model")
    parser.add_argument("--samples", type=int, default=None, help="per contestant (7; quick 5)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds; later cells are skipped (220; with --compile 1800)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    args.batches = args.batches or ([1] if args.quick else [1, 32])
    args.dtypes = args.dtypes or (["fp32"] if args.quick else list(DTYPES))
    args.samples = args.samples or (5 if args.quick else 7)
    args.budget = args.budget or (1800.0 if args.compile else 220.0)
    bad = [m for m in args.models if m not in MODELS] + [d for d in args.dtypes if d not in DTYPES]
    if bad:
        parser.error(f"unknown model or dtype: {', '.join(bad)}")
    backends = ai3.backends()
    if not torch.cuda.is_available() or not backends["cuda"]["available"]:
        print(f"gpu_models: no CUDA device present (torch sees {torch.cuda.device_count()} GPUs; "
              f"ai3 CUDA backend: {backends['cuda']['detail']}); nothing to measure.")
        return 0
    if args.compile:
        print("warning: --compile runs torch.compile(mode='max-autotune'): expect minutes per "
              "model, dtype and batch", file=sys.stderr)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = False
    header = {"benchmark": "gpu_models", "gpu": torch.cuda.get_device_name(),
              "torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
              "cudnn_version": torch.backends.cudnn.version(), "ai3_version": ai3.__version__,
              "ai3_backends": backends, "models": args.models, "batches": args.batches,
              "dtypes": args.dtypes, "samples": args.samples, "quick": args.quick,
              "compile": args.compile, "tolerances": TOL, "min_sample_ms": MIN_SAMPLE_MS,
              "max_calls": MAX_CALLS}
    print(f"{header['gpu']}, torch {torch.__version__}, cuDNN {header['cudnn_version']}, "
          f"ai3 {ai3.__version__}")
    start = time.perf_counter()
    deadline = start + args.budget
    cells = []
    with torch.no_grad():
        for mode in args.dtypes:
            mode_cells = []
            for name in args.models:
                if time.perf_counter() > deadline:
                    mode_cells += [{"model": name, "mode": mode, "n": n, "skipped":
                                    f"skipped: past the {args.budget:.0f} s budget"}
                                   for n in args.batches]
                    continue
                mode_cells += run_group(name, mode, args.batches, args, deadline)
            print_table(mode, mode_cells, args.compile)
            cells += mode_cells
    goals = targets(cells)
    print("\n== targets (ai3 = ai3.convert with CUDA graphs)")
    for what, met, detail in goals:
        print(f"  [{'n/a' if met is None else 'met' if met else 'MISSED'}] {what}: {detail}")
    bad = [f"{c['model']} {c['mode']} N={c['n']} {k}" for c in cells
           for k, r in c.get("results", {}).items() if r.get("status") == "MISMATCH"]
    print(f"  [{'MISSED' if bad else 'met'}] ai3 outputs match torch eager: "
          f"{', '.join(bad) if bad else 'every checked cell'}")
    elapsed = time.perf_counter() - start
    print(f"({elapsed:.0f} s)")
    if args.json:
        out = dict(header, elapsed_s=elapsed, cells=cells, targets=[
            {"target": w, "met": m, "detail": d} for w, m, d in goals])
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
