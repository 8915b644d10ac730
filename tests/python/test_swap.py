"""ai3.swap_operation / ai3.swap_conv2d: results, module behaviour, training
and torch.compile."""

import copy

import pytest
import torch
from torch import nn

import ai3
from ai3 import swap
from nets import SEVEN_SHAPE, TOL, ConvNet, SevenOps, close, randn

CONV_ALGOS = ai3.SUPPORTED_ALGORITHMS["conv2d"]


def test_seed_readme_swap_example():
    input_data = torch.randn(10, 3, 224, 224)
    orig = ConvNet()
    orig_out = orig(input_data)
    ai3.swap_operation(nn.Conv2d, orig, ["direct", "smm"])
    so_out = orig(input_data)
    assert torch.allclose(orig_out, so_out, atol=1e-6)
    assert orig.conv1.algorithm == "direct" and orig.conv2.algorithm == "smm"


OP_ARGS = [nn.Conv2d, "linear", nn.MaxPool2d, "avgpool2d", nn.AdaptiveAvgPool2d, "relu",
           nn.Flatten]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("conv_algo", CONV_ALGOS + ["default"])
def test_all_seven_ops_match_torch(dtype, conv_algo):
    torch.manual_seed(1)
    orig = SevenOps().to(dtype)
    swapped = copy.deepcopy(orig)
    for op in OP_ARGS:
        ai3.swap_operation(op, swapped, conv_algo if op is nn.Conv2d else None)
    kinds = {type(m) for m in swapped.modules()}
    seven = {ai3.selectors.op_name(op) for op in OP_ARGS}
    assert {swap.SWAPPED[op] for op in seven} <= kinds
    assert not any(type(m) in ai3.OPERATIONS.values() for m in swapped.modules())
    for seed in range(3):
        x = randn(SEVEN_SHAPE, dtype, seed)
        x_before = x.clone()
        assert close(swapped(x), orig(x), dtype)
        assert torch.equal(x, x_before)  # ReLU(inplace=True) leaves the input alone


def test_unbatched_input():
    orig = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.AvgPool2d(2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(0), nn.Linear(4, 2))
    swapped = copy.deepcopy(orig)
    for op in ai3.OPERATIONS:
        ai3.swap_operation(op, swapped)
    x = randn((3, 12, 12))
    assert close(swapped(x), orig(x))


@pytest.mark.parametrize("output_size", [1, (None, None)])
def test_adaptive_pool_to_one_by_one_takes_more_dimensions_as_torch(output_size):
    # torch's 1x1 adaptive average is the mean over the last two dimensions
    # of any input of 3 or more; any other output size needs 3-d or 4-d.
    torch_pool = nn.AdaptiveAvgPool2d(output_size)
    model = nn.Sequential(nn.AdaptiveAvgPool2d(output_size))
    ai3.swap_operation(nn.AdaptiveAvgPool2d, model)
    x = randn((2, 3, 4, 1, 1) if output_size != 1 else (2, 3, 4, 5, 6))
    x.requires_grad_(True)
    got, want = model(x), torch_pool(x)
    assert got.shape == want.shape and close(got, want)
    (grad,) = torch.autograd.grad(got.sum(), x)
    (want_grad,) = torch.autograd.grad(want.sum(), x)
    assert close(grad, want_grad)
    wide = randn((2, 3, 4, 5, 6))
    if output_size != 1:
        with pytest.raises(RuntimeError):
            torch_pool(wide)
        with pytest.raises(ValueError, match="adaptiveavgpool2d"):
            model(wide)


def test_swapped_module_is_the_original_class_with_shared_parameters():
    net = nn.Sequential(nn.Conv2d(2, 3, 3), nn.Linear(4, 4))
    conv_w, lin_b = net[0].weight, net[1].bias
    keys = list(net.state_dict())
    ai3.swap_conv2d(net, "smm")
    ai3.swap_operation(nn.Linear, net)
    assert isinstance(net[0], nn.Conv2d) and isinstance(net[0], swap.Conv2d)
    assert isinstance(net[1], nn.Linear)
    assert net[0].weight is conv_w and net[1].bias is lin_b
    assert list(net.state_dict()) == keys
    assert "algorithm='smm'" in repr(net[0])
    assert "algorithm='default'" in repr(net[1])


def test_swap_conv2d_is_swap_operation_conv2d():
    a, b = ConvNet(), ConvNet()
    ai3.swap_conv2d(a, ["smm", "direct"])
    ai3.swap_operation("conv2d", b, ["smm", "direct"])
    assert [m.algorithm for m in (a.conv1, a.conv2)] == [m.algorithm for m in (b.conv1, b.conv2)]


def test_swap_again_and_torch_leaves_alone():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.Conv2d(4, 2, 1))
    x = randn((1, 3, 9, 9))
    ref = net(x)
    ai3.swap_conv2d(net, ["direct", "torch", "smm"])
    assert type(net[0]) is swap.Conv2d and type(net[1]) is nn.Conv2d
    assert (net[0].algorithm, net[2].algorithm) == ("direct", "smm")
    ai3.swap_conv2d(net, ["smm", "direct", "torch"])
    assert [type(m) for m in net] == [swap.Conv2d, swap.Conv2d, nn.Conv2d]
    assert (net[0].algorithm, net[1].algorithm) == ("smm", "direct")
    assert close(net(x), ref)
    # 'torch' on the untouched net changes nothing
    plain = nn.Sequential(nn.Conv2d(3, 4, 3))
    first = plain[0]
    ai3.swap_conv2d(plain, "torch")
    assert plain[0] is first


def test_shared_module_and_nested_sequentials():
    shared = nn.ReLU()
    net = nn.Sequential(nn.Sequential(nn.Linear(3, 3), shared), nn.Sequential(shared))
    ai3.swap_operation(nn.ReLU, net, ["direct"])  # one instance, met twice
    assert net[0][1] is net[1][0] and type(net[0][1]) is swap.ReLU
    assert type(net[0][0]) is nn.Linear


def test_subclass_with_own_forward_is_left_alone():
    class Doubled(nn.Conv2d):
        def forward(self, x):
            return 2 * super().forward(x)

    net = nn.Sequential(Doubled(1, 1, 1), nn.Conv2d(1, 1, 1))
    ai3.swap_conv2d(net, ["direct"])
    assert type(net[0]) is Doubled and type(net[1]) is swap.Conv2d


def test_swap_with_user_class():
    calls = []

    class MyConv(nn.Conv2d):
        def __init__(self, orig, algorithm):
            super().__init__(orig.in_channels, orig.out_channels, orig.kernel_size)
            self.load_state_dict(orig.state_dict())
            calls.append(algorithm)

    net = ConvNet()
    ai3.swap_conv2d(net, ["direct", "smm"], swap_with=MyConv)
    assert calls == ["direct", "smm"]
    assert type(net.conv1) is MyConv and type(net.conv2) is MyConv

    net = nn.Sequential(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="nn.Module"):
        ai3.swap_operation(nn.Linear, net, swap_with=lambda orig, algorithm: 3)


def test_training_gradients_match_and_optimizer_steps():
    torch.manual_seed(2)
    orig = SevenOps().double()
    swapped = copy.deepcopy(orig)
    params_before = list(swapped.parameters())
    opt = torch.optim.SGD(swapped.parameters(), lr=0.1)  # built before the swap
    for op in ai3.OPERATIONS:
        ai3.swap_operation(op, swapped, "default")
    assert list(swapped.parameters()) == params_before

    x = randn(SEVEN_SHAPE, torch.float64, 3).requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    target = randn((SEVEN_SHAPE[0], 5), torch.float64, 4)
    loss_o = nn.functional.mse_loss(orig(x), target)
    loss_s = nn.functional.mse_loss(swapped(x2), target)
    loss_o.backward()
    loss_s.backward()
    for (name, po), ps in zip(orig.named_parameters(), swapped.parameters()):
        assert torch.allclose(po.grad, ps.grad, **TOL[torch.float64]), name
    assert torch.allclose(x.grad, x2.grad, **TOL[torch.float64])

    before = [p.detach().clone() for p in swapped.parameters()]
    torch.optim.SGD(orig.parameters(), lr=0.1).step()
    opt.step()
    for (name, po), ps, pb in zip(orig.named_parameters(), swapped.parameters(), before):
        assert not torch.equal(ps, pb), name
        assert torch.allclose(po, ps, **TOL[torch.float64]), name


def test_swapped_model_trains():
    torch.manual_seed(5)
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
                        nn.Flatten(), nn.Linear(16, 1))
    for op in ai3.OPERATIONS:
        ai3.swap_operation(op, net)
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x, y = randn((16, 1, 6, 6), seed=6), randn((16, 1), seed=7)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = nn.functional.mse_loss(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


def test_torch_compile_fullgraph():
    torch.manual_seed(8)
    orig = SevenOps()
    swapped = copy.deepcopy(orig)
    for op in ai3.OPERATIONS:
        ai3.swap_operation(op, swapped, "default")
    compiled = torch.compile(swapped, fullgraph=True, backend="aot_eager")
    x = randn(SEVEN_SHAPE, seed=9)
    assert close(compiled(x), orig(x))
    compiled_inductor = torch.compile(swapped, fullgraph=True)
    assert close(compiled_inductor(x), orig(x))
    # another batch size recompiles with symbolic shapes
    x3 = randn((3,) + SEVEN_SHAPE[1:], seed=10)
    assert close(compiled_inductor(x3), orig(x3))
