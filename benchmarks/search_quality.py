"""Search quality at matched size: does the search beat every cheaper way to choose ratios?

For one trained checkpoint (a *setting*) and one size target, every method picks per-group
ratios whose network meets the target exactly (within one channel of it), then every network
gets the same criterion, the same export recipe (a long, distilled fine-tune) and one score on
the test split, which no method saw:

- ``parent``: the unpruned network, given the export recipe too (the reference).
- ``uniform``, ``global``, ``lamp``, ``greedy``: the search-free allocations of
  ``autoprune.search.allocations`` (``greedy`` runs a sensitivity scan first).
- ``uniform-lowest-bits``: every inner DoReFa layer at 2 bits, then uniform ratios to the
  budget: what a user gets by lowering the precision instead of searching it.
- ``gp``: the search in budget mode (``target_size``), ``--trials`` trials; its best
  trial by validation accuracy is exported. ``gp-warm``: the same with
  ``warm_start="sensitivity"``. ``gp-halving``: the same with successive halving (one rung
  after 10 of the 40 fine-tuning steps, the best third goes on) and twice the trials, about
  the fine-tuning steps of ``gp`` (stopped trials count; compare the seconds choosing).
- ``gp-kd``: today's default search, whose trials are distilled from the parent after a
  BatchNorm re-estimate and a short warmup (the export recipe cut to 40 steps). ``gp``,
  ``gp-warm`` and ``gp-halving`` score trials as the default did until 2026-11-30 (plain
  cross-entropy, ``CROSS_ENTROPY``), which is also every row's ``short_val``; a search's own
  ``short_val`` is its best trial's score by its own recipe. ``gp-kd-warm``: ``gp-kd`` with
  ``warm_start="sensitivity"`` (the greedy allocation is one of its trials). ``gp-kd-bits``:
  ``gp-kd`` with each inner layer's bit-width searched among 2, 4 and 8 too (``--search-bits
  2,4,8``; a row's ``ratios`` then hold the widths it exported at, as ``bits:<layer>``). Its
  study also holds the reference at the lowest width that such searches queue; the one row
  ``gp-kd-bits-noref`` (W4A4, 30 %) is the first run, made before they did (its study renamed
  to match; a record, not a method to rerun).
- ``gp-pick-loss`` (and likewise for each search): the same study, its final pick made by the
  lowest validation loss after the short fine-tune rather than the highest accuracy. When both
  rules pick the same trial, the row is the search's own (the same network, not exported twice).
- ``gp-kd-confirm`` (and likewise for each search): the same study, its 3 best trials and its
  uniform reference fine-tuned twice more with fresh seeds at the search's length
  (``autoprune search --confirm 3 --confirm-steps search``); the pick is the best fresh mean
  (its ``short_val``), the seconds include the rescoring. What a budget search picked by
  default from 2026-11-30 until its promotion replaced it.
- ``gp-kd-promote`` (and likewise for each search, e.g. ``gp-kd-warm-promote``): the same
  study through the product's promotion (``autoprune.search.confirm``, what a budget search
  picks by default since 2026-12-01): its 2 best trials and every reference trial it queued
  (uniform; greedy and half-greedy with the warm start) given the export recipe, the pick the
  best validation accuracy after it (its ``short_val``). The benchmark's export seed stands
  in for the trial's, as in every row, so the pick's network *is* its export: ``seconds
  export`` is 0 and the promotion counts as choosing. Scores are stored on the study.

Every method's network is also scored after the search's own short fine-tune on the
validation split (``short_val``), so the search's advantage in its own currency can be set
against the one that survives the export recipe.

The search space is the model's bundled one plus its residual groups (``residual: true``), for
every method alike. Results are JSON lines in ``--out`` (one per setting, target, method),
written as they finish; studies persist in ``--out/studies.db``, so a rerun resumes and the
run spans sessions. ``--report`` only reads them and writes ``report.md``.

    python benchmarks/search_quality.py --setting w2a2-fmnist --target 50% --trials 24
    python benchmarks/search_quality.py --report
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path

import torch
from search_settings import (
    CRITERION,
    SETTINGS,
    TIME_SPLIT_HEADER,
    residual_space_file,
    time_split_rows,
)

from autoprune.config import EXPORT_FINETUNE, FinetuneConfig, HalvingConfig
from autoprune.device import tune_cpu_allocator
from autoprune.metrics import measure
from autoprune.search.allocations import ALLOCATIONS, AllocationContext, allocate
from autoprune.search.budget import BudgetAllocator
from autoprune.search.confirm import DEFAULT_TOP, SEARCH_LENGTH, confirm
from autoprune.search.record import TrialRecord, trial_ratios
from autoprune.search.sensitivity import scan_sensitivity
from autoprune.search.session import SearchRequest, SearchSession
from autoprune.search.space import BITS_PREFIX
from autoprune.train import evaluate

# What `autoprune export` recovers a trial with. The first rows were exported at lr 3e-4
# (autoprune's rate until 2026-11-30, when 1e-3 measured better); `--export-lr 3e-4` still
# reproduces them, and the steps and rate are part of each row's identity.
EXPORT = EXPORT_FINETUNE
# The trials' recipe of autoprune's default search until 2026-11-30: plain cross-entropy from
# a fresh Adam (no BatchNorm re-estimate, no warmup, no distillation). The first rows' `gp`
# searches used it, and so does every row's `short_val`.
CROSS_ENTROPY = FinetuneConfig(warmup=0.0, distill=0.0, bn_batches=0)
# Each search: the default request changed by these fields (trials: a multiple of --trials).
SEARCHES: dict[str, dict] = {
    "gp": {"finetune": CROSS_ENTROPY},
    "gp-warm": {"finetune": CROSS_ENTROPY, "warm_start": "sensitivity"},
    "gp-halving": {"finetune": CROSS_ENTROPY, "halving": HalvingConfig(rungs=(10,)), "trials": 2},
    "gp-kd": {},  # today's default: trials distilled (the export recipe cut to 40 steps)
    # the same, the greedy allocation (and half of it) queued first from a sensitivity scan
    "gp-kd-warm": {"warm_start": "sensitivity"},
    # the same, each inner layer's bit-width searched too (`--search-bits 2,4,8`); the budget
    # lowers widths it cannot afford, so every trial still meets it
    "gp-kd-bits": {"search_bits": (2, 4, 8)},
}
# A search's study again, its final pick made by the lowest validation loss instead of the
# highest validation accuracy (no new trials: it resumes the study of the search it names).
LOSS_PICK = "-pick-loss"
# A search's study again, its 3 best trials and its uniform reference fine-tuned twice more with
# fresh seeds at the search's length (`--confirm 3 --confirm-steps search`); the pick is the
# best fresh mean.
CONFIRM = "-confirm"
CONFIRM_TOP, CONFIRM_SEEDS = 3, 2
# A search's study again, through the product's promotion: its PROMOTE_TOP best trials and
# every reference trial it queued (uniform; greedy and half-greedy with the warm start) get the
# export recipe, and the pick is the best *validation* accuracy after it (the test split still
# decides nothing).
PROMOTE = "-promote"
PROMOTE_TOP = DEFAULT_TOP  # the product's default
# What a budget search picks by default (promoted to the export recipe) since 2026-12-01.
DEFAULT_PICK = "gp-kd" + PROMOTE
# The search-free answer to searched widths: every inner layer at the lowest width of
# `gp-kd-bits`, then uniform ratios to the budget (none when the lower width alone meets it).
LOWEST_BITS = "uniform-lowest-bits"
METHODS = (
    "parent",
    *ALLOCATIONS.names(),
    LOWEST_BITS,
    *SEARCHES,
    *(s + LOSS_PICK for s in SEARCHES),
    *(s + CONFIRM for s in SEARCHES),
    *(s + PROMOTE for s in SEARCHES),
)


@dataclass(frozen=True)
class Row:
    setting: str
    target: str
    method: str
    size_pct: float  # of the unpruned quantized network, measured on the pruned network
    short_val: float  # after the search's short fine-tune, validation split
    test: float  # after the export recipe, test split
    seconds_choose: float  # choosing the ratios (search trials, sensitivity scan)
    seconds_export: float
    ratios: dict[str, float]
    trials: int = 0
    val_images: int = 0
    test_images: int = 0
    export_steps: int = 400  # rows written before these were recorded had 400 at 3e-4
    export_lr: float = 3e-4


def _key(setting: str, target: str, method: str, export_steps: int, export_lr: float) -> str:
    return f"{setting}/{target}/{method}/{export_steps}/{export_lr:g}"


def _load(path: Path) -> dict[str, Row]:
    if not path.is_file():
        return {}
    rows = [Row(**json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return {_key(r.setting, r.target, r.method, r.export_steps, r.export_lr): r for r in rows}


def _request(args: argparse.Namespace, space: Path, method: str, **extra) -> SearchRequest:
    return SearchRequest(
        checkpoint=SETTINGS[args.setting].checkpoint,
        data_dir=SETTINGS[args.setting].data_dir,
        target_size=args.target,
        trials=args.trials,
        criterion=CRITERION,
        search_space=str(space),
        storage=str(Path(args.out) / "studies.db"),
        study_name=f"{args.setting}-{args.target}-{method}-seed{args.seed}",
        seed=args.seed,
        **extra,
    )


def _append(log: Path, row: Row) -> None:
    with log.open("a") as handle:
        handle.write(json.dumps(asdict(row)) + "\n")


def run(args: argparse.Namespace) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "records.jsonl"
    done = _load(log)
    torch.set_num_threads(args.threads)
    tune_cpu_allocator()
    space_path = residual_space_file(out, "resnet20")

    started = time.perf_counter()
    # the default search's session: its data, parent, space and budget serve every method
    session = SearchSession(_request(args, space_path, "gp", **SEARCHES["gp"]))
    print(f"session ready in {time.perf_counter() - started:.0f} s", flush=True)
    parent, data, config = session.baseline, session.data, session.model_config
    allocator = session.allocator
    assert allocator is not None
    unpruned = measure(parent, config.input_shape).size_bits
    export = replace(EXPORT, steps=args.export_steps, lr=args.export_lr)
    exporter = replace(session.evaluator, finetune_config=export)
    recipe = (args.export_steps, args.export_lr)
    val_images = data.num_examples("val")
    test_images = data.num_examples("test")

    def keep(row: Row) -> None:
        _append(log, row)
        done[_key(row.setting, row.target, row.method, row.export_steps, row.export_lr)] = row

    def record(method, network, ratios, short_val, test, chose, seconds_export, trials=0):
        row = Row(
            args.setting,
            args.target,
            method,
            100 * measure(network, config.input_shape).size_bits / unpruned,
            short_val,
            test,
            round(chose, 1),
            round(seconds_export, 1),
            ratios,
            trials,
            val_images,
            test_images,
            args.export_steps,
            args.export_lr,
        )
        keep(row)
        print(
            f"{args.setting} {args.target} {method:>8s}: size {row.size_pct:5.2f} %  short val "
            f"{100 * short_val:6.2f} %  export test {100 * test:6.2f} %  "
            f"({row.seconds_choose:.0f} s + {row.seconds_export:.0f} s)",
            flush=True,
        )

    def finish(method: str, ratios: dict[str, float], short_val: float, chose: float, trials=0):
        begun = time.perf_counter()
        network, _ = exporter.build(ratios, seed=args.seed + 10_000)
        test = evaluate(network, data, "test").accuracy
        record(method, network, ratios, short_val, test, chose, time.perf_counter() - begun, trials)

    networks: dict[tuple[str, int], torch.nn.Module] = {}

    def export_of(study: str, trial) -> torch.nn.Module:
        """A trial's network after the export recipe with every row's export seed (built once)."""
        if (study, trial.number) not in networks:
            built, _ = exporter.build(trial_ratios(trial), seed=args.seed + 10_000)
            networks[study, trial.number] = built
        return networks[study, trial.number]

    def promoted_score(study: str, trial, _round: int) -> float:
        return evaluate(export_of(study, trial), data, "val").accuracy

    def searcher_for(search: str) -> SearchSession:
        """The session of one of SEARCHES (the default's is the one already open)."""
        if search == "gp":
            return session
        changes = dict(SEARCHES[search])
        trials = changes.pop("trials", 1) * args.trials
        return SearchSession(replace(_request(args, space_path, search, **changes), trials=trials))

    def short_val(ratios: dict[str, float]) -> float:
        return session.evaluator(ratios, seed=args.seed).val_accuracy

    sensitivity_cache: list = []

    def bits_allocator() -> BudgetAllocator:
        """The budget's allocator over the groups and the searched widths of `gp-kd-bits`."""
        request = _request(args, space_path, "gp-kd-bits", **SEARCHES["gp-kd-bits"])
        found = SearchSession(request).allocator
        assert found is not None
        return found

    def sensitivity():
        if not sensitivity_cache:
            begun = time.perf_counter()
            table = scan_sensitivity(
                parent,
                data,
                allocator.space,
                criterion=CRITERION,
                input_shape=config.input_shape,
                calibration=session.evaluator.calibration(),
                seed=args.seed,
            )
            sensitivity_cache.append((table, time.perf_counter() - begun))
        return sensitivity_cache[0][0]

    methods = args.methods.split(",") if args.methods else list(METHODS)
    for method in methods:
        if _key(args.setting, args.target, method, *recipe) in done:
            continue
        begun = time.perf_counter()
        # the parent does not depend on the target: the same network, recipe and seed
        twin = [
            r
            for r in done.values()
            if r.setting == args.setting
            and r.method == "parent"
            and (r.export_steps, r.export_lr) == recipe
        ]
        if method == "parent" and twin:
            keep(replace(twin[0], target=args.target))
            continue
        # the choice does not depend on the export recipe: another recipe's row gives it
        chosen = [
            r
            for r in done.values()
            if (r.setting, r.target, r.method) == (args.setting, args.target, method)
        ]
        if chosen:
            earlier = chosen[0]
            finish(
                method, earlier.ratios, earlier.short_val, earlier.seconds_choose, earlier.trials
            )
        elif method == "parent":
            ratios = dict.fromkeys(allocator.space.names, 0.0)
            finish(method, ratios, short_val(ratios), 0.0)
        elif method == LOWEST_BITS:
            lowest = bits_allocator()
            assert lowest.space.bits is not None
            widths = dict.fromkeys(lowest.space.bits.layers, min(lowest.space.bits.choices))
            ratios = {
                **lowest.ratios_for(lowest.uniform_shape(), widths),
                **{BITS_PREFIX + layer: width for layer, width in widths.items()},
            }
            chose = time.perf_counter() - begun  # building the widths' cost model included
            finish(method, ratios, short_val(ratios), chose)
        elif method in ALLOCATIONS:
            context = AllocationContext(parent, config.input_shape, allocator, sensitivity)
            ratios = allocate(method, context)
            chose = time.perf_counter() - begun
            finish(method, ratios, short_val(ratios), chose)
        elif method.endswith(PROMOTE) and method.removesuffix(PROMOTE) in SEARCHES:
            searcher = searcher_for(method.removesuffix(PROMOTE))
            searcher.run()  # resumes the search's study: no new trials once it is complete
            complete = [t for t in searcher.study.trials if t.state.name == "COMPLETE"]
            chose = sum(sum((TrialRecord.from_trial(t).seconds or {}).values()) for t in complete)
            exported = partial(export_of, searcher.study_name)
            begun_promote = time.perf_counter()
            # the product's promotion (`autoprune search --confirm 2`): its contenders, stored
            # scores and pick, with the benchmark's export seed instead of the trial's
            found = confirm(
                searcher.study,
                partial(promoted_score, searcher.study_name),
                top=PROMOTE_TOP,
                seeds=1,
                steps=args.export_steps,
            )
            chose += time.perf_counter() - begun_promote  # 0 when resumed from storage
            by_number = {t.number: t for t in complete}
            for c in sorted(found, key=lambda c: c.trial):
                # test read only for the log, of networks built in this run (not a resume)
                built = networks.get((searcher.study_name, c.trial))
                test_of = (
                    ""
                    if built is None
                    else f", test {100 * evaluate(built, data, 'test').accuracy:.2f} %"
                )
                print(
                    f"  trial {c.trial} ({c.reference or 'searched'}): short "
                    f"{100 * c.searched:.2f} %, after the export recipe val "
                    f"{100 * c.mean:.2f} %{test_of}",
                    flush=True,
                )
            pick = by_number[found[0].trial]
            network = exported(pick)
            test = evaluate(network, data, "test").accuracy
            print(f"  picked trial {pick.number}", flush=True)
            # the pick's export was part of choosing: no export seconds of its own
            record(
                method, network, trial_ratios(pick), found[0].mean, test, chose, 0.0, len(complete)
            )
        elif method.removesuffix(LOSS_PICK).removesuffix(CONFIRM) in SEARCHES:
            by_loss = method.endswith(LOSS_PICK)
            confirmed = method.endswith(CONFIRM)
            method = method.removesuffix(LOSS_PICK).removesuffix(CONFIRM)
            searcher = searcher_for(method)
            searcher.run()
            trials = [t for t in searcher.study.trials if t.state.name in ("COMPLETE", "PRUNED")]
            complete = [t for t in trials if t.state.name == "COMPLETE"]
            chose = sum(sum((TrialRecord.from_trial(t).seconds or {}).values()) for t in trials)
            score = None
            if by_loss:
                best = min(complete, key=lambda t: (TrialRecord.from_trial(t).val_loss, t.number))
            elif confirmed:
                begun_confirm = time.perf_counter()
                found = searcher.confirm(CONFIRM_TOP, seeds=CONFIRM_SEEDS, steps=SEARCH_LENGTH)
                chose += time.perf_counter() - begun_confirm  # 0 when resumed from storage
                for c in found:
                    print(
                        f"  trial {c.trial}: searched {100 * c.searched:.2f} %, fresh "
                        f"{' '.join(f'{100 * a:.2f}' for a in c.rescored)} %",
                        flush=True,
                    )
                best = next(t for t in complete if t.number == found[0].trial)
                score = found[0].mean
            else:
                best = max(complete, key=lambda t: (t.values[0], -t.number))
            assert TrialRecord.from_trial(best).size_bits <= allocator.budget.limit
            ratios = trial_ratios(best)
            name = method + (LOSS_PICK if by_loss else CONFIRM if confirmed else "")
            # the same network as the search's own pick: its export is not run twice
            own = done.get(_key(args.setting, args.target, method, *recipe))
            if by_loss and own is not None and own.ratios == ratios:
                keep(replace(own, method=name))
                continue
            if confirmed and own is not None and own.ratios == ratios:
                keep(replace(own, method=name, short_val=score, seconds_choose=round(chose, 1)))
                continue
            short = best.values[0] if score is None else score
            finish(name, ratios, short, chose, trials=len(trials))
        else:
            raise SystemExit(f"unknown method {method!r}: choose from {', '.join(METHODS)}")
    report(out)


def _standard_error(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def _targets(groups: dict[tuple[str, str, int, float], list[Row]]) -> list[str]:
    """The issue's matched-size targets, judged on the default search's pick and export recipe.

    At 50 % the default's network may lose at most 1.0 test point against the parent; at 30 %
    it must beat the best search-free allocation by at least 1.0. Each gap is shown beside two
    standard errors of a difference of two scores on the test split (a smaller gap is noise).
    Other targets have no goal in the issue and are left out.
    """
    lines = [
        "## Targets (the default search, `" + DEFAULT_PICK + "`, at the default export recipe)",
        "",
        "| setting | target | default test % | compared with | its test % | gap | "
        "two SE of the gap | target | met |",
        "|---|---|---:|---|---:|---:|---:|---|---|",
    ]
    search_free = set(ALLOCATIONS.names())
    for (setting, target, steps, lr), found in sorted(groups.items()):
        if (steps, lr) != (EXPORT.steps, EXPORT.lr) or target not in ("50%", "30%"):
            continue
        by_method = {r.method: r for r in found}
        default = by_method.get(DEFAULT_PICK)
        if target == "50%":
            other, goal = by_method.get("parent"), -1.0
        else:
            rivals = [r for r in found if r.method in search_free]
            other, goal = max(rivals, key=lambda r: r.test, default=None), 1.0
        if default is None or other is None:
            missing = DEFAULT_PICK if default is None else "a comparison row"
            lines.append(f"| {setting} | {target} | | | | | | | {missing} not run |")
            continue
        n = default.test_images
        gap = 100 * (default.test - other.test)
        two_se = 200 * math.hypot(_standard_error(default.test, n), _standard_error(other.test, n))
        wanted = f">= {goal:+.1f}"
        lines.append(
            f"| {setting} | {target} | {100 * default.test:.2f} | {other.method} | "
            f"{100 * other.test:.2f} | {gap:+.2f} | {two_se:.2f} | {wanted} | "
            f"{'yes' if gap >= goal else f'no, by {goal - gap:.2f}'} |"
        )
    return [*lines, ""]


def report(out: Path) -> None:
    rows = _load(out / "records.jsonl")
    lines = [
        "# Search quality at matched size",
        "",
        "Each network is pruned with the same criterion "
        f"({CRITERION}), recovered by the same export recipe (distilled, with the steps and "
        "peak rate each section names) and scored once on the test split. `short val`: after "
        "the search's own short fine-tune, on the validation split. `vs parent`: export test "
        "accuracy minus the parent's (given the same export recipe). One seed per row.",
        "",
    ]
    groups: dict[tuple[str, str, int, float], list[Row]] = {}
    for row in rows.values():
        groups.setdefault((row.setting, row.target, row.export_steps, row.export_lr), []).append(
            row
        )
    for (setting, target, export_steps, export_lr), found in sorted(groups.items()):
        order = {m: i for i, m in enumerate(METHODS)}
        found.sort(key=lambda r: order.get(r.method, 99))
        parent = next((r for r in found if r.method == "parent"), None)
        n_test = found[0].test_images
        se = max(_standard_error(r.test, n_test) for r in found)  # largest at the lowest score
        lines += [
            f"## {setting}, target size {target}, export recipe {export_steps} steps at lr "
            f"{export_lr:g}",
            "",
            f"Test images: {n_test:,} (one standard error at most {100 * se:.2f} pt); "
            f"validation images: {found[0].val_images:,}.",
            "",
            "| method | size % | short val % | export test % | vs parent | trials | "
            "seconds choosing | seconds export |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in found:
            versus = f"{100 * (r.test - parent.test):+.2f}" if parent else ""
            lines.append(
                f"| {r.method} | {r.size_pct:.2f} | {100 * r.short_val:.2f} | "
                f"{100 * r.test:.2f} | {versus} | {r.trials or ''} | {r.seconds_choose:.0f} | "
                f"{r.seconds_export:.0f} |"
            )
        lines.append("")
    lines += _targets(groups)
    if (out / "studies.db").is_file():
        lines += [
            "## Where the searches' wall time goes (finished trials, stopped ones included)",
            "",
        ]
        lines += TIME_SPLIT_HEADER + time_split_rows(f"sqlite:///{out / 'studies.db'}")
    text = "\n".join(lines)
    (out / "report.md").write_text(text + "\n")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setting", choices=sorted(SETTINGS), default="w2a2-fmnist")
    parser.add_argument("--target", default="50%", help="size target, e.g. 50%% or 30%%")
    parser.add_argument("--trials", type=int, default=24)
    parser.add_argument("--methods", default="", help=f"comma-separated subset of {METHODS}")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--export-steps", type=int, default=EXPORT.steps)
    parser.add_argument("--export-lr", type=float, default=EXPORT.lr)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/results/search_quality")
    parser.add_argument("--report", action="store_true", help="only summarise the records")
    args = parser.parse_args()
    if args.report:
        report(Path(args.out))
    else:
        run(args)


if __name__ == "__main__":
    main()
