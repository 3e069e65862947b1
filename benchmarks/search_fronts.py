"""Search fronts: which method finds the best accuracy/size front, judged on data it never saw?

For one trained checkpoint (a *setting*), every method in ``--methods`` (samplers of the joint
search: ``gp``, ``random``, ``tpe``, ``nsga2``, ``botorch``; with the suffix ``-bits`` the same
sampler also searches each inner layer's bit-width among ``--search-bits``) runs the same
two-objective search for every seed in ``--seeds``, with the same budget in fine-tune steps
(``--trials`` trials of the search's fine-tune, its four reference trials included: every
method gets them). Then each study's validation front is rebuilt trial by trial (the trial's
own fine-tune replayed, so the network is the one that was scored) and scored once on the test
split, which no search saw. ``layerwise`` is the paper's greedy method on the same budget in
steps (``layerwise_schedule``); its front is the unpruned network and its one result, whose
saved network is scored.

Reported per method, mean +- sd over seeds:

- ``hv_test``: hypervolume of the test-scored front members, accuracy (fraction) against size
  (fraction of the unpruned quantized network), reference point fixed in advance at (parent
  test accuracy - 10 points, size 1.0); ``hv_val``: the same on the validation scores the
  search optimised;
- wall time per trial split into fine-tune, evaluation, pruning and tracing, and the rest
  (sampler, storage), from the trials' records and timestamps.

Studies persist in ``--out/studies.db`` and the test scores in ``--out/records.jsonl`` (one line
per rebuilt trial, written as it finishes): a rerun resumes both, so the run spans sessions.
Commit both (``git add -f`` the database: ``*.db`` is ignored); a study whose front points
are recorded but whose database is gone is refused rather than silently searched again.

    python benchmarks/search_fronts.py --methods gp,random,tpe --seeds 0,1,2 --trials 24
    python benchmarks/search_fronts.py --methods gp,gp-bits --seeds 0 --trials 24
    python benchmarks/search_fronts.py --methods layerwise --seeds 0,1,2 --trials 24
    python benchmarks/search_fronts.py --report
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import optuna
import torch
from search_settings import (
    CRITERION,
    SETTINGS,
    TIME_SPLIT_HEADER,
    residual_space_file,
    time_split_rows,
)

from autoprune.config import FinetuneConfig, LayerwiseConfig
from autoprune.device import tune_cpu_allocator
from autoprune.metrics import measure
from autoprune.models import load_checkpoint
from autoprune.quant import parse_bit_choices
from autoprune.search.pareto import trials_frame
from autoprune.search.record import TrialRecord, trial_ratios
from autoprune.search.session import SearchRequest, SearchSession
from autoprune.search.space import load_search_space
from autoprune.train import evaluate

REFERENCE_DROP = 0.10  # the hypervolume's reference accuracy: parent test accuracy minus this
BITS_SUFFIX = "-bits"  # a method that also searches per-layer bit-widths
LAYERWISE = "layerwise"  # the paper's greedy method, one group at a time


def layerwise_schedule(setting: str, space: Path, trials: int) -> LayerwiseConfig:
    """The layer-wise method on the joint search's budget in fine-tune steps (``trials`` of
    its fine-tune): the final fine-tune at its default, the rest shared by the retrains after
    each group, as if every group were pruned enough to retrain. Its evaluations prune
    without fine-tuning and cost no steps."""
    loaded = load_checkpoint(SETTINGS[setting].checkpoint)
    example = torch.zeros(1, *loaded.config.input_shape)
    groups = load_search_space(loaded.config.name, loaded.model, example, str(space)).groups
    final = LayerwiseConfig().final_steps
    retrain = (trials * FinetuneConfig().steps - final) // len(groups)
    return LayerwiseConfig(retrain_steps=retrain, final_steps=final)


@dataclass(frozen=True)
class FrontPoint:
    setting: str
    method: str
    seed: int
    trial: int
    size_fraction: float  # of the unpruned quantized network
    val: float
    test: float
    parent_test: float
    test_images: int


def hypervolume(points: list[tuple[float, float]], reference: tuple[float, float]) -> float:
    """Area dominated by ``(accuracy, size)`` points (accuracy up, size down) and bounded by
    ``reference = (accuracy, size)``; points not better than it on both count for nothing."""
    ref_accuracy, ref_size = reference
    useful = sorted((s, a) for a, s in points if a > ref_accuracy and s < ref_size)
    if not useful:
        return 0.0
    edges = [size for size, _ in useful[1:]] + [ref_size]
    # a staircase: from each point's size to the next one's, the best accuracy found so far
    area, best = 0.0, ref_accuracy
    for (size, accuracy), next_size in zip(useful, edges, strict=True):
        best = max(best, accuracy)
        area += (next_size - size) * (best - ref_accuracy)
    return area


def _load(path: Path) -> dict[tuple[str, str, int, int], FrontPoint]:
    if not path.is_file():
        return {}
    points = [FrontPoint(**json.loads(line)) for line in path.read_text().splitlines() if line]
    return {(p.setting, p.method, p.seed, p.trial): p for p in points}


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "records.jsonl"
    done = _load(log)
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    space = residual_space_file(out, "resnet20")
    storage = out / "studies.db"
    methods = args.methods.split(",")
    # the joint methods do not need it: the checkpoint is loaded for it only when asked
    schedule = (
        layerwise_schedule(args.setting, space, args.trials)
        if LAYERWISE in methods
        else LayerwiseConfig()
    )
    for seed in (int(s) for s in args.seeds.split(",")):
        for method in methods:
            widths = method.endswith(BITS_SUFFIX)
            name = f"{args.setting}-{method}-seed{seed}"
            stored = storage.is_file() and name in optuna.get_all_study_names(
                f"sqlite:///{storage}"
            )
            if not stored and any(key[:3] == (args.setting, method, seed) for key in done):
                # a new study would not be the one the recorded fronts came from
                raise SystemExit(
                    f"{log} holds front points of {name} but {storage} has no such study: "
                    "restore the database, or remove those lines to run the study afresh"
                )
            layerwise = method == LAYERWISE
            request = SearchRequest(
                checkpoint=SETTINGS[args.setting].checkpoint,
                data_dir=SETTINGS[args.setting].data_dir,
                trials=args.trials,
                sampler="gp" if layerwise else method.removesuffix(BITS_SUFFIX),
                search_bits=parse_bit_choices(args.search_bits) if widths else None,
                criterion=CRITERION,
                search_space=str(space),
                storage=str(storage),
                study_name=name,
                seed=seed,
                method="layerwise" if layerwise else "joint",
                layerwise=schedule,
            )
            begun = time.perf_counter()
            session = SearchSession(request)
            result = session.run_layerwise() if layerwise else session.run()
            print(f"{method} seed {seed}: search done ({time.perf_counter() - begun:.0f} s)")
            parent_test = evaluate(session.baseline, session.data, "test").accuracy
            unpruned = session.reference.quantized_size_bits
            images = session.data.num_examples("test")
            front = trials_frame(session.study)
            for number in front["trial"]:
                key = (args.setting, method, seed, int(number))
                if key in done:
                    continue
                trial = session.study.trials[int(number)]
                if not layerwise:  # the trial's own fine-tune, replayed
                    network, _ = session.evaluator.build(
                        trial_ratios(trial), seed=request.seed + trial.number
                    )
                elif TrialRecord.from_trial(trial).reference == "unpruned":
                    network = session.baseline  # scored as it is, without a fine-tune
                else:  # the method's own result, saved with its final fine-tune
                    network = load_checkpoint(
                        result.checkpoint, model=session.model_config.source
                    ).model
                size = measure(network, session.model_config.input_shape).size_bits
                assert size == TrialRecord.from_trial(trial).size_bits
                point = FrontPoint(
                    args.setting,
                    method,
                    seed,
                    trial.number,
                    size / unpruned,
                    trial.values[0],
                    evaluate(network, session.data, "test").accuracy,
                    parent_test,
                    images,
                )
                with log.open("a") as handle:
                    handle.write(json.dumps(asdict(point)) + "\n")
                done[key] = point
                print(
                    f"  trial {trial.number:>3}: size {100 * point.size_fraction:5.1f} %  val "
                    f"{100 * point.val:6.2f} %  test {100 * point.test:6.2f} %",
                    flush=True,
                )
    report(out)


def _mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    sd = statistics.stdev(values) if len(values) > 1 else float("nan")
    return f"{statistics.mean(values):.4f} +- {sd:.4f}"


def _front_members(storage: Path) -> dict[str, int]:
    """Each stored study's number of front members: the points a finished rebuild records."""
    if not storage.is_file():
        return {}
    url = f"sqlite:///{storage}"
    names = [name for name in optuna.get_all_study_names(url) if "/" not in name]
    return {
        name: len(trials_frame(optuna.load_study(study_name=name, storage=url))) for name in names
    }


def report(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    points = list(_load(out / "records.jsonl").values())
    lines = [
        "# Search fronts on held-out data",
        "",
        f"Criterion {CRITERION}; every front member rebuilt with its own fine-tune and scored "
        "once on the test split. Hypervolume: accuracy (fraction) x size (fraction of the "
        f"unpruned quantized network), reference (parent test accuracy - {REFERENCE_DROP:.2f},"
        " size 1.0).",
        "",
        "| setting | method | seeds | front size | hv_val | hv_test | hv_test per seed "
        "| best test at <= 50 % |",
        "|---|---|---:|---:|---|---|---|---:|",
    ]
    by_method: dict[tuple[str, str], dict[int, list[FrontPoint]]] = {}
    for point in points:
        by_method.setdefault((point.setting, point.method), {}).setdefault(point.seed, [])
        by_method[(point.setting, point.method)][point.seed].append(point)
    members = _front_members(out / "studies.db")
    unfinished = []
    for (setting, method), seeds in sorted(by_method.items()):
        for seed, front in list(seeds.items()):
            expected = members.get(f"{setting}-{method}-seed{seed}")
            if expected is not None and len(front) < expected:  # still being rebuilt
                unfinished.append(f"{setting}-{method}-seed{seed} ({len(front)} of {expected})")
                del seeds[seed]
        if not seeds:
            continue
        hv_val, hv_test, best = [], [], []
        for front in seeds.values():
            reference = (front[0].parent_test - REFERENCE_DROP, 1.0)
            hv_val.append(hypervolume([(p.val, p.size_fraction) for p in front], reference))
            hv_test.append(hypervolume([(p.test, p.size_fraction) for p in front], reference))
            small = [p.test for p in front if p.size_fraction <= 0.5]
            if small:
                best.append(max(small))
        fronts = statistics.mean(len(f) for f in seeds.values())
        best_text = f"{100 * statistics.mean(best):.2f}" if best else ""
        per_seed = ", ".join(f"{seed}: {hv:.4f}" for seed, hv in zip(seeds, hv_test, strict=True))
        lines.append(
            f"| {setting} | {method} | {len(seeds)} | {fronts:.1f} | {_mean_sd(hv_val)} | "
            f"{_mean_sd(hv_test)} | {per_seed} | {best_text} |"
        )
    if unfinished:
        lines += ["", "Fronts not fully rebuilt yet (left out): " + ", ".join(unfinished) + "."]
    if (out / "studies.db").is_file():
        lines += ["", "## Where the search's wall time goes (finished trials)", ""]
        lines += TIME_SPLIT_HEADER + time_split_rows(f"sqlite:///{out / 'studies.db'}")
    text = "\n".join(lines)
    (out / "report.md").write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="w2a2-fmnist")
    parser.add_argument("--methods", default="gp,random,tpe")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--search-bits", default="2,4,8", help="widths the -bits methods choose among"
    )
    parser.add_argument("--out", default="benchmarks/results/search_fronts")
    parser.add_argument("--report", action="store_true", help="only summarise the records")
    args = parser.parse_args()
    if args.report:
        report(Path(args.out))
    else:
        run(args)


if __name__ == "__main__":
    main()
