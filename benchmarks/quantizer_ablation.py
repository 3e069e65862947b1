"""Where a quantized network's training time goes: quantizers replaced by the identity.

What it measures: training images/s (as ``train_throughput.py``: forward, cross-entropy,
backward, Adam, on a fixed random batch) of the float model and of the quantized model at
``--bits``, built four ways: as built, with its activation quantizers replaced by the identity,
with its weight quantizers replaced, and with both. ``vs fp32`` is the paired ratio to the
float model, round by round, so the rows say what each kind of quantizer costs. With
``--per-op`` it then times every aten op of a few steps of the float and the as-built
quantized model (a ``TorchDispatchMode`` clocks each call; the timer's own overhead is in the
totals) and prints the ops that take longest.

Run from the repository root: ``python benchmarks/quantizer_ablation.py --bits 2 --per-op``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from train_throughput import (
    IMAGE_SIZE,
    IN_CHANNELS,
    NUM_CLASSES,
    Variant,
    build_variant,
    format_table,
    paired_ratios,
    resolve_device,
    time_steps,
    train_step,
)

from autoprune.device import training_memory_format, tune_cpu_allocator
from autoprune.quant.base import Identity

# name -> which quantizers are replaced by the identity
ABLATIONS: dict[str, tuple[str, ...]] = {
    "as built": (),
    "activation quantizers -> identity": ("input_quantizer",),
    "weight quantizers -> identity": ("weight_quantizer",),
    "all quantizers -> identity": ("input_quantizer", "weight_quantizer"),
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--bits", type=int, default=2, help="1 (BNN) or 2..8 (DoReFa)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved timing rounds")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--per-op", action="store_true", help="also time every aten op")
    parser.add_argument("--top", type=int, default=12, help="ops shown by --per-op")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def replace_quantizers(variant: Variant, attributes: Sequence[str]) -> Variant:
    for module in variant.model.modules():
        for attribute in attributes:
            if isinstance(getattr(module, attribute, None), torch.nn.Module):
                setattr(module, attribute, Identity())
    return variant


class OpTimer(TorchDispatchMode):
    """Adds up the wall time of every aten call, per op (CPU ops run synchronously)."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: dict[str, float] = defaultdict(float)

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        start = time.perf_counter()
        result = func(*args, **(kwargs or {}))
        self.seconds[str(func.overloadpacket)] += time.perf_counter() - start
        return result


def per_op_table(
    named: dict[str, Variant], images: torch.Tensor, targets: torch.Tensor, args: argparse.Namespace
) -> str:
    """Median ms per step of each op over ``--repeats`` rounds of ``--steps`` timed steps."""
    ms: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name in named}
    for _ in range(args.repeats):
        for name, variant in named.items():
            timer = OpTimer()
            with timer:
                for _ in range(args.steps):
                    train_step(variant, images, targets)
            for op, seconds in timer.seconds.items():
                ms[name][op].append(1000 * seconds / args.steps)
            ms[name]["total"].append(1000 * sum(timer.seconds.values()) / args.steps)

    def median(name: str, op: str) -> float:
        values = ms[name].get(op, [])
        return statistics.median(values) if values else 0.0

    last = list(named)[-1]
    all_ops = {op for per_name in ms.values() for op in per_name}
    ops = sorted(all_ops, key=lambda op: -median(last, op))
    rows = [(op, *(f"{median(name, op):.2f}" for name in named)) for op in ops[: args.top + 1]]
    return format_table(("op (ms/step)", *named), rows)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = resolve_device(args.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    memory_format = training_memory_format(device)

    float_model = build_variant(args.model, 32, device, memory_format)
    named = {"fp32": float_model} | {
        name: replace_quantizers(build_variant(args.model, args.bits, device, memory_format), parts)
        for name, parts in ABLATIONS.items()
    }
    shape = (args.batch_size, IN_CHANNELS, IMAGE_SIZE, IMAGE_SIZE)
    images = torch.randn(shape, device=device).contiguous(memory_format=memory_format)
    targets = torch.randint(0, NUM_CLASSES, (args.batch_size,), device=device)

    variants = list(named.values())
    for variant in variants:
        for _ in range(args.warmup):
            train_step(variant, images, targets)
    for round_index in range(args.repeats):
        start = round_index % len(variants)
        for variant in variants[start:] + variants[:start]:
            time_steps(variant, images, targets, args.steps, device)

    print(
        f"torch {torch.__version__} | device {device} | threads {args.threads} | "
        f"{args.model} at {args.bits} bits | batch {args.batch_size} | "
        f"{args.steps} steps x {args.repeats} interleaved repeats\n"
    )
    rows = [
        (
            name,
            f"{statistics.median(variant.rates):.1f}",
            f"{statistics.median(paired_ratios(variant, float_model)):.2f}x",
        )
        for name, variant in named.items()
    ]
    print(format_table(("network", "median img/s", "vs fp32"), rows))
    if args.per_op:
        print()
        compared = {"fp32": float_model, "as built": named["as built"]}
        print(per_op_table(compared, images, targets, args))


if __name__ == "__main__":
    main()
