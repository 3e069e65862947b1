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


def _objective(
    space: SearchSpace, n_objectives: int, seed: int
) -> Callable[[dict[str, float]], float | tuple[float, float]]:
    """Accuracy falls with the ratios, faster for some groups; size is what the ratios keep."""
    rng = np.random.default_rng(seed)
    weights = rng.uniform(0.2, 1.0, len(space.groups))
    shares = rng.dirichlet(np.ones(len(space.groups)))
    noise = np.random.default_rng(seed + 1)

    def evaluate(ratios: dict[str, float]) -> float | tuple[float, float]:
        r = np.array([ratios[group.name] for group in space.groups])
        accuracy = 0.9 - float(weights @ r**2) * 0.3 + float(noise.normal(0, 0.004))
        size = 1.0 - float(shares @ r)
        return accuracy if n_objectives == 1 else (accuracy, size)

    return evaluate


def measure(
    name: str,
    space: SearchSpace,
    n_objectives: int,
    at: list[int],
    window: int,
    max_seconds: float,
    seed: int,
) -> dict[str, object]:
    directions = ["maximize"] if n_objectives == 1 else ["maximize", "minimize"]
    sampler = DistinctSampler(name, seed=seed, n_startup_trials=len(space.groups) // 2 + 6)
    study = optuna.create_study(directions=directions, sampler=sampler)
    evaluate = _objective(space, n_objectives, seed)
    seconds: list[float] = []
    started = time.perf_counter()
    while len(seconds) <= max(at) and time.perf_counter() - started < max_seconds:
        begin = time.perf_counter()
        trial = study.ask()
        ratios = space.suggest(trial)
        seconds.append(time.perf_counter() - begin)
        study.tell(trial, evaluate(ratios))
    per_count: dict[str, float | None] = {}
    for count in at:
        # trial numbers count from 0: "at trial 10" is the suggestion for trial number 10
        span = seconds[max(count - window + 1, 0) : count + 1] if len(seconds) > count else []
        per_count[str(count)] = round(float(np.mean(span)), 4) if span else None
    return {
        "sampler": name,
        "objectives": n_objectives,
        "groups": len(space.groups),
        "trials_run": len(seconds),
        "seconds_per_suggestion": per_count,
        "startup_trials": len(space.groups) // 2 + 6,
    }


def _report(records: list[dict[str, object]], meta: dict[str, object]) -> str:
    at = meta["at"]
    head = "| sampler | objectives | " + " | ".join(f"s at trial {n}" for n in at) + " |"
    lines = [
        "# Seconds per suggestion against the trial count",
        "",
        f"ResNet-20's search space ({meta['groups']} groups), synthetic objective, "
        f"`DistinctSampler` as in a search, mean over {meta['window']} trial(s) ending at each "
        f"count; at most {meta['max_seconds']} s per study. Load average "
        f"{meta['load_start']} at the start, {meta['load_end']} at the end, on "
        f"{meta['cpus']} CPUs, {meta['torch_threads']} torch threads: timings on a loaded "
        "machine are upper bounds. Command: `" + str(meta["command"]) + "`.",
        "",
        head,
        "|" + "---|" * (2 + len(at)),
    ]
    for record in records:
        values = record["seconds_per_suggestion"]
        cells = [
            "not reached" if values[str(n)] is None else f"{values[str(n)]:.3f}"  # type: ignore[index]
            for n in at
        ]
        lines.append(
            f"| {record['sampler']} | {record['objectives']} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samplers", default=",".join(SAMPLERS.names()))
    parser.add_argument("--objectives", default="1,2")
    parser.add_argument("--at", default="10,50,100")
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    space = default_search_space("resnet20", in_channels=1, image_size=28).space
    at = [int(n) for n in args.at.split(",")]
    load_start = os.getloadavg()[0]
    records = []
    for name in args.samplers.split(","):
        if not _available(name):
            print(f"{name}: its packages are not installed, skipped")
            continue
        for n_objectives in (int(n) for n in args.objectives.split(",")):
            record = measure(
                name, space, n_objectives, at, args.window, args.max_seconds, args.seed
            )
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
