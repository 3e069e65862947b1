"""Training throughput (images/s) of float vs. quantized models on random inputs.

What it measures: wall-clock time of full training steps -- forward, cross-entropy, backward
and an Adam update -- on a fixed random batch of 32x32 images, for each model and bit-width
(32 = float, 2 = DoReFa W2A2, 1 = BNN). No data loading is involved, so the numbers isolate the
cost of the network itself, including the fake-quantization passes.

How it runs: every variant is built and warmed up first. Then each of ``--repeats`` rounds
times ``--steps`` steps of every variant in turn, the order rotating from round to round
(32, 2, 1 / 2, 1, 32 / ...), so slow phases of a shared machine and the cache left by the
previous variant hit all variants alike.

How to read it: ``median`` is the median images/s over the rounds (``min``/``max`` show the
spread); ``vs fp32`` is the median over rounds of the variant's images/s divided by the float
model's in the same round (a paired ratio, which cancels the machine's slow drifts; 1.00 = as
fast as float, 0.50 = half the throughput) and ``q1-q3`` its quartiles; ``faults/step`` is the
median number of minor page faults per training step, the cost ``--allocator default`` shows
and ``tuned`` removes. Compare rows from the same run only.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from autoprune.device import training_memory_format, tune_cpu_allocator
from autoprune.models import create_model

IMAGE_SIZE = 32
NUM_CLASSES = 10
IN_CHANNELS = 3


@dataclass
class Variant:
    """One model at one bit-width, with its optimizer and the rates measured so far."""

    model_name: str
    bits: int
    model: nn.Module
    optimizer: torch.optim.Optimizer
    rates: list[float] = field(default_factory=list)
    page_faults: list[float] = field(default_factory=list)  # minor faults per step

    @property
    def label(self) -> str:
        return {32: "fp32", 1: "bnn"}.get(self.bits, f"w{self.bits}a{self.bits}")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads value")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    parser.add_argument("--repeats", type=int, default=20, help="interleaved timing rounds")
    parser.add_argument("--models", default="resnet20", help="comma-separated registry names")
    parser.add_argument("--bits", default="32,2,1", help="comma-separated bit-widths")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument(
        "--memory-format",
        choices=("auto", "contiguous", "channels_last"),
        default="auto",
        help="auto: what autoprune's training uses on the device "
        "(autoprune.device.training_memory_format: channels_last on the CPU)",
    )
    parser.add_argument(
        "--allocator",
        choices=("tuned", "default"),
        default="tuned",
        help="tuned: glibc keeps freed buffers, as autoprune's training does "
        "(autoprune.device.tune_cpu_allocator); default: glibc's own settings",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for name in ("batch_size", "threads", "steps", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    return args


def split_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def resolve_device(choice: str) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    return torch.device(choice)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build_variant(
    model_name: str, bits: int, device: torch.device, memory_format: torch.memory_format
) -> Variant:
    model = create_model(model_name, bits=bits, num_classes=NUM_CLASSES, in_channels=IN_CHANNELS)
    model = model.to(device=device, memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    return Variant(model_name, bits, model, optimizer)


def train_step(variant: Variant, images: torch.Tensor, targets: torch.Tensor) -> None:
    variant.optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(variant.model(images), targets)
    loss.backward()
    variant.optimizer.step()


def minor_page_faults() -> int:
    """Minor page faults of this process so far (0 where ``resource`` is unavailable)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def time_steps(
    variant: Variant,
    images: torch.Tensor,
    targets: torch.Tensor,
    steps: int,
    device: torch.device,
) -> None:
    """Run ``steps`` training steps; record their images/s and minor page faults per step."""
    synchronize(device)
    faults = minor_page_faults()
    start = time.perf_counter()
    for _ in range(steps):
        train_step(variant, images, targets)
    synchronize(device)
    elapsed = time.perf_counter() - start
    variant.page_faults.append((minor_page_faults() - faults) / steps)
    variant.rates.append(steps * images.shape[0] / elapsed)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table: first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts)

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def paired_ratios(variant: Variant, reference: Variant) -> list[float]:
    """The variant's images/s over the reference's, round by round."""
    return [rate / base for rate, base in zip(variant.rates, reference.rates, strict=True)]


def report(variants: Sequence[Variant], batch_size: int) -> str:
    floats = {v.model_name: v for v in variants if v.bits == 32 and v.rates}
    headers = (
        "model",
        "bits",
        "variant",
        "median img/s",
        "min",
        "max",
        "ms/step",
        "faults/step",
        "vs fp32",
        "q1-q3",
    )
    rows = []
    for v in variants:
        median = statistics.median(v.rates)
        ratio, spread = "-", "-"
        if v.model_name in floats:
            ratios = paired_ratios(v, floats[v.model_name])
            ratio = f"{statistics.median(ratios):.2f}x"
            if len(ratios) >= 4:
                q1, _, q3 = statistics.quantiles(ratios, n=4)
                spread = f"{q1:.2f}-{q3:.2f}"
        rows.append(
            (
                v.model_name,
                str(v.bits),
                v.label,
                f"{median:.1f}",
                f"{min(v.rates):.1f}",
                f"{max(v.rates):.1f}",
                f"{1000 * batch_size / median:.1f}",
                f"{statistics.median(v.page_faults):.0f}",
                ratio,
                spread,
            )
        )
    return format_table(headers, rows)


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "n/a"


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    allocator = "default"
    if args.allocator == "tuned" and device.type == "cpu":
        allocator = "tuned" if tune_cpu_allocator() else "default (tuning unavailable here)"
    memory_format = {
        "auto": training_memory_format(device),
        "contiguous": torch.contiguous_format,
        "channels_last": torch.channels_last,
    }[args.memory_format]

    model_names = split_list(args.models)
    bit_widths = [int(bits) for bits in split_list(args.bits)]
    variants = [
        build_variant(name, bits, device, memory_format)
        for name in model_names
        for bits in bit_widths
    ]

    shape = (args.batch_size, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    images = torch.randn(shape, device=device).contiguous(memory_format=memory_format)
    targets = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)

    load_before = load_average()
    for variant in variants:
        for _ in range(args.warmup):
            train_step(variant, images, targets)
    synchronize(device)

    for round_index in range(args.repeats):
        start = round_index % len(variants)
        for variant in variants[start:] + variants[:start]:
            time_steps(variant, images, targets, args.steps, device)

    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(
        f"torch {torch.__version__} | device {device_name} | threads {torch.get_num_threads()}"
        f" | python {platform.python_version()} | batch {args.batch_size}"
        f" | {args.steps} steps x {args.repeats} interleaved repeats (warm-up {args.warmup})"
        f" | {'channels_last' if memory_format == torch.channels_last else 'contiguous (NCHW)'}"
        f" | allocator {allocator}"
    )
    print(f"load average (1/5/15 min): before {load_before} | after {load_average()}")
    print()
    print(report(variants, args.batch_size))


if __name__ == "__main__":
    main()
