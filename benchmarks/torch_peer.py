"""The trainer's network and training step written the way a PyTorch user would, for comparison.

Usage (on a GPU machine, where PyTorch is installed; it is a benchmark-only dependency):
    python benchmarks/torch_peer.py [--levels 1,2,4,2] [--width 96] [--batch 512]
        [--steps 60] [--modes eager compile] [--keras-params N]

The same pre-activation bottleneck ResNet as ``dlnotes.models.build_resnet`` (same layers,
shapes and parameter count; the count is printed and, with ``--keras-params``, checked) and the
same work per step as ``python -m dlnotes.train``: the uint8 images held in GPU memory, a batch of
random indices gathered there, a random reflect-padded shift of up to 4 pixels and a random
horizontal flip per image, CutMix on half of the images (partner at the mirrored position of the
batch, λ ~ Beta(1, 1)), per-channel normalisation, bfloat16 autocast, cross-entropy with label
smoothing 0.1 on the mixed soft targets, SGD with Nesterov momentum 0.9 and decoupled weight decay
5e-5 (not on batch-norm parameters), ``torch.optim.SGD(fused=True)``. The model is in
``channels_last`` memory format.

Modes: ``eager`` (plain PyTorch), ``compile`` (``torch.compile`` of the model: forward and
backward compiled, augmentation and optimiser eager), ``compile-step`` (``torch.compile`` of the
whole training step, augmentation and optimiser included). For each: images per second over
``--steps`` steps after warm-up (CUDA-synchronised wall clock) and the seconds the warm-up took
(≈ compilation). The last line is a JSON list of the measurements.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import time
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class Unit(nn.Module):
    """BN → ReLU → Conv without bias (``dlnotes.models.conv_unit``)."""

    def __init__(self, channels_in: int, channels_out: int, kernel: int, stride: int = 1):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels_in, eps=1e-3, momentum=0.01)  # Keras' defaults
        self.conv = nn.Conv2d(
            channels_in, channels_out, kernel, stride, padding=kernel // 2, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.relu(self.bn(x)))


class Bottleneck(nn.Module):
    """Identity bottleneck (``dlnotes.models.bottleneck_block``)."""

    def __init__(self, channels: int):
        super().__init__()
        inner = channels // 4
        self.body = nn.Sequential(
            Unit(channels, inner, 1), Unit(inner, inner, 3), Unit(inner, channels, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Projection(nn.Module):
    """Bottleneck with a 1×1 convolution shortcut (``dlnotes.models.projection_block``)."""

    def __init__(self, channels_in: int, channels_out: int, inner: int, stride: int = 1):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels_in, eps=1e-3, momentum=0.01)
        self.shortcut = nn.Conv2d(channels_in, channels_out, 1, stride, bias=False)
        self.first = nn.Conv2d(channels_in, inner, 1, bias=False)
        self.rest = nn.Sequential(Unit(inner, inner, 3, stride), Unit(inner, channels_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn(x))
        return self.shortcut(pre) + self.rest(self.first(pre))


class ResNet(nn.Module):
    """``dlnotes.models.build_resnet`` in PyTorch."""

    def __init__(self, num_classes: int, levels: tuple[int, ...], width: int):
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Conv2d(3, width, 3, padding=1, bias=False),
            Projection(width, width, width // 4),
        ]
        channels = width
        for repeats in levels:
            blocks += [Bottleneck(channels) for _ in range(repeats)]
            blocks.append(Projection(channels, 2 * channels, channels // 2, stride=2))
            channels *= 2
        self.features = nn.Sequential(*blocks)
        self.final_bn = nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)
        self.logits = nn.Linear(channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        nn.init.normal_(self.logits.weight, std=0.01)
        nn.init.zeros_(self.logits.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.final_bn(self.features(x)))
        return self.logits(x.mean(dim=(2, 3)))


def augment(images: torch.Tensor, index: torch.Tensor, padding: int = 4) -> torch.Tensor:
    """Gather ``images[index]`` (uint8 NCHW) with a random shift and flip per image, as floats."""
    batch = images[index].float()
    size = batch.shape[-1]
    padded = F.pad(batch, (padding,) * 4, mode="reflect")
    offsets = torch.randint(0, 2 * padding + 1, (len(index), 2), device=images.device)
    rows = offsets[:, 0, None] + torch.arange(size, device=images.device)  # (B, H)
    cols = offsets[:, 1, None] + torch.arange(size, device=images.device)  # (B, W)
    flip = torch.rand(len(index), device=images.device) < 0.5
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    b = torch.arange(len(index), device=images.device)[:, None, None, None]
    c = torch.arange(batch.shape[1], device=images.device)[None, :, None, None]
    return padded[b, c, rows[:, None, :, None], cols[:, None, None, :]]


def cutmix(
    x: torch.Tensor, targets: torch.Tensor, probability: float = 0.5
) -> tuple[torch.Tensor, torch.Tensor]:
    """CutMix on a share of the batch; the partner is the image at the mirrored position."""
    count, _, height, width = x.shape
    device = x.device
    share = torch.distributions.Beta(1.0, 1.0).sample((count,)).to(device)
    mixed = torch.rand(count, device=device) < probability
    cut_h = (height * torch.sqrt(1 - share)).long()
    cut_w = (width * torch.sqrt(1 - share)).long()
    cy = torch.randint(0, height, (count,), device=device)
    cx = torch.randint(0, width, (count,), device=device)
    y0, y1 = (cy - cut_h // 2).clamp(0, height), (cy + cut_h // 2).clamp(0, height)
    x0, x1 = (cx - cut_w // 2).clamp(0, width), (cx + cut_w // 2).clamp(0, width)
    ys = torch.arange(height, device=device)[None, :, None]
    xs = torch.arange(width, device=device)[None, None, :]
    box = (ys >= y0[:, None, None]) & (ys < y1[:, None, None])
    box = box & (xs >= x0[:, None, None]) & (xs < x1[:, None, None]) & mixed[:, None, None]
    partner = x.flip(0)
    x = torch.where(box[:, None], partner, x)
    kept = 1 - box.float().mean(dim=(1, 2))
    targets = kept[:, None] * targets + (1 - kept[:, None]) * targets.flip(0)
    return x, targets


def parameter_count(model: nn.Module) -> int:
    """Trainable parameters (Keras' trainable weights: kernels, biases, γ and β)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def make_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    *,
    batch: int,
    num_classes: int,
    learning_rate: float,
    weight_decay: float,
) -> Any:
    """One training step as a PyTorch user writes it."""
    decayed = [p for p in model.parameters() if p.ndim > 1]

    def step() -> torch.Tensor:
        index = torch.randint(0, len(images), (batch,), device=images.device)
        x = augment(images, index)
        targets = F.one_hot(labels[index], num_classes).float()
        x, targets = cutmix(x, targets)
        x = ((x - mean) / std).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda" if images.is_cuda else "cpu", dtype=torch.bfloat16):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        with torch.no_grad():
            torch._foreach_mul_(decayed, 1 - learning_rate * weight_decay)  # decoupled, as Keras
        optimizer.step()
        return loss.detach()

    return step


def measure(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    levels = tuple(int(v) for v in args.levels.split(","))
    model = ResNet(args.classes, levels, args.width).to(device)
    model = model.to(memory_format=torch.channels_last)
    params = parameter_count(model)
    if args.keras_params is not None and params != args.keras_params:
        raise SystemExit(
            f"parameter counts differ: PyTorch {params:,}, Keras {args.keras_params:,}"
        )
    images = torch.randint(0, 256, (args.images, 3, 64, 64), dtype=torch.uint8, device=device)
    labels = torch.randint(0, args.classes, (args.images,), device=device)
    mean = torch.tensor([120.0, 115.0, 105.0], device=device)[None, :, None, None]
    std = torch.tensor([68.0, 66.0, 70.0], device=device)[None, :, None, None]
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=args.learning_rate,
        momentum=0.9,
        nesterov=True,
        fused=device.type == "cuda",
    )
    if mode == "compile":
        model = torch.compile(model)
    step = make_step(
        model,
        optimizer,
        images,
        labels,
        mean,
        std,
        batch=args.batch,
        num_classes=args.classes,
        learning_rate=args.learning_rate,
        weight_decay=5e-5,
    )
    if mode == "compile-step":
        step = torch.compile(step)

    def synchronize() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    started = time.perf_counter()
    for _ in range(args.warmup):
        loss = step()
    synchronize()
    warmup_seconds = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    synchronize()
    seconds = time.perf_counter() - started
    if not math.isfinite(float(loss)):
        raise SystemExit(f"{mode}: the loss is {float(loss)}")
    return {
        "framework": f"PyTorch {torch.__version__}",
        "mode": mode,
        "levels": list(levels),
        "width": args.width,
        "batch": args.batch,
        "parameters": params,
        "images_per_second": round(args.steps * args.batch / seconds, 1),
        "warmup_seconds": round(warmup_seconds, 2),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "CPU",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--levels", default="1,2,4,2")
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--images", type=int, default=20_000, help="images held on the device")
    parser.add_argument("--learning-rate", type=float, default=0.8)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--modes", nargs="+", default=["eager", "compile"])
    parser.add_argument("--keras-params", type=int, default=None, help="check the count")
    args = parser.parse_args(argv)
    torch.backends.cudnn.benchmark = True
    results = []
    for mode in args.modes:
        row = measure(args, mode)
        results.append(row)
        print(
            f"PyTorch {mode:<13} {row['images_per_second']:>9,.0f} img/s  "
            f"warm-up {row['warmup_seconds']:.1f} s  {row['parameters']:,} parameters",
            flush=True,
        )
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
