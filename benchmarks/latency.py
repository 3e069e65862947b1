"""CPU inference latency of uniformly pruned ResNet-20s against their MACs and parameters.

What it measures: the wall-clock time of one forward pass (``torch.inference_mode``, eval mode)
of ``resnet20`` (random weights, 10 classes, 3 x 32 x 32 inputs) at batch 1 and batch 64, for
float and W2A2 networks pruned uniformly (``prune_`` with the ``l1`` criterion) at each
``--ratios`` value, over two scopes: ``internal`` (every block-internal group, what the search
prunes by default) and ``all`` (block-internal and residual groups). W2A2 networks run in two
modes: ``fake-quant`` (the training modules: every weight quantizer recomputes ``Q(w)`` on each
forward) and ``folded`` (``autoprune.export.fold_quantizers``: ``Q(w)`` stored once, activation
quantizers as plain ops, the same fold the ONNX export uses). Float networks are timed as
built (their quantizers are identities).

How it runs: every variant is built and warmed up first. Each of ``--repeats`` rounds then
times ``--runs`` calls of every variant in turn, so a slow spell of the shared machine falls
on all variants alike; a variant's latency is the median of all its timed calls. Each call is
timed twice: wall clock and the calling thread's CPU time (``time.thread_time``). With
``--threads 1`` (the default) every op runs on the calling thread, so its CPU time is the
latency on an idle core, unaffected by other processes taking the core away (on a loaded
machine, wall-clock medians of millisecond calls jump in steps of the scheduler's time
slice); the ratios then use CPU time. With more threads they use wall-clock time.

How to read it: ``lat/unpruned`` is the latency divided by that of the unpruned network of
the same bit-width and mode, next to ``MACs/unpruned``: where the two match, pruning buys
what the MAC count promises. ``quant share`` (W2A2 fake-quant rows) is
``1 - folded / fake-quant``: the part of the time spent recomputing the weight quantizers and
running the autograd-function quantizers instead of plain ops.
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
from torch import nn

from autoprune.export import fold_quantizers
from autoprune.metrics import measure
from autoprune.models import create_model
from autoprune.prune import find_groups, prune_

INPUT_SHAPE = (3, 32, 32)


@dataclass
class Variant:
    bits: int
    scope: str
    ratio: float
    mode: str
    model: nn.Module
    params: int
    macs: int
    cpu: dict[int, list[float]] = field(default_factory=dict)  # batch -> thread CPU seconds
    wall: dict[int, list[float]] = field(default_factory=dict)  # batch -> wall seconds

    @property
    def key(self) -> tuple[int, str]:
        return self.bits, self.mode

    def median_ms(self, batch: int, clock: str = "cpu") -> float:
        return 1e3 * statistics.median((self.cpu if clock == "cpu" else self.wall)[batch])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads value")
    parser.add_argument("--ratios", default="0.2,0.4,0.6", help="uniform ratios besides 0")
    parser.add_argument("--bits", default="32,2", help="bit-widths (32 float, 2..8 DoReFa, 1 BNN)")
    parser.add_argument("--batches", default="1,64", help="batch sizes")
    parser.add_argument("--runs", type=int, default=3, help="timed calls per variant and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per variant first")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    parser.add_argument(
        "--scopes", default="internal,all", help="internal and/or all (with residual groups)"
    )
    return parser.parse_args(argv)


def _build(bits: int, scope: str, ratio: float) -> nn.Module:
    torch.manual_seed(0)
    model = create_model("resnet20", bits=bits, num_classes=10, in_channels=3)
    example = torch.zeros(1, *INPUT_SHAPE)
    if ratio > 0:
        groups = find_groups(model, example, residual=scope == "all")
        prune_(model, {g.name: ratio for g in groups}, criterion="l1", example_input=example)
    return model.eval()


def build_variants(args: argparse.Namespace) -> list[Variant]:
    ratios = [0.0] + [float(r) for r in args.ratios.split(",") if r]
    variants = []
    for bits in (int(b) for b in args.bits.split(",")):
        for scope in args.scopes.split(","):
            for ratio in ratios:
                if ratio == 0 and scope != args.scopes.split(",")[0]:
                    continue  # one unpruned network per bit-width
                model = _build(bits, scope, ratio)
                cost = measure(model, INPUT_SHAPE)
                label = "-" if ratio == 0 else scope
                modes = {"fake-quant": model} if bits == 32 else {}
                if bits != 32:
                    modes = {"fake-quant": model, "folded": fold_quantizers(model)}
                for mode, network in modes.items():
                    mode_name = "float" if bits == 32 else mode
                    variants.append(
                        Variant(bits, label, ratio, mode_name, network, cost.params, cost.macs)
                    )
    return variants


def time_variants(variants: list[Variant], batches: list[int], args: argparse.Namespace) -> None:
    generator = torch.Generator().manual_seed(0)
    inputs = {b: torch.randn(b, *INPUT_SHAPE, generator=generator) for b in batches}
    with torch.inference_mode():
        for variant in variants:
            for batch in batches:
                variant.cpu[batch], variant.wall[batch] = [], []
                for _ in range(args.warmup):
                    variant.model(inputs[batch])
        for _ in range(args.repeats):
            for variant in variants:
                for batch in batches:
                    for _ in range(args.runs):
                        wall, cpu = time.perf_counter(), time.thread_time()
                        variant.model(inputs[batch])
                        variant.cpu[batch].append(time.thread_time() - cpu)
                        variant.wall[batch].append(time.perf_counter() - wall)


def report(variants: list[Variant], batches: list[int], clock: str) -> str:
    """One row per variant; ``clock`` (cpu or wall) gives the latencies the ratios use."""
    unpruned = {v.key: v for v in variants if v.ratio == 0}
    folded = {(v.bits, v.scope, v.ratio): v for v in variants if v.mode == "folded"}
    header = ["bits", "groups", "ratio", "mode", "params", "MMACs", "MACs/unpruned"]
    for batch in batches:
        header += [f"b{batch} {clock} ms", f"b{batch} lat/unpruned"]
        header += [f"b{batch} wall ms"] if clock == "cpu" else []
    header += [f"quant share b{b}" for b in batches]
    rows = []
    for v in variants:
        base = unpruned[v.key]
        row = [
            "fp32" if v.bits == 32 else f"w{v.bits}a{v.bits}",
            v.scope,
            f"{v.ratio:.0%}",
            v.mode,
            f"{v.params:,}",
            f"{v.macs / 1e6:.2f}",
            f"{v.macs / base.macs:.2f}",
        ]
        for batch in batches:
            latency = v.median_ms(batch, clock)
            row += [f"{latency:.2f}", f"{latency / base.median_ms(batch, clock):.2f}"]
            row += [f"{v.median_ms(batch, 'wall'):.2f}"] if clock == "cpu" else []
        twin = folded.get((v.bits, v.scope, v.ratio))
        for batch in batches:
            if v.mode == "fake-quant" and twin is not None:
                share = 1 - twin.median_ms(batch, clock) / v.median_ms(batch, clock)
                row.append(f"{share:.0%}")
            else:
                row.append("-")
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    load_before = os.getloadavg()
    variants = build_variants(args)
    started = time.perf_counter()
    time_variants(variants, batches, args)
    print(
        f"torch {torch.__version__}, Python {platform.python_version()}, "
        f"{args.threads} thread(s), {os.cpu_count()} CPUs; {len(variants)} variants, "
        f"median of {args.repeats} x {args.runs} calls each after {args.warmup} warm-up calls; "
        f"timing took {time.perf_counter() - started:.0f} s; load average "
        f"{' / '.join(f'{x:.2f}' for x in load_before)} before, "
        f"{' / '.join(f'{x:.2f}' for x in os.getloadavg())} after"
    )
    # with one thread every op runs on this thread, so its CPU time is the latency an idle
    # core would show; with more threads only wall-clock time covers the workers
    clock = "cpu" if args.threads == 1 else "wall"
    print(report(variants, batches, clock))


if __name__ == "__main__":
    main()
