"""Where a converted network's GPU time goes: per-kernel times of
ai3.convert(net, cuda_graph=False) next to torch eager's, from
torch.profiler (CUPTI), for the networks of bench/gpu_models.py.

For each network, batch and dtype it prints the total kernel time per
forward of each, the wall time per forward, and the kernels that take the
most time (summed over a forward, with their number of launches).
Without a CUDA device it says so and exits 0.

    python bench/gpu_profile.py [--models efficientnet_b0,convnext_tiny]
        [--batches 1,32] [--dtypes fp32,fp16] [--top 15]
"""
import argparse
import collections

import torch
from torch.profiler import ProfilerActivity, profile

import ai3
from gpu_models import DTYPES, MODELS, build, gpu_ms, make_x

ITERS = 5


def kernels(fn):
    """{kernel name: (µs per forward, launches per forward)} over ITERS forwards."""
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(ITERS):
            fn()
        torch.cuda.synchronize()
    total = collections.defaultdict(lambda: [0.0, 0])
    for e in prof.events():
        if e.device_type == torch.autograd.DeviceType.CUDA:
            k = total[e.name]
            k[0] += e.time_range.elapsed_us()
            k[1] += 1
    return {n: (t / ITERS, c / ITERS) for n, (t, c) in total.items()}


def show(label, table, wall_ms, top):
    gpu = sum(t for t, _ in table.values())
    launches = sum(c for _, c in table.values())
    print(f"  {label}: kernels {gpu / 1e3:.3f} ms in {launches:.0f} launches, "
          f"forward {wall_ms:.3f} ms")
    for name, (t, c) in sorted(table.items(), key=lambda kv: -kv[1][0])[:top]:
        print(f"    {t:9.1f} us {c:5.0f}x  {name[:110]}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="efficientnet_b0,convnext_tiny")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--dtypes", default="fp32")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("gpu_profile: no CUDA device; nothing measured")
        return
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    for mode in args.dtypes.split(","):
        for name in args.models.split(","):
            assert name in MODELS, name
            net = build(name, DTYPES[mode])
            model = ai3.convert(net, cuda_graph=False)
            for n in map(int, args.batches.split(",")):
                x = make_x(n, DTYPES[mode])
                print(f"{name} {mode} batch {n}")
                with torch.no_grad():
                    for label, fn in (("torch eager", lambda: net(x)), ("ai3", lambda: model(x))):
                        show(label, kernels(fn), gpu_ms(fn, 20), args.top)
            del net, model
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
