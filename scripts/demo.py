"""ai3 demo: the seed README's two examples, then every operation of two
networks (torchvision's VGG16 with random weights and a small ConvNet)
swapped to ai3, timed and checked against PyTorch layer by layer on the same
input, and each whole network converted to an ai3.Model.

    python scripts/demo.py [--repeats N]

Exits with status 1 if any result differs from PyTorch.
"""

import argparse
import copy
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

import ai3


class ConvNet(nn.Module):
    """The small network of the seed's swap_operation example."""

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


def auto_selector(orig: torch.nn.Conv2d, input_shape) -> str:
    """The seed's convert example selector."""
    out_channels = orig.weight.shape[0]
    if (out_channels < 50 and
            input_shape[1] < 50 and
            input_shape[2] > 150 and
            input_shape[3] > 150):
        return 'direct'
    return 'smm'


def seed_swap_example():
    input_data = torch.randn(10, 3, 224, 224)
    orig = ConvNet()
    orig_out = orig(input_data)
    ai3.swap_operation(nn.Conv2d, orig, ['direct', 'smm'])
    so_out = orig(input_data)
    return torch.allclose(orig_out, so_out, atol=1e-6)


def seed_convert_example(vgg16):
    input_data = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        torch_out = vgg16(input_data)
        model: ai3.Model = ai3.convert(vgg16, {'conv2d': auto_selector,
                                               'maxpool2d': 'default'},
                                       sample_input_shape=(1, 3, 224, 224))
        sb_out = model(input_data)
        return torch.allclose(torch_out, sb_out, atol=1e-4)


def median_ms(fn, x, repeats):
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(x)
        times.append((time.perf_counter() - start) * 1e3)
    return out, statistics.median(times)


def layer_inputs(net, x):
    """The input of every operation ai3 can swap, in forward order."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, args, name=name: seen.append((name, m, args[0])))
             for name, m in net.named_modules() if isinstance(m, tuple(ai3.OPERATIONS.values()))]
    try:
        net(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def print_table(title, header, rows):
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(f"\n{title}")
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))


def layer_table(title, net, x, algos, repeats):
    """Every operation of `net`, swapped to ai3 with the algorithms of
    `algos` (op name -> selector), timed against the torch module on the
    same input and compared with it. Returns whether every layer matched."""
    swapped = copy.deepcopy(net)
    for op, selector in algos.items():
        ai3.swap_operation(op, swapped, selector)
    ai3_modules = dict(swapped.named_modules())
    rows, all_ok, total_ai3, total_torch = [], True, 0.0, 0.0
    with torch.no_grad():
        for name, module, layer_input in layer_inputs(net, x):
            ours = ai3_modules[name]
            out, ms = median_ms(ours, layer_input, repeats)
            expected, torch_ms = median_ms(module, layer_input, repeats)
            scale = max(1.0, expected.abs().max().item())
            err = (out - expected).abs().max().item()
            ok = out.shape == expected.shape and \
                torch.allclose(out, expected, rtol=1e-4, atol=1e-5 * scale)
            all_ok &= ok
            algorithm = getattr(ours, "algorithm", "torch")
            if isinstance(ours, ai3.swap.Conv2d):
                resolved = ours.algorithm_for(layer_input.shape)
                if resolved != algorithm:
                    algorithm = f"{algorithm}→{resolved}"
            rows.append((name, ours._ai3_op if hasattr(ours, "_ai3_op") else type(ours).__name__,
                         algorithm, f"{ms:.3f}", f"{torch_ms:.3f}", f"{err:.1e}",
                         "yes" if ok else "NO"))
            total_ai3 += ms
            total_torch += torch_ms
    rows.append(("total", "", "", f"{total_ai3:.3f}", f"{total_torch:.3f}", "", ""))
    print_table(title, ("layer", "operation", "algorithm", "ai3 ms", "torch ms", "max |diff|",
                        "matches torch"), rows)
    return all_ok


def whole_model(name, net, x, algos, repeats):
    """`net` converted to an ai3.Model against torch eager on `x`."""
    with torch.inference_mode():
        model = ai3.convert(net, algos)
        out, ms = median_ms(model, x, repeats)
        expected, torch_ms = median_ms(net, x, repeats)
    scale = max(1.0, expected.abs().max().item())
    ok = torch.allclose(out, expected, rtol=1e-4, atol=1e-5 * scale)
    print(f"{name} converted: ai3 {ms:.1f} ms, torch {torch_ms:.1f} ms "
          f"({ms / torch_ms:.2f}x), matches torch: {'yes' if ok else 'NO'}")
    return ok


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3,
                        help="timed runs per layer; the median is shown (default 3)")
    args = parser.parse_args()
    torch.manual_seed(0)

    print(f"ai3 {ai3.__version__}, {ai3.get_num_threads()} threads; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print("algorithms:", ", ".join(f"{op}: {'/'.join(names)}"
                                   for op, names in ai3.SUPPORTED_ALGORITHMS.items()))

    swap_ok = seed_swap_example()
    print(f"\nseed example 1 (swap_operation, ConvNet, 10x3x224x224): allclose = {swap_ok}")
    vgg16 = torchvision.models.vgg16(weights=None).eval()
    convert_ok = seed_convert_example(vgg16)
    print(f"seed example 2 (convert, VGG16, 1x3x224x224): allclose = {convert_ok}")

    defaults = {op: "default" for op in ai3.OPERATIONS}
    x = torch.randn(1, 3, 224, 224)
    vgg_ok = layer_table("VGG16 (random weights), input 1x3x224x224, every operation swapped "
                         "to 'default', per layer:", vgg16, x, defaults, args.repeats)
    vgg_ok &= whole_model("VGG16", vgg16, x, None, args.repeats)
    convnet = ConvNet().eval()
    x = torch.randn(4, 3, 224, 224)
    convnet_ok = layer_table("ConvNet, input 4x3x224x224, conv2d swapped to direct and smm, "
                             "the rest to 'default', per layer:", convnet, x,
                             {**defaults, "conv2d": ["direct", "smm"]}, args.repeats)
    convnet_ok &= whole_model("ConvNet", convnet, x, {"conv2d": ["direct", "smm"]}, args.repeats)

    ok = swap_ok and convert_ok and vgg_ok and convnet_ok
    print("\nall results match PyTorch" if ok else "\nMISMATCH: some results differ from PyTorch")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
