"""A swapped network trains under DistributedDataParallel: 2 processes
(gloo on the CPU; NCCL on 2 GPUs), each with half of the global batch, end
with the weights of one process trained on the whole batch; and the example
launched with torchrun runs."""

import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import ai3
from ai3 import _ops

WORLD = 2
STEPS = 4
GLOBAL_BATCH = 8
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class Net(nn.Module):
    """conv2d, linear and every other swappable operation; its batch norm is
    frozen (eval mode: running statistics, trained affine parameters), as
    DDP does not share batch statistics between processes."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 8, 3, padding=1, groups=2, padding_mode="reflect", bias=False),
            nn.BatchNorm2d(8), nn.Hardswish(), nn.AvgPool2d(2, ceil_mode=True),
            nn.Conv2d(8, 12, 1), nn.SiLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())
        self.head = nn.Sequential(nn.Linear(48, 16), nn.GELU(), nn.Linear(16, 16),
                                  nn.Hardsigmoid(), nn.Linear(16, 16), nn.ReLU6(),
                                  nn.Linear(16, 16), nn.Sigmoid(), nn.Linear(16, 5))

    def forward(self, x):
        return self.head(self.features(x))


def swapped_net(device):
    torch.manual_seed(0)
    net = Net()
    with torch.no_grad():
        bn = net.features[4]
        bn.running_mean.uniform_(-0.3, 0.3)
        bn.running_var.uniform_(0.5, 1.5)
    for op in ai3.OPERATIONS:
        ai3.swap_operation(op, net)
    ai3.swap_conv2d(net, ["direct", "smm", "gemm"])
    assert sum(isinstance(m, ai3.swap.Swapped) for m in net.modules()) == 20
    net.to(device).train()
    net.features[4].eval()
    return net


def data(device):
    g = torch.Generator().manual_seed(1)
    xs = torch.randn(STEPS, GLOBAL_BATCH, 3, 12, 12, generator=g)
    ys = torch.randint(0, 5, (STEPS, GLOBAL_BATCH), generator=g)
    return xs.to(device), ys.to(device)


def train(net, xs, ys):
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    for x, y in zip(xs, ys):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()


def worker(rank, world, backend, port, out):
    """One process of the group: trains its slice of each global batch under
    DDP; rank 0 saves the weights to `out`."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two processes on the same cores
    if backend == "nccl":
        torch.cuda.set_device(rank)
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.deterministic = True
        device = torch.device("cuda", rank)
    else:
        device = torch.device("cpu")
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        net = swapped_net(device)
        ddp = nn.parallel.DistributedDataParallel(
            net, device_ids=[rank] if device.type == "cuda" else None)
        xs, ys = data(device)
        per_rank = GLOBAL_BATCH // world
        mine = slice(rank * per_rank, (rank + 1) * per_rank)
        train(ddp, xs[:, mine], ys[:, mine])
        if rank == 0:
            torch.save({k: v.cpu() for k, v in net.state_dict().items()}, out)
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_matches_one_process(backend, device, tmp_path):
    out = tmp_path / "ddp.pt"
    mp.spawn(worker, args=(WORLD, backend, free_port(), str(out)), nprocs=WORLD, join=True)
    ddp_weights = torch.load(out)

    net = swapped_net(device)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    train(net, *data(device))
    for name, want in net.state_dict().items():
        got, want = ddp_weights[name], want.cpu()
        if not want.is_floating_point():
            continue
        moved = (want - start[name].cpu()).norm()
        if "running" not in name:  # every trained weight moved
            assert moved > 0, name
        assert torch.linalg.vector_norm(got - want) <= 1e-5 * torch.linalg.vector_norm(want), \
            name


def test_ddp_gloo_matches_one_process(tmp_path):
    ddp_matches_one_process("gloo", torch.device("cpu"), tmp_path)


GPUS = torch.cuda.device_count() if torch.cuda.is_available() and _ops.cuda_backend()[0] else 0


@pytest.mark.cuda
@pytest.mark.skipif(GPUS < 2 or not dist.is_nccl_available(),
                    reason="needs 2 CUDA devices, NCCL and ai3's CUDA backend")
def test_ddp_nccl_matches_one_process(tmp_path, no_tf32):
    torch.backends.cudnn.deterministic = True
    try:
        ddp_matches_one_process("nccl", torch.device("cuda", 0), tmp_path)
    finally:
        torch.backends.cudnn.deterministic = False


def test_torchrun_example():
    """examples/ddp_train.py as the README launches it, with 2 processes."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         os.path.join(ROOT, "examples", "ddp_train.py"), "--steps", "3"],
        env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "step 3" in result.stdout, result.stdout
