"""Trains a network whose operations ai3 computes under
DistributedDataParallel, one process per CPU or GPU.

    torchrun --standalone --nproc_per_node=2 examples/ddp_train.py

On GPUs (one per process) it uses NCCL, else gloo. Swap before wrapping the
network in DDP: the swapped modules keep the original parameters, so DDP
and the optimizer see the same ones. Each process here trains on random
data of its own; a real job gives each one its shard of the data set
(torch.utils.data.DistributedSampler).
"""

import argparse
import os

import torch
import torch.distributed as dist
from torch import nn

import ai3


def network():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(32 * 16, 64), nn.ReLU(), nn.Linear(64, 10))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch", type=int, default=16, help="per process")
    args = parser.parse_args()

    local_rank = int(os.environ["LOCAL_RANK"])  # set by torchrun, as are RANK, WORLD_SIZE
    if torch.cuda.is_available() and torch.cuda.device_count() > local_rank:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    rank = dist.get_rank()

    torch.manual_seed(0)  # (DDP also copies rank 0's weights to the others)
    net = network()
    for op in ai3.OPERATIONS:  # conv2d, linear, relu, the pools, flatten
        ai3.swap_operation(op, net)
    ai3.swap_conv2d(net, ["direct", "smm"])  # or choose per layer
    net = nn.parallel.DistributedDataParallel(
        net.to(device), device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

    g = torch.Generator().manual_seed(1 + rank)
    for step in range(1, args.steps + 1):
        x = torch.randn(args.batch, 3, 32, 32, generator=g).to(device)
        y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()  # DDP averages the gradients over the processes
        optimizer.step()
        if rank == 0:
            print(f"step {step}: loss {loss.item():.4f}", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
