"""How much of a trial's short score is the candidate and how much is the fine-tune's seed?

A search compares candidates by one short fine-tune each. If two fine-tunes of the *same*
pruned network, drawn with different seeds (other batches, other order), differ as much as
two candidates do, the search ranks seeds, not allocations, and its best trial is the luckiest
draw. This script recovers each candidate with each short recipe at ``--seeds`` seeds and
measures, per recipe, on the validation split:

- ``seed sd``: the pooled standard deviation of one candidate's score across seeds;
- ``spread``: the standard deviation of the candidates' mean scores, less the part the seed
  noise explains (``sqrt(var(means) - seed_var / K)``);
- ``signal share``: spread^2 / (spread^2 + seed_var), the share of one score's variance that
  is the candidate (1 = seeds do not matter);
- ``paired sd``: the sd of the difference between two candidates fine-tuned with the *same*
  seed (common random numbers: the same batches in the same order), against ``sqrt(2)`` x seed
  sd for two independent seeds; a search that seeds every trial alike gets the paired noise;
- ``tau one seed vs rest``: Kendall's tau between one seed's ranking and the mean of the other
  seeds, for independent seeds per candidate (a search today) and for one common seed.

Candidates come from a real search (``--from-study STORAGE:STUDY``, its complete trials, the
best ``--limit`` by the search's own score so the comparison is among the contenders) or from
``search_quality.py``'s rows (``--from-rows``). Records are JSON lines in ``--out``, one per
(candidate, recipe, steps, seed), written as they finish; a rerun skips what is there.
``--recipes export:400`` recovers with ``autoprune export``'s recipe instead and scores the
test split: the seed noise behind every export row of ``search_quality.py``.

    python benchmarks/score_noise.py --from-study \
        "benchmarks/results/search_quality/studies.db:w2a2-fmnist-30%-gp-kd-seed0" \
        --limit 8 --seeds 3 --recipes old:40,kd-warm:40 --out benchmarks/results/score-noise-30
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import math
import random
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import torch
from recovery import RECIPES, _recover, _row_candidates, kendall_tau, load_parent

from autoprune.config import EXPORT_FINETUNE
from autoprune.metrics import measure
from autoprune.prune import prune_
from autoprune.search.record import trial_ratios

# The short recipes of recovery.py, and `autoprune export`'s recipe, which is scored on the
# test split: its seed noise is the noise of every export row of search_quality.py.
SCORED = {**RECIPES, "export": EXPORT_FINETUNE}
DEFAULT_CHECKPOINT = "benchmarks/checkpoints/resnet20-w2a2-fmnist.pt"
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"


@dataclass(frozen=True)
class Record:
    candidate: int
    label: str  # trial number or method
    recipe: str
    steps: int
    seed: int
    accuracy: float
    loss: float
    size_fraction: float
    seconds: float
    export_test: float = math.nan  # with --from-rows: the row's export test accuracy


def _key(candidate: int, recipe: str, steps: int, seed: int) -> str:
    return f"{candidate}/{recipe}/{steps}/{seed}"


def _study_candidates(source: str, limit: int) -> list[tuple[str, dict[str, float], float]]:
    """The ``limit`` best complete trials of a stored search by its own score (ties: lower
    trial number), as ``(label, ratios, nan)`` (no export result)."""
    storage, _, name = source.rpartition(":")
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    complete.sort(key=lambda t: (-t.values[0], t.number))
    chosen = complete[:limit] if limit else complete
    return [(f"trial {t.number}", trial_ratios(t), math.nan) for t in chosen]


def run(args: argparse.Namespace, budgets: dict[str, list[int]]) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "records.jsonl"
    done = {
        _key(r.candidate, r.recipe, r.steps, r.seed): r
        for r in (Record(**json.loads(line)) for line in _lines(log))
    }
    parent, config, data = load_parent(args.checkpoint, args.data_dir, args.threads)
    example = torch.zeros(1, *config.input_shape)
    if args.from_rows:
        rows = _row_candidates(args.from_rows, args.export_lr)
        candidates = [(m, r, test) for m, r, _, test, _ in rows if m != "parent"]
        if args.only:
            candidates = [c for c in candidates if c[0] in args.only.split(",")]
    else:
        candidates = _study_candidates(args.from_study, args.limit)
    full = measure(parent, config.input_shape).size_bits
    print(f"{len(candidates)} candidates, {args.seeds} seeds each; log {log}", flush=True)
    for index, (label, ratios, test) in enumerate(candidates):
        pruned = copy.deepcopy(parent)
        prune_(pruned, ratios, criterion=args.criterion, example_input=example)
        fraction = measure(pruned, config.input_shape).size_bits / full
        for seed in range(args.seeds):
            for recipe, steps_list in budgets.items():
                for steps in steps_list:
                    key = _key(index, recipe, steps, seed)
                    if key in done:
                        continue
                    split = "test" if recipe == "export" else "val"
                    values = _recover(pruned, parent, data, SCORED[recipe], steps, split, seed)
                    accuracy, loss, seconds = values
                    row = Record(
                        index, label, recipe, steps, seed, accuracy, loss, fraction, seconds, test
                    )
                    with log.open("a") as handle:
                        handle.write(json.dumps(asdict(row)) + "\n")
                    done[key] = row
                    print(
                        f"{label:>12s} size {100 * fraction:5.1f} %  {recipe:>8s} {steps:4d} "
                        f"seed {seed}  {split} {100 * row.accuracy:6.2f} %  loss {row.loss:.4f}  "
                        f"{row.seconds:5.1f} s",
                        flush=True,
                    )
    report(out)


def _lines(path: Path) -> list[str]:
    return (
        [line for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    )


def _noise(scores: list[list[float]]) -> dict[str, float]:
    """Noise figures of ``scores[candidate][seed]`` (points), candidates all with K seeds."""
    k = len(scores[0])
    seed_var = statistics.mean(statistics.variance(s) for s in scores)
    means = [statistics.mean(s) for s in scores]
    spread_var = max(0.0, statistics.variance(means) - seed_var / k)
    diffs = [
        statistics.variance([a - b for a, b in zip(x, y, strict=True)])
        for x, y in itertools.combinations(scores, 2)
    ]
    return {
        "seed_sd": math.sqrt(seed_var),
        "spread": math.sqrt(spread_var),
        "signal": spread_var / (spread_var + seed_var) if spread_var + seed_var else math.nan,
        "paired_sd": math.sqrt(statistics.mean(diffs)),
        "independent_sd": math.sqrt(2 * seed_var),
    }


def _split_taus(scores: list[list[float]], rounds: int = 200) -> tuple[float, float]:
    """Mean Kendall tau of one seed's ranking against the mean of the remaining seeds:
    ``(independent seeds per candidate, one common seed)``."""
    k = len(scores[0])
    rng = random.Random(0)
    independent, common = [], []
    for seed in range(k):
        rest = [statistics.mean(s[:seed] + s[seed + 1 :]) for s in scores]
        common.append(kendall_tau([s[seed] for s in scores], rest))
    for _ in range(rounds):
        picks = [rng.randrange(k) for _ in scores]
        one = [s[p] for s, p in zip(scores, picks, strict=True)]
        rest = [statistics.mean(s[:p] + s[p + 1 :]) for s, p in zip(scores, picks, strict=True)]
        independent.append(kendall_tau(one, rest))
    return statistics.mean(independent), statistics.mean(common)


def report(out: Path) -> None:
    records = [Record(**json.loads(line)) for line in _lines(out / "records.jsonl")]
    recipes = sorted({(r.recipe, r.steps) for r in records})
    lines = [
        "# Short-score noise: the candidate against the fine-tune's seed",
        "",
        "Accuracy in points, on the validation split (the `export` recipe: on the test "
        "split); every candidate recovered once per seed (a seed fixes the batches and their "
        "order). See the docstring of `benchmarks/score_noise.py`.",
        "",
        "| recipe | steps | candidates | seeds | mean % | seed sd | spread | signal share "
        "| paired sd (common seed) | sd of a difference (independent seeds) "
        "| tau one seed vs rest (independent) | (common) | tau vs export: one seed "
        "| mean of seeds | seconds (median) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for recipe, steps in recipes:
        chosen = [r for r in records if (r.recipe, r.steps) == (recipe, steps)]
        seeds = sorted({r.seed for r in chosen})
        by_candidate: dict[int, dict[int, float]] = {}
        exports: dict[int, float] = {}
        for r in chosen:
            by_candidate.setdefault(r.candidate, {})[r.seed] = 100 * r.accuracy
            exports[r.candidate] = r.export_test
        complete = [c for c, v in by_candidate.items() if len(v) == len(seeds)]
        full = [[by_candidate[c][s] for s in seeds] for c in complete]
        if len(full) < 3 or len(seeds) < 2:
            continue
        noise = _noise(full)
        independent, common = _split_taus(full) if len(seeds) >= 3 else (math.nan, math.nan)
        truth = [exports[c] for c in complete]
        one_seed = mean_seeds = math.nan
        if not any(math.isnan(t) for t in truth):
            one_seed = statistics.mean(
                kendall_tau([f[i] for f in full], truth) for i in range(len(seeds))
            )
            mean_seeds = kendall_tau([statistics.mean(f) for f in full], truth)
        lines.append(
            f"| {recipe} | {steps} | {len(full)} | {len(seeds)} "
            f"| {statistics.mean(map(statistics.mean, full)):.2f} | {noise['seed_sd']:.2f} "
            f"| {noise['spread']:.2f} | {noise['signal']:.2f} | {noise['paired_sd']:.2f} "
            f"| {noise['independent_sd']:.2f} | {independent:.2f} | {common:.2f} "
            f"| {one_seed:.2f} | {mean_seeds:.2f} "
            f"| {statistics.median(r.seconds for r in chosen):.1f} |"
        )
    lines += ["", "## Per candidate (mean +- sd over seeds)", ""]
    lines += [
        "| candidate | size % | export test % | "
        + " | ".join(f"{r} {s}" for r, s in recipes)
        + " |"
    ]
    lines += ["|---|---:|---:|" + "---:|" * len(recipes)]
    for candidate in sorted({r.candidate for r in records}):
        mine = [r for r in records if r.candidate == candidate]
        cells = []
        for recipe, steps in recipes:
            values = [100 * r.accuracy for r in mine if (r.recipe, r.steps) == (recipe, steps)]
            sd = statistics.stdev(values) if len(values) > 1 else math.nan
            cells.append(f"{statistics.mean(values):.2f} +- {sd:.2f}" if values else "")
        lines.append(
            f"| {mine[0].label} | {100 * mine[0].size_fraction:.1f} "
            f"| {100 * mine[0].export_test:.2f} | " + " | ".join(cells) + " |"
        )
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default=DEFAULT_CHECKPOINT)
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    parser.add_argument("--out", default="benchmarks/results/score-noise")
    parser.add_argument("--from-study", default="", help="STORAGE_FILE:STUDY (SQLite).")
    parser.add_argument("--from-rows", default="", help="RECORDS_FILE:SETTING/TARGET.")
    parser.add_argument("--export-lr", type=float, default=1e-3, help="With --from-rows.")
    parser.add_argument("--limit", type=int, default=8, help="The study's best N trials.")
    parser.add_argument("--only", default="", help="With --from-rows: these methods only.")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--recipes", default="old:40,kd-warm:40", help="RECIPE:STEPS,...")
    parser.add_argument("--criterion", default="angle-next")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="Only summarise the records.")
    args = parser.parse_args()
    budgets: dict[str, list[int]] = {}
    for item in args.recipes.split(","):
        recipe, _, steps = item.partition(":")
        if recipe not in SCORED or not steps.isdigit():
            raise SystemExit(f"--recipes item {item!r}: use RECIPE:STEPS, RECIPE in {list(SCORED)}")
        budgets.setdefault(recipe, []).append(int(steps))
    if args.report:
        report(Path(args.out))
    elif bool(args.from_study) == bool(args.from_rows):
        raise SystemExit("give exactly one of --from-study and --from-rows")
    else:
        run(args, budgets)


if __name__ == "__main__":
    main()
