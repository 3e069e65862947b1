"""Seconds per suggestion of every registered sampler, against the number of trials so far.

What it measures: for each sampler (``--samplers``, default: every registered one whose
packages are installed) and each objective count (``--objectives``: 1 = accuracy under a
budget, 2 = accuracy and size), one in-memory study over the real ResNet-20 search space (its
bundled groups and ranges) is run trial by trial through ``DistinctSampler`` with the
start-up a search uses (groups // 2 + 6 trials). The objective is synthetic (a smooth
accuracy surface plus noise, and the size the ratios leave), so only the sampler's time is
measured: the wall time of asking for one trial's ratios, averaged over ``--window`` trials
ending at trial number ``--at`` (default 10, 50, 100; numbers count from 0, so with
ResNet-20's 9 groups trial 10 is the first after the 10 start-up trials). ``--max-seconds``
caps each study; a count it does not reach is reported as not reached.

A sampler may carry keyword options, ``name:key=value:key=value`` (e.g.
``gp:acquisition_samples=32:local_searches=4``), so a lighter acquisition can be timed
beside the default. With ``--seeds 0,1,2`` every study runs once per seed; for two
objectives the report also gives what the sampler found: the hypervolume of the noise-free
(accuracy, size) of every trial at the last count, reference (0.8, 1.0), mean +- sd over
seeds. The surface is synthetic, so this says whether a lighter acquisition still optimises,
not how it ranks real networks.

Timing depends on the machine's load: the load average at the start and the end is written
with the results. Results: ``benchmarks/results/sampler_speed/`` (``results.json`` and
``report.md``). Example: ``python benchmarks/sampler_speed.py --window 3``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import torch
from search_fronts import hypervolume

from autoprune.search.coverage import default_search_space
from autoprune.search.samplers import SAMPLERS, DistinctSampler
from autoprune.search.space import SearchSpace

RESULTS = Path(__file__).parent / "results" / "sampler_speed"
EXTRAS = {"botorch": "optuna_integration"}


def _available(name: str) -> bool:
    if name not in EXTRAS:
        return True
    try:
        __import__(EXTRAS[name])
    except ImportError:
        return False
    return True


HV_REFERENCE = (0.8, 1.0)  # (accuracy, size): the parent's 0.9 less 10 points, full size


def _objective(
    space: SearchSpace, n_objectives: int, seed: int
) -> tuple[
    Callable[[dict[str, float]], float | tuple[float, float]],
    Callable[[dict[str, float]], tuple[float, float]],
]:
    """The noisy objective a study sees, and its noise-free (accuracy, size) for scoring:
    accuracy falls with the ratios, faster for some groups; size is what the ratios keep."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.2, 1.0, len(space.groups))
    shares = rng.dirichlet(np.ones(len(space.groups)))
    noise = np.random.default_rng(seed + 1)

    def truth(ratios: dict[str, float]) -> tuple[float, float]:
        r = np.array([ratios[group.name] for group in space.groups])
        return 0.9 - float(weights @ r**2) * 0.3, 1.0 - float(shares @ r)

    def evaluate(ratios: dict[str, float]) -> float | tuple[float, float]:
        accuracy, size = truth(ratios)
        accuracy += float(noise.normal(0, 0.004))
        return accuracy if n_objectives == 1 else (accuracy, size)

    return evaluate, truth


def _parse_sampler(item: str) -> tuple[str, dict[str, object]]:
    """``name:key=value:...`` as the sampler's name and options (numbers and booleans read)."""
    name, *pairs = item.split(":")
    options: dict[str, object] = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        options[key] = json.loads(text) if text not in ("", "None") else None
    return name, options


def measure(
    item: str,
    space: SearchSpace,
    n_objectives: int,
    at: list[int],
    window: int,
    max_seconds: float,
    seed: int,
) -> dict[str, object]:
    directions = ["maximize"] if n_objectives == 1 else ["maximize", "minimize"]
    name, options = _parse_sampler(item)
    startup = len(space.groups) // 2 + 6
    sampler = DistinctSampler(name, seed=seed, n_startup_trials=startup, options=options)
    study = optuna.create_study(directions=directions, sampler=sampler)
    evaluate, truth = _objective(space, n_objectives, seed)
    seconds: list[float] = []
    points: list[tuple[float, float]] = []
    started = time.perf_counter()
    while len(seconds) <= max(at) and time.perf_counter() - started < max_seconds:
        begin = time.perf_counter()
        trial = study.ask()
        ratios = space.suggest(trial)
        seconds.append(time.perf_counter() - begin)
        study.tell(trial, evaluate(ratios))
        points.append(truth(ratios))
    per_count: dict[str, float | None] = {}
    for count in at:
        # trial numbers count from 0: "at trial 10" is the suggestion for trial number 10
        span = seconds[max(count - window + 1, 0) : count + 1] if len(seconds) > count else []
        per_count[str(count)] = round(float(np.mean(span)), 4) if span else None
    reached = len(points) > max(at)
    return {
        "sampler": item,
        "objectives": n_objectives,
        "seed": seed,
        "groups": len(space.groups),
        "trials_run": len(seconds),
        "seconds_per_suggestion": per_count,
        "startup_trials": startup,
        # what it found by the last count, noise-free (two objectives only)
        "hypervolume": round(hypervolume(points[: max(at) + 1], HV_REFERENCE), 6)
        if n_objectives == 2 and reached
        else None,
    }


def _report(records: list[dict[str, object]], meta: dict[str, object]) -> str:
    at = meta["at"]
    head = (
        "| sampler | objectives | seeds | "
        + " | ".join(f"s at trial {n}" for n in at)
        + f" | hypervolume at trial {max(at)} (mean +- sd) |"  # type: ignore[type-var]
    )
    lines = [
        "# Seconds per suggestion against the trial count",
        "",
        f"ResNet-20's search space ({meta['groups']} groups), synthetic objective, "
        f"`DistinctSampler` as in a search, mean over {meta['window']} trial(s) ending at each "
        f"count (and over seeds); at most {meta['max_seconds']} s per study. Load average "
        f"{meta['load_start']} at the start, {meta['load_end']} at the end, on "
        f"{meta['cpus']} CPUs, {meta['torch_threads']} torch threads: timings on a loaded "
        "machine are upper bounds. Hypervolume: noise-free (accuracy, size) of every trial, "
        f"reference {HV_REFERENCE}. Command: `" + str(meta["command"]) + "`.",
        "",
        head,
        "|" + "---|" * (4 + len(at)),  # type: ignore[arg-type]
    ]
    groups: dict[tuple[object, object], list[dict[str, object]]] = {}
    for record in records:
        groups.setdefault((record["sampler"], record["objectives"]), []).append(record)
    for (sampler, objectives), runs in groups.items():
        cells = []
        for n in at:  # type: ignore[attr-defined]
            values = [r["seconds_per_suggestion"][str(n)] for r in runs]  # type: ignore[index]
            reached = [v for v in values if v is not None]
            cells.append(f"{np.mean(reached):.3f}" if reached else "not reached")
        volumes = [r["hypervolume"] for r in runs if r.get("hypervolume") is not None]
        quality = (
            f"{np.mean(volumes):.4f} +- {np.std(volumes, ddof=1) if len(volumes) > 1 else 0:.4f}"
            if volumes
            else "-"
        )
        lines.append(
            f"| {sampler} | {objectives} | {len(runs)} | " + " | ".join(cells) + f" | {quality} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samplers", default=",".join(SAMPLERS.names()))
    parser.add_argument("--objectives", default="1,2")
    parser.add_argument("--at", default="10,50,100")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space = default_search_space("resnet20", in_channels=1, image_size=28).space
    at = [int(n) for n in args.at.split(",")]
    load_start = os.getloadavg()[0]
    records = []
    for item in args.samplers.split(","):
        if not _available(_parse_sampler(item)[0]):
            print(f"{item}: its packages are not installed, skipped")
            continue
        for n_objectives in (int(n) for n in args.objectives.split(",")):
            for seed in (int(n) for n in args.seeds.split(",")):
                record = measure(item, space, n_objectives, at, args.window, args.max_seconds, seed)
                print(json.dumps(record), flush=True)
                records.append(record)
    meta = {
        "at": at,
        "window": args.window,
        "max_seconds": args.max_seconds,
        "groups": len(space.groups),
        "load_start": round(load_start, 2),
        "load_end": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "optuna": optuna.__version__,
        "command": "python benchmarks/sampler_speed.py "
        + " ".join(
            f"--{key.replace('_', '-')} {value}"
            for key, value in vars(args).items()
            if key != "out"
        ),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"meta": meta, "records": records}, indent=1))
    (args.out / "report.md").write_text(_report(records, meta))
    print(_report(records, meta))


if __name__ == "__main__":
    main()
