"""Channel criteria side by side: accuracy of uniformly pruned trained networks.

What it measures: for each trained checkpoint (``--checkpoints``, e.g. a W2A2 and a BNN
ResNet-20) and each criterion (``--criteria``), a copy of the network is pruned uniformly at
every ``--ratios`` value (each group loses ``round(r * C)`` of its ``C`` channels: every
block-internal group with ``--scope internal``, block-internal and residual groups with
``--scope all``), then scored on a fixed subset of the validation split (its first
``--eval-examples`` images) right after pruning and again after a short fine-tune
(``--finetune-steps`` Adam steps with cosine decay, ``--batch-size``, ``--lr``).

Fairness: every criterion prunes the same baseline and fine-tunes on the same batches (one
fine-tune seed for all), so the rows differ only by which channels went. ``taylor`` scores on
``--calibration-batches`` training batches drawn with a fixed seed (as the search does);
``random`` uses ``--random-seed``. Accuracies are deterministic for one machine and settings;
two criteria within about one point of each other after fine-tuning are within the noise of
a different fine-tune seed (try ``--finetune-seed``).

Data: the checkpoint's recorded ``DataConfig`` (dataset, validation split and its seed), read
from ``--data-dir``. The machine is shared, so the defaults keep a full run of two ResNet-20
checkpoints (7 criteria, 6 ratios) near 15-20 minutes on 2 CPU threads; ``--smoke`` cuts it
to a minute or two.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from autoprune.checkpoint import load_state_strictly, read_checkpoint
from autoprune.config import DataConfig, ModelConfig
from autoprune.data import calibration_batches, load_dataset
from autoprune.device import tune_cpu_allocator
from autoprune.metrics import measure
from autoprune.models import build_model
from autoprune.prune import CRITERIA, find_groups, prune_
from autoprune.train import finetune

DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
CRITERIA_ORDER = ("angle-next", "angle", "distance-next", "distance", "l1", "taylor", "random")


@dataclass(frozen=True)
class Row:
    checkpoint: str
    criterion: str
    scope: str
    ratio: float
    params_kept: float  # fraction of the unpruned network's parameters
    pruned_accuracy: float
    finetuned_accuracy: float


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoints", nargs="+", required=True, help="trained checkpoints")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--criteria", default=",".join(CRITERIA_ORDER))
    parser.add_argument("--ratios", default="10,20,30,40,50,60", help="percent, comma-separated")
    parser.add_argument("--scope", choices=("internal", "all"), default="internal")
    parser.add_argument("--eval-examples", type=int, default=1000)
    parser.add_argument("--finetune-steps", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--finetune-seed", type=int, default=0)
    parser.add_argument("--calibration-batches", type=int, default=4)
    parser.add_argument("--random-seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="also write every row here")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="quick check: ratios 30,60, 200 eval images, 5 fine-tune steps",
    )
    args = parser.parse_args(argv)
    if args.smoke:
        args.ratios, args.eval_examples, args.finetune_steps = "30,60", 200, 5
    return args


@torch.no_grad()
def accuracy_on_subset(model: nn.Module, data, examples: int, batch_size: int = 500) -> float:
    """Top-1 accuracy on the first ``examples`` images of the validation split."""
    was_training = model.training
    model.eval()
    correct = seen = 0
    for images, labels in data.batches("val", batch_size):
        images, labels = images[: examples - seen], labels[: examples - seen]
        correct += (model(images).argmax(1) == labels).sum().item()
        seen += labels.numel()
        if seen >= examples:
            break
    model.train(was_training)
    return correct / max(seen, 1)


def load_checkpoint(path: Path, data_dir: str):
    payload = read_checkpoint(path)
    model_config = ModelConfig.from_dict(payload["model"])
    model = build_model(model_config, payload.get("kept_channels") or None)
    load_state_strictly(model, payload["state_dict"], f"checkpoint {path}")
    recorded = (payload.get("metadata") or {}).get("data")
    data_config = DataConfig.from_dict(recorded) if recorded else DataConfig("fashion-mnist")
    data = load_dataset(
        data_config.name,
        data_dir=data_dir,
        val_fraction=data_config.val_fraction,
        seed=data_config.seed,
        max_train=data_config.max_train,
    )
    return model.eval(), model_config, data_config, data


def run_checkpoint(path: Path, args: argparse.Namespace) -> tuple[list[Row], dict]:
    baseline, model_config, data_config, data = load_checkpoint(path, args.data_dir)
    example = torch.zeros(1, *model_config.input_shape)
    groups = find_groups(baseline, example, residual=args.scope == "all")
    criteria = [c for c in args.criteria.split(",") if c]
    ratios = [int(r) / 100 for r in args.ratios.split(",") if r]
    calibration = calibration_batches(
        data, batches=args.calibration_batches, batch_size=args.batch_size, seed=0
    )
    base_params = measure(baseline, model_config.input_shape).params
    info = {
        "model": model_config.name,
        "quant": model_config.spec.label,
        "data": data_config.to_dict(),
        "groups": len(groups),
        "baseline_accuracy": accuracy_on_subset(baseline, data, args.eval_examples),
        "eval_examples": min(args.eval_examples, data.num_examples("val")),
    }
    rows = []
    for criterion in criteria:
        needs_data = CRITERIA.get(criterion).needs_data
        for ratio in ratios:
            model = copy.deepcopy(baseline)
            prune_(
                model,
                {group.name: ratio for group in groups},
                criterion=criterion,
                example_input=example,
                calibration=calibration if needs_data else None,
                seed=args.random_seed,
            )
            params = measure(model, model_config.input_shape).params
            pruned = accuracy_on_subset(model, data, args.eval_examples)
            finetune(
                model,
                data,
                steps=args.finetune_steps,
                batch_size=args.batch_size,
                lr=args.lr,
                seed=args.finetune_seed,
            )
            tuned = accuracy_on_subset(model, data, args.eval_examples)
            rows.append(
                Row(path.name, criterion, args.scope, ratio, params / base_params, pruned, tuned)
            )
            print(
                f"  {criterion:13s} {100 * ratio:3.0f} %: pruned {100 * pruned:5.1f}  "
                f"fine-tuned {100 * tuned:5.1f}",
                flush=True,
            )
    return rows, info


def format_table(rows: list[Row], info: dict, ratios: list[float]) -> str:
    head = "criterion      " + "".join(f"{f'{100 * r:.0f} %':>14s}" for r in ratios)
    lines = [head, "-" * len(head)]
    kept = {row.ratio: row.params_kept for row in rows}
    lines.append("params kept    " + "".join(f"{f'{100 * kept[r]:.0f} %':>14s}" for r in ratios))
    criteria = list(dict.fromkeys(row.criterion for row in rows))
    cells = {(row.criterion, row.ratio): row for row in rows}
    for criterion in criteria:
        line = f"{criterion:15s}"
        for ratio in ratios:
            row = cells[(criterion, ratio)]
            line += f"{100 * row.pruned_accuracy:7.1f} / {100 * row.finetuned_accuracy:4.1f}"
        lines.append(line)
    best = []
    for ratio in ratios:
        tuned = {c: cells[(c, ratio)].finetuned_accuracy for c in criteria}
        top = max(tuned.values())
        best.append("=".join(c for c in criteria if math.isclose(tuned[c], top)))
    lines.append(
        "best after fine-tune: "
        + ", ".join(f"{100 * r:.0f} % {b}" for r, b in zip(ratios, best, strict=True))
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()  # the library leaves process-wide settings alone
    started = time.perf_counter()
    ratios = [int(r) / 100 for r in args.ratios.split(",") if r]
    print(
        f"settings: scope {args.scope}, ratios {args.ratios} %, accuracy on the first "
        f"{args.eval_examples} validation images, fine-tune {args.finetune_steps} Adam steps "
        f"(batch {args.batch_size}, lr {args.lr}, cosine, seed {args.finetune_seed}), taylor on "
        f"{args.calibration_batches} training batches of {args.batch_size} (seed 0), random "
        f"seed {args.random_seed}, {args.threads} threads, torch {torch.__version__}"
    )
    all_rows: list[Row] = []
    tables = []
    for checkpoint in args.checkpoints:
        path = Path(checkpoint)
        print(f"{path}:", flush=True)
        rows, info = run_checkpoint(path, args)
        all_rows += rows
        title = (
            f"{path.name}: {info['model']} {info['quant']} on {info['data']['name']}, "
            f"{info['groups']} groups, unpruned {100 * info['baseline_accuracy']:.1f} % on "
            f"{info['eval_examples']} val images; cells: pruned / after fine-tune, top-1 %"
        )
        tables.append(title + "\n" + format_table(rows, info, ratios))
    print()
    print("\n\n".join(tables))
    print(f"\nwall time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps([asdict(row) for row in all_rows], indent=1))


if __name__ == "__main__":
    main()
