"""Whole networks on the CPU: ai3.convert against torch eager, ONNX Runtime and OpenVINO.

torchvision's resnet50, mobilenet_v2, vgg16, efficientnet_b0 (weights=None,
eval; BatchNorm statistics first set from one random training batch so the
outputs are not degenerate) at batch 1 and 8, 224x224, float32, N threads:

* torch eager: torch.set_num_threads(N), net(x) under torch.no_grad();
* ai3: ai3.set_num_threads(N), torch.set_num_threads(N), ai3.convert(net),
  model(x) under torch.no_grad();
* ONNX Runtime: the net exported once (torch.onnx.export, dynamo=False,
  opset 17, dynamic batch) into a temporary folder; CPUExecutionProvider,
  intra_op_num_threads=N, inter_op_num_threads=1, ORT_ENABLE_ALL;
* OpenVINO: ov.convert_model(net, example_input=x), compiled for 'CPU' with
  PERFORMANCE_HINT=LATENCY, INFERENCE_PRECISION_HINT=f32,
  INFERENCE_NUM_THREADS=N; infer() on one request.

The driver saves each net's weights (and the ONNX file) once. For each model
and batch it starts one worker process per runtime (this script with
--worker RUNTIME), which loads them, runs the net once on a fixed seeded
input (saving the output) and waits. The driver then has the workers time a
burst each in turn, never two at once, their order rotated every round, over
--rounds rounds: a burst is one call to warm the caches the previous burst
took, then at least --repeats calls and at least 1 s of them (at most 4 s,
never fewer than 3). A worker's threads are idle between its bursts, and the
driver pauses a moment between bursts so that no runtime's spinning threads
reach into the next one's. Bursts of all runtimes a few seconds apart share
more of a shared machine's slow and fast phases than one process per runtime
and round, run after each other, did. A cell's time is the median of its
bursts' medians. The driver reports each runtime's relative L2 error against
torch eager's output. The ratio is ai3 over the faster of ONNX Runtime and
OpenVINO; the target is <= 0.9 on every model and batch. A second ratio compares the 10th percentiles of each runtime's
calls over all rounds: on a shared virtual machine whose two vCPUs at times
share one core (every runtime's calls then take about twice as long, for
seconds at a time), the fast calls show what the code does on the cores it
was given. A runtime that is not installed is reported as missing
(`pip install .[bench]` installs both; the library never imports them).
About 12 minutes on 2 cores.

    .venv/bin/python bench/cpu_runtimes.py [--quick] [--json out.json] [--threads 2]
        [--rounds 8] [--repeats 5] [--models resnet50,vgg16] [--batches 1,8]
"""
import argparse
import importlib.metadata
import importlib.util
import json
import os
import pathlib
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np

MODELS = ("resnet50", "mobilenet_v2", "vgg16", "efficientnet_b0")
RUNTIMES = ("torch", "ai3", "onnxruntime", "openvino")
NEEDS = {"torch": ("torch",), "ai3": ("ai3",), "onnxruntime": ("onnxruntime", "onnx"),
         "openvino": ("openvino",)}
TARGET = 0.9
MIN_TIMED_S = 1.0  # a burst times at least --repeats calls and this many seconds
MAX_TIMED_S = 4.0  # a burst stops timing after this many seconds (at least 3 calls)
WORKER_TIMEOUT_S = 900  # a worker's setup or burst, at most
PAUSE_S = 0.2  # between bursts: longer than the runtimes' threads spin once idle
RESULTS = pathlib.Path(__file__).resolve().parent / "results"


def make_input(batch):
    return np.random.default_rng(batch).standard_normal((batch, 3, 224, 224), dtype=np.float32)


def build(name):
    """The torchvision net in eval mode, BatchNorm statistics set from one random batch."""
    import torch
    import torchvision
    torch.manual_seed(0)
    net = getattr(torchvision.models, name)(weights=None)
    bns = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average: after one batch, that batch's statistics
    if bns:
        net.train()
        with torch.no_grad():
            net(torch.randn(4, 3, 224, 224))
    return net.eval()


def load(name, weights):
    import torch
    import torchvision
    net = getattr(torchvision.models, name)(weights=None)
    net.load_state_dict(torch.load(weights))
    return net.eval()


# ---------------------------------------------------------------- worker
def prepare(runtime, args, x):
    """A call running the net once on x (a NumPy array) and returning the output as NumPy."""
    n = args.threads
    if runtime == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads, so.inter_op_num_threads = n, 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(args.onnx, so, providers=["CPUExecutionProvider"])
        return lambda: sess.run(None, {"x": x})[0]
    import torch
    torch.set_num_threads(n)
    net, xt = load(args.model, args.weights), torch.from_numpy(x)
    if runtime == "openvino":
        import openvino as ov
        compiled = ov.Core().compile_model(ov.convert_model(net, example_input=xt), "CPU", {
            "PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": n})
        req = compiled.create_infer_request()

        def call():
            req.infer({0: x}, share_inputs=True)
            return req.get_output_tensor(0).data
        return call
    if runtime == "ai3":
        import ai3
        ai3.set_num_threads(n)
        net = ai3.convert(net)

    def call():
        with torch.no_grad():
            return net(xt).numpy()
    return call


def cpu_ticks():
    """(busy ticks of the machine, ticks of this process), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            t = [int(v) for v in f.readline().split()[1:9]]
        with open("/proc/self/stat") as f:
            own = f.read().rsplit(")", 1)[1].split()
        return sum(t) - t[3] - t[4], sum(t), int(own[11]) + int(own[12])
    except (OSError, ValueError, IndexError):
        return None


def burst(call, repeats):
    """One warm-up call, then the timed calls: (ms per call, others' share of the CPU)."""
    call()
    samples, ticks = [], cpu_ticks()
    begin = time.perf_counter()
    while len(samples) < 3 or (
            (len(samples) < repeats or time.perf_counter() - begin < MIN_TIMED_S)
            and time.perf_counter() - begin < MAX_TIMED_S):
        t = time.perf_counter()
        call()
        samples.append(1e3 * (time.perf_counter() - t))
    end = cpu_ticks()
    # the share of the machine's CPU time other processes took while we were timing
    others = (max(0.0, (end[0] - ticks[0] - end[2] + ticks[2]) / (end[1] - ticks[1]))
              if ticks and end and end[1] > ticks[1] else None)
    return samples, others


def worker(args):
    """Loads the net, runs it once (saving the output), says it is ready,
    then times a burst for each line 'time' on its input, until 'quit'."""
    x = make_input(args.batch)
    start = time.perf_counter()
    call = prepare(args.worker, args, x)
    y = np.array(call(), copy=True)  # the first call (ai3 plans here)
    if args.save:
        np.save(args.save, y)
    print(json.dumps({"status": "ready", "setup_s": time.perf_counter() - start}), flush=True)
    for line in sys.stdin:
        if line.strip() != "time":
            break
        samples, others = burst(call, args.repeats)
        print(json.dumps({"status": "ok", "ms": statistics.median(samples),
                          "samples_ms": samples, "others_cpu": others}), flush=True)
    return 0


# ---------------------------------------------------------------- driver
def missing(runtime):
    lack = [m for m in NEEDS[runtime] if importlib.util.find_spec(m) is None]
    return f"missing ({', '.join(lack)} not installed)" if lack else None


def version(dist):
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


class Worker:
    """A runtime's worker process, answering one JSON line per request."""

    def __init__(self, runtime, name, batch, files, args, save, log):
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", runtime, "--model", name,
               "--batch", str(batch), "--threads", str(args.threads),
               "--repeats", str(args.repeats), "--weights", files["weights"],
               "--onnx", files.get("onnx", ""), "--save", save]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        self.log, self.err = log, open(log, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, text=True, env=env)
        self.ready = self.answer()

    def answer(self):
        """The worker's next JSON line, or an error (it exited, or took more
        than WORKER_TIMEOUT_S and was killed)."""
        watchdog = threading.Timer(WORKER_TIMEOUT_S, self.proc.kill)
        watchdog.start()
        try:
            for line in self.proc.stdout:
                if line.startswith("{"):
                    return json.loads(line)
        finally:
            watchdog.cancel()
        self.proc.wait()
        tail = (pathlib.Path(self.log).read_text().strip().splitlines() or ["no output"])[-1]
        return {"status": "error", "detail": f"exit {self.proc.returncode}: {tail}"}

    def burst(self):
        if self.ready["status"] == "error":  # (it exited)
            return self.ready
        try:
            self.proc.stdin.write("time\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        res = self.answer()
        if res["status"] != "ok":
            self.ready = res
        return res

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.err.close()


def run_model(name, runtimes, args, tmp):
    """Every batch of one model: [cell]."""
    import torch
    torch.set_num_threads(args.threads)
    files = {"weights": str(tmp / f"{name}.pt")}
    net = build(name)
    torch.save(net.state_dict(), files["weights"])
    if "onnxruntime" in runtimes:
        files["onnx"] = str(tmp / f"{name}.onnx")
        with warnings.catch_warnings():  # the legacy exporter's deprecation notice
            warnings.simplefilter("ignore")
            torch.onnx.export(net, torch.from_numpy(make_input(1)), files["onnx"], dynamo=False,
                              opset_version=17, input_names=["x"], output_names=["y"],
                              dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
    del net
    cells = []
    for batch in args.batches:
        cell = {"model": name, "batch": batch, "runs": {r: [] for r in runtimes}}
        workers = {}
        try:
            for r in runtimes:
                workers[r] = Worker(r, name, batch, files, args,
                                    str(tmp / f"{name}-{batch}-{r}.npy"), str(tmp / f"{r}.log"))
            cell["setup_s"] = {r: w.ready.get("setup_s") for r, w in workers.items()}
            for rnd in range(args.rounds):
                k = rnd % len(runtimes)
                for r in runtimes[k:] + runtimes[:k]:
                    time.sleep(PAUSE_S)
                    res = workers[r].burst()
                    cell["runs"][r].append(res)
                    print(f"  {name} N={batch} round {rnd + 1}: {r:<12} {res['ms']:9.1f} ms"
                          f"  (other processes: {fmt(res['others_cpu'], '.0%')} CPU)"
                          if res["status"] == "ok" else
                          f"  {name} N={batch} round {rnd + 1}: {r:<12} {res['detail']}",
                          flush=True)
        finally:
            for w in workers.values():
                w.close()
        ref = tmp / f"{name}-{batch}-torch.npy"
        ref = np.load(ref).astype(np.float64) if ref.exists() else None
        cell["ms"], cell["p10_ms"], cell["rel_err"] = {}, {}, {}
        for r, runs in cell["runs"].items():
            ok = [v["ms"] for v in runs if v["status"] == "ok"]
            if ok:
                cell["ms"][r] = statistics.median(ok)
                calls = sorted(t for v in runs if v["status"] == "ok" for t in v["samples_ms"])
                cell["p10_ms"][r] = calls[len(calls) // 10]
            out = tmp / f"{name}-{batch}-{r}.npy"
            if r != "torch" and ref is not None and out.exists():
                y = np.load(out).astype(np.float64)
                cell["rel_err"][r] = float(np.linalg.norm(y - ref) / np.linalg.norm(ref))
        for key, ms in (("ratio", cell["ms"]), ("ratio_p10", cell["p10_ms"])):
            others = [ms[r] for r in ("onnxruntime", "openvino") if r in ms]
            cell[key] = ms["ai3"] / min(others) if others and "ai3" in ms else None
        cell["max_others_cpu"] = max((v["others_cpu"] for runs in cell["runs"].values()
                                      for v in runs if v.get("others_cpu") is not None),
                                     default=None)
        cells.append(cell)
    for f in tmp.iterdir():
        f.unlink()
    return cells


def fmt(v, spec=".1f"):
    return "n/a" if v is None else format(v, spec)


def print_table(cells, status):
    print("\nms per forward, median of the bursts; ai3 / fastest = ai3 over min(onnxruntime, "
          "openvino);\np10 = the same ratio of the 10th percentiles of all calls; "
          "others' CPU = the most CPU\nother processes took during a run's timing\n")
    print("| model | batch | torch eager | ai3 | onnxruntime | openvino | ai3 / fastest | p10 | "
          "max rel err | others' CPU |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in cells:
        ms = [fmt(c["ms"].get(r)) if r not in status else "missing" for r in RUNTIMES]
        err = max(c["rel_err"].values(), default=None)
        print(f"| {c['model']} | {c['batch']} | {' | '.join(ms)} | {fmt(c['ratio'], '.2f')} | "
              f"{fmt(c['ratio_p10'], '.2f')} | {fmt(err, '.1e')} | {fmt(c['max_others_cpu'], '.0%')} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="resnet50 and mobilenet_v2, batch 1, 3 rounds")
    parser.add_argument("--models", type=lambda s: s.split(","), default=None)
    parser.add_argument("--batches", type=lambda s: [int(v) for v in s.split(",")], default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=None, help="8; --quick 3")
    parser.add_argument("--repeats", type=int, default=5,
                        help=f"timed calls per burst, at least (more within {MIN_TIMED_S:.0f} s, "
                             f"fewer past {MAX_TIMED_S:.0f} s; never fewer than 3)")
    parser.add_argument("--json", default=str(RESULTS / "cpu_runtimes.json"))
    parser.add_argument("--worker", choices=RUNTIMES, help=argparse.SUPPRESS)
    for a in ("--model", "--weights", "--onnx", "--save"):
        parser.add_argument(a, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)
    args.models = args.models or (["resnet50", "mobilenet_v2"] if args.quick else list(MODELS))
    args.batches = args.batches or ([1] if args.quick else [1, 8])
    args.rounds = args.rounds or (3 if args.quick else 8)
    if [m for m in args.models if m not in MODELS]:
        parser.error(f"models are {', '.join(MODELS)}")
    status = {r: s for r in RUNTIMES if (s := missing(r))}
    runtimes = [r for r in RUNTIMES if r not in status]
    versions = {d: version(d) for d in ("torch", "torchvision", "aithree", "onnxruntime",
                                        "openvino", "onnx")}
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        names = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if "model name" in l]
        cpu = names[0] if names else cpu
    print(f"{cpu}, {os.cpu_count()} CPUs, {args.threads} threads; "
          + ", ".join(f"{d} {v or 'missing'}" for d, v in versions.items()))
    for r, s in status.items():
        print(f"{r}: {s}")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # still remove the temporary files
    start = time.perf_counter()
    cells = []
    with tempfile.TemporaryDirectory(prefix="ai3_cpu_runtimes_") as tmp:
        for name in args.models:
            cells += run_model(name, runtimes, args, pathlib.Path(tmp))
    print_table(cells, status)
    worst = {r: max((c["rel_err"][r] for c in cells if r in c["rel_err"]), default=None)
             for r in RUNTIMES[1:]}
    print("\nmax relative L2 error against torch eager: "
          + ", ".join(f"{r} {fmt(v, '.1e') if r not in status else 'missing'}"
                      for r, v in worst.items()))
    ratios = [c["ratio"] for c in cells]
    met = None if not cells or None in ratios else all(v <= TARGET for v in ratios)
    detail = "no data" if met is None else f"worst {max(ratios):.2f}" + "".join(
        f"; {c['model']} N={c['batch']} {c['ratio']:.2f}" for c in cells if c["ratio"] > TARGET)
    print(f"[{'n/a' if met is None else 'met' if met else 'MISSED'}] ai3.convert <= {TARGET}x "
          f"the faster runtime on every model and batch: {detail}")
    p10 = [c["ratio_p10"] for c in cells if c["ratio_p10"] is not None]
    if p10:
        print(f"10th percentiles: worst {max(p10):.2f}"
              + "".join(f"; {c['model']} N={c['batch']} {c['ratio_p10']:.2f}" for c in cells
                        if c["ratio_p10"] is not None and c["ratio_p10"] > TARGET))
    elapsed = time.perf_counter() - start
    print(f"({elapsed:.0f} s)")
    out = {"benchmark": "cpu_runtimes", "cpu": cpu, "cpus": os.cpu_count(),
           "threads": args.threads, "versions": versions, "missing": status,
           "models": args.models, "batches": args.batches, "rounds": args.rounds,
           "repeats": args.repeats, "quick": args.quick, "elapsed_s": elapsed,
           "target": {"ratio": TARGET, "met": met, "detail": detail},
           "max_rel_err": worst, "cells": cells}
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
