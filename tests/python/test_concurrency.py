"""ai3 under threads and processes: swapped and converted models called from
many Python threads at once compute what one thread does; a process forked
after the parent ran ai3 (multiprocessing with fork, DataLoader workers)
computes with ai3 too; ai3.set_num_threads changed while another thread
computes is safe. Each holds for PyTorch's threads (the default executor)
and, in a fresh process, for ai3's own thread pool (AI3_THREAD_POOL=own)."""

import copy
import io
import multiprocessing
import os
import subprocess
import sys
import threading

import pytest
import torch
from torch import nn

import ai3

THREADS = 8
SHAPE = (2, 3, 20, 20)


class Net(nn.Module):
    """Every swappable operation, and some network operations for convert."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1, groups=4, padding_mode="reflect"), nn.Hardswish(),
            nn.MaxPool2d(2), nn.Conv2d(16, 32, 1), nn.SiLU(), nn.AvgPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 32, 3, stride=2, bias=False), nn.ReLU6(), nn.AdaptiveAvgPool2d(3),
            nn.Flatten())
        self.head = nn.Sequential(nn.Linear(32 * 9, 40), nn.GELU(), nn.Linear(40, 10),
                                  nn.Sigmoid())

    def forward(self, x):
        h = self.head(self.features(x))
        return torch.cat([h * torch.softmax(h, 1), h + h], 1)


def networks(seed=0):
    """(the torch network, the same swapped, the same converted)."""
    torch.manual_seed(seed)
    net = Net().eval()
    with torch.no_grad():  # batch norm statistics that are not the identity
        bn = net.features[1]
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 1.5)
    swapped = copy.deepcopy(net)
    for op in ai3.OPERATIONS:
        ai3.swap_operation(op, swapped)
    ai3.swap_conv2d(swapped, ["direct", "smm", "gemm", "implicit precomp gemm"])
    converted = ai3.convert(net, {"conv2d": ["winograd", "implicit gemm", "guess", "direct"]})
    return net, swapped, converted


def inputs(n, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(SHAPE, generator=g) for _ in range(n)]


def in_threads(fn, n_threads=THREADS):
    """fn(i) in n_threads threads started at once; the results by i, and
    every thread's exception re-raised."""
    barrier = threading.Barrier(n_threads)
    results, errors = [None] * n_threads, []

    def body(i):
        try:
            barrier.wait()
            results[i] = fn(i)
        except BaseException as e:  # re-raised in the test's thread
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a thread hangs"
    if errors:
        raise errors[0]
    return results


ROUNDS = 4


def test_swapped_and_converted_models_in_threads_match_one_thread():
    net, swapped, converted = networks()
    xs = inputs(THREADS * ROUNDS)

    def run(model, x):
        with torch.no_grad():
            return model(x)

    # one thread first: the reference
    want = {name: [run(m, x) for x in xs] for name, m in (("swapped", swapped),
                                                          ("converted", converted))}
    with torch.no_grad():
        torch_out = [net(x) for x in xs]
    for name in want:
        for got, ref in zip(want[name], torch_out):
            torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)

    def worker(i):
        # each thread alternates between the two models on its own inputs
        out = {"swapped": {}, "converted": {}}
        for r in range(ROUNDS):
            k = i * ROUNDS + r
            for name, m in (("swapped", swapped), ("converted", converted))[::1 - 2 * (i % 2)]:
                out[name][k] = run(m, xs[k])
        return out

    for result in in_threads(worker):
        for name, by_index in result.items():
            for k, got in by_index.items():
                assert torch.equal(got, want[name][k]), (name, k)


def test_swapped_model_trains_in_threads_like_one_thread():
    """Forward and backward with autograd in each thread (the autograd.Function
    path, plans not kept) give the gradients of one thread."""
    _, swapped, _ = networks()
    swapped.train()
    params = [p for p in swapped.parameters()]
    xs = inputs(THREADS, seed=2)

    def grads(x):
        y = swapped(x)
        return torch.autograd.grad(y.square().sum(), params + [x])

    want = [grads(x.requires_grad_()) for x in xs]
    got = in_threads(lambda i: grads(xs[i]))
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_set_num_threads_while_another_thread_computes():
    net, swapped, converted = networks()
    xs = inputs(6, seed=3)
    with torch.no_grad():
        want = [net(x) for x in xs]
    before = ai3.get_num_threads()
    stop = threading.Event()
    errors = []

    def changer():
        try:
            n = 0
            while not stop.is_set():
                ai3.set_num_threads(1 + n % 4)
                n += 1
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=changer)
    t.start()
    try:
        with torch.no_grad():
            for _ in range(4):
                for x, ref in zip(xs, want):
                    for model in (swapped, converted):
                        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)
    finally:
        stop.set()
        t.join(timeout=60)
        ai3.set_num_threads(before)
    assert not errors, errors
    assert ai3.get_num_threads() == before


# ---------------------------------------------------------------------------
# Processes
# ---------------------------------------------------------------------------


def _child_compute(conn, swapped, converted, x):
    # torch's own parallel operations hang in a forked child unless it runs
    # them on one thread (as DataLoader workers do); ai3's do not
    torch.set_num_threads(1)
    with torch.no_grad():
        out = (swapped(x), converted(x))
    buf = io.BytesIO()  # (not the tensors themselves: torch would share their memory)
    torch.save(out, buf)
    conn.send_bytes(buf.getvalue())
    conn.close()


def run_in_forked_child(swapped, converted, x):
    """swapped(x) and converted(x) computed in a child forked now."""
    ctx = multiprocessing.get_context("fork")
    parent_end, child_end = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_child_compute, args=(child_end, swapped, converted, x))
    child.start()
    child_end.close()
    if not parent_end.poll(120):
        child.kill()
        child.join()
        pytest.fail("the forked child did not finish (a hang in its thread pool?)")
    result = torch.load(io.BytesIO(parent_end.recv_bytes()))
    child.join(timeout=60)
    assert child.exitcode == 0
    return result


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_computes_after_the_parent():
    net, swapped, converted = networks()
    x = inputs(1, seed=4)[0]
    with torch.no_grad():  # the parent computes first: its threads are running
        want = (swapped(x), converted(x))
        torch.testing.assert_close(want[0], net(x), rtol=1e-4, atol=1e-4)
    for _ in range(2):  # and a second child after the first
        got = run_in_forked_child(swapped, converted, x)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    with torch.no_grad():  # the parent still computes
        assert torch.equal(swapped(x), want[0]) and torch.equal(converted(x), want[1])


class SwappedFeatures(torch.utils.data.Dataset):
    """Samples computed with ai3 in the DataLoader's workers."""

    def __init__(self, swapped, converted, xs):
        self.swapped, self.converted, self.xs = swapped, converted, xs

    def __len__(self):
        return len(self.xs)

    def __getitem__(self, i):
        with torch.no_grad():
            x = self.xs[i]
            return self.swapped(x)[0], self.converted(x)[0], os.getpid()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_dataloader_workers_compute_with_ai3():
    _, swapped, converted = networks()
    xs = inputs(8, seed=5)
    data = SwappedFeatures(swapped, converted, xs)
    want = [data[i] for i in range(len(data))]  # the parent first
    loader = torch.utils.data.DataLoader(data, batch_size=2, num_workers=2, timeout=120,
                                         multiprocessing_context="fork")
    pids = set()
    got_s, got_c = [], []
    for s, c, pid in loader:
        got_s += list(s)
        got_c += list(c)
        pids.update(pid.tolist())
    assert len(pids) == 2 and os.getpid() not in pids  # two workers did the work
    for i, (s, c, _) in enumerate(want):
        assert torch.equal(got_s[i], s) and torch.equal(got_c[i], c), i


# The same in a fresh process with ai3's own pthread pool, whose workers a
# forked child does not have.
OWN_POOL_SCRIPT = r"""
import sys
sys.path.insert(0, sys.argv[1])
import ai3, torch
import test_concurrency as t
assert ai3.get_num_threads() == 2
t.test_forked_child_computes_after_the_parent()
t.test_dataloader_workers_compute_with_ai3()
t.test_swapped_and_converted_models_in_threads_match_one_thread()
t.test_set_num_threads_while_another_thread_computes()
print("ok")
"""


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_own_thread_pool_under_threads_and_fork():
    env = {**os.environ, "AI3_THREAD_POOL": "own", "AI3_NUM_THREADS": "2"}
    result = subprocess.run([sys.executable, "-c", OWN_POOL_SCRIPT, os.path.dirname(__file__)],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), \
        result.stdout[-2000:] + result.stderr[-4000:]
