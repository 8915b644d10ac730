"""ai3 demo: the seed README's two examples, then every layer of two converted
networks (torchvision's VGG16 with random weights and a small ConvNet) timed
and checked against PyTorch on the same input.

    python scripts/demo.py [--repeats N]

Exits with status 1 if any result differs from PyTorch.
"""

import argparse
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
        return torch.allclose(torch_out, sb_out, atol=1e-4), model


def median_ms(fn, x, repeats):
    fn(x)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(x)
        times.append((time.perf_counter() - start) * 1e3)
    return out, statistics.median(times)


def layer_table(title, net, model, x, repeats):
    """Runs `model` layer by layer on `x`, timing each layer and comparing its
    output with the torch module (or function) on the same input. Returns
    whether every layer matched."""
    modules = dict(net.named_modules())
    rows = []
    all_ok = True
    total_ai3 = total_torch = 0.0
    with torch.inference_mode():
        for layer in model.layers:
            reference = modules[layer.module_name] if layer.module_name else layer.reference
            out, ms = median_ms(layer, x, repeats)
            expected, torch_ms = median_ms(reference, x, repeats)
            scale = max(1.0, expected.abs().max().item())
            err = (out - expected).abs().max().item()
            ok = out.shape == expected.shape and \
                torch.allclose(out, expected, rtol=1e-4, atol=1e-5 * scale)
            all_ok &= ok
            algorithm = layer.algorithm
            if algorithm == "default":
                algorithm = f"default→{ai3._core.default_algorithm(layer.op)}"
            rows.append((layer.name, layer.op, algorithm, f"{ms:.3f}", f"{torch_ms:.3f}",
                         f"{err:.1e}", "yes" if ok else "NO"))
            total_ai3 += ms
            total_torch += torch_ms
            x = out
    header = ("layer", "operation", "algorithm", "ai3 ms", "torch ms", "max |diff|",
              "matches torch")
    rows.append(("total", "", "", f"{total_ai3:.3f}", f"{total_torch:.3f}", "", ""))
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    line = "  ".join("{:<%d}" % w for w in widths)
    print(f"\n{title}")
    print(line.format(*header))
    print(line.format(*("-" * w for w in widths)))
    for row in rows:
        print(line.format(*row))
    return all_ok


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
    convert_ok, vgg_model = seed_convert_example(vgg16)
    print(f"seed example 2 (convert, VGG16, 1x3x224x224): allclose = {convert_ok}")

    vgg_ok = layer_table("VGG16 (random weights), input 1x3x224x224, per layer:", vgg16,
                         vgg_model, torch.randn(1, 3, 224, 224), args.repeats)
    convnet = ConvNet().eval()
    convnet_model = ai3.convert(convnet, {"conv2d": ["direct", "smm"]})
    convnet_ok = layer_table("ConvNet, input 4x3x224x224, per layer:", convnet, convnet_model,
                             torch.randn(4, 3, 224, 224), args.repeats)

    ok = swap_ok and convert_ok and vgg_ok and convnet_ok
    print("\nall results match PyTorch" if ok else "\nMISMATCH: some results differ from PyTorch")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
