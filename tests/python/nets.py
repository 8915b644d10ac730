"""Small networks and tolerances shared by the Python API tests."""

import torch
import torch.nn.functional as F
from torch import nn

from conftest import TOLERANCES as TOL  # the one place tolerances are stated


def close(a, b, dtype=torch.float32):
    return torch.allclose(a, b, **TOL[dtype])


class ConvNet(nn.Module):
    """The network of the seed README's swap_operation example: two
    convolutions (the first gets 'direct', the second 'smm') on
    (N, 3, 224, 224) input."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1)
        self.conv2 = nn.Conv2d(16, 32, kernel_size=3, stride=1, padding=1)
        self.fc1 = nn.Linear(32 * 56 * 56, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), kernel_size=2, stride=2)
        x = F.max_pool2d(F.relu(self.conv2(x)), kernel_size=2, stride=2)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        return self.fc2(x)


class SevenOps(nn.Module):
    """Every operation ai3 computes, as modules, with non-default parameters,
    some in a nested Sequential. Input (N, 3, 16, 16)."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=True)
        self.block = nn.Sequential(
            nn.Conv2d(8, 8, 3, padding="same", padding_mode="reflect", groups=2, bias=False),
            nn.ReLU(inplace=True),
            nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        )
        self.adapt = nn.AdaptiveAvgPool2d((3, None))
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(8 * 3 * 10, 5)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.adapt(self.block(x))
        return self.fc(self.flatten(x))


SEVEN_SHAPE = (2, 3, 16, 16)


class Reordered(nn.Module):
    """Registration order (b, then a) differs from forward order (a, then b)."""

    def __init__(self):
        super().__init__()
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.a = nn.Conv2d(2, 4, 1)

    def forward(self, x):
        return self.b(self.a(x))


def randn(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=dtype)
