"""Plans: weights prepared once per swapped operation, and prepared again
when, and only when, the weights change."""
import gc

import torch
from torch import nn

import ai3
from ai3 import _ops

from conftest import assert_close


def _swapped(algorithm="smm"):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(4, 6, 3, padding=1), nn.Flatten(), nn.Linear(6 * 8 * 8, 5))
    ai3.swap_operation(nn.Conv2d, net, algorithm)
    ai3.swap_operation(nn.Linear, net, "gemm")
    return net.eval()


def _reference(net, x):
    conv, _, lin = net
    y = torch.nn.functional.conv2d(x, conv.weight, conv.bias, padding=1)
    return torch.nn.functional.linear(y.flatten(1), lin.weight, lin.bias)


def test_plan_is_kept_between_inference_calls():
    net = _swapped()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        net(x)
        (first,) = _ops._plans[id(net[0].weight)][2].values()
        net(torch.randn(3, 4, 8, 8))
        (again,) = _ops._plans[id(net[0].weight)][2].values()
        assert again is first
        assert id(net[2].weight) in _ops._plans


def test_in_place_weight_changes_are_seen():
    net = _swapped()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        net(x)
        net[0].weight.mul_(-2.0)  # as an optimizer step does, under no_grad
        net[2].bias.add_(1.0)
        assert_close(net(x), _reference(net, x))


def test_load_state_dict_is_seen():
    net, other = _swapped(), _swapped()
    with torch.no_grad():
        for p in other.parameters():
            p.normal_()
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        net(x)
        net.load_state_dict(other.state_dict())
        assert_close(net(x), _reference(other, x))


def test_optimizer_steps_are_seen_in_training():
    net = _swapped("direct").train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x = torch.randn(2, 4, 8, 8)
    for _ in range(3):
        opt.zero_grad()
        net(x).square().sum().backward()
        opt.step()
        with torch.no_grad():
            assert_close(net(x), _reference(net, x))


def test_no_plan_is_kept_while_training():
    net = _swapped()
    _ops.clear_plans()
    net(torch.randn(1, 4, 8, 8)).sum().backward()
    assert id(net[0].weight) not in _ops._plans


def test_clear_plans_after_changes_through_data():
    net = _swapped()
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        net(x)
        net[0].weight.data.mul_(3.0)  # invisible to the version counter
        ai3.clear_plans()
        assert_close(net(x), _reference(net, x))


def test_plans_die_with_their_weights():
    net = _swapped()
    with torch.no_grad():
        net(torch.randn(1, 4, 8, 8))
    key = id(net[0].weight)
    assert key in _ops._plans
    del net
    gc.collect()
    assert key not in _ops._plans


def test_algorithms_sharing_a_weight_keep_their_own_plans():
    torch.manual_seed(1)
    x, w, b = torch.randn(1, 4, 8, 8), torch.randn(6, 4, 3, 3), torch.randn(6)
    args = ((1, 1), (1, 1, 1, 1), (1, 1), 1, "zeros")
    want = torch.nn.functional.conv2d(x, w, b, padding=1)
    for _ in range(2):
        for algorithm in ("smm", "winograd"):
            assert_close(_ops.conv2d(x, w, b, *args, algorithm), want, algorithm)
    assert len(_ops._plans[id(w)][2]) == 2
