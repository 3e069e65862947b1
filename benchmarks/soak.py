"""Soak test of many search workers on one study, with random SIGKILL/SIGTERM.

    python benchmarks/soak.py [--trials 200] [--workers 4] [--kill-every 4]

Starts ``--workers`` worker processes (one torch thread each) on one journal-file study of a
tiny model, keeps that many alive, and every ``--kill-every`` seconds on average kills one of
them with SIGKILL or SIGTERM, recording the phase the kill landed in (waiting, sampling,
finetune, storage: each worker writes its phase to a small file). When the study holds
``--trials`` complete trials it reports: trials completed, failed and retried, duplicated
(two complete trials with the same ratios), lost (a failed trial whose ratios were neither
completed nor queued again), and the kills by phase. Then it measures throughput (trials per
minute) with 1, 2 and 4 workers and no kills.

Everything is written as it goes under ``--out`` (default benchmarks/results/soak): the
study, ``kills.jsonl``, ``throughput.json``, ``report.md``; rerunning resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PHASES = ("waiting", "sampling", "finetune", "storage")
SIGNALS = {"SIGKILL": signal.SIGKILL, "SIGTERM": signal.SIGTERM}


def _request(storage: Path, trials: int, steps: int):
    from autoprune.config import TrainConfig
    from autoprune.quant import QuantSpec
    from autoprune.search import FinetuneConfig, SearchRequest

    return SearchRequest(
        model="tiny_cnn",
        quant=QuantSpec.from_bits(2),
        trials=trials,
        storage=str(storage),
        study_name="soak",
        sampler="tpe",
        finetune=FinetuneConfig(steps=steps, batch_size=32),
        train=TrainConfig(epochs=1),
        device="cpu",
        max_train=128,
    )


def worker(storage: Path, trials: int, steps: int, phase_file: Path) -> int:
    """One worker: the library's search loop, its phase mirrored into ``phase_file``."""
    import torch

    torch.set_num_threads(1)
    from autoprune.device import tune_cpu_allocator
    from autoprune.search import SearchObserver, SearchSession

    tune_cpu_allocator()  # as the autoprune command does: glibc keeps activation buffers
    from autoprune.search.worker import Stop, StopControl, stop_on_signals

    handle = os.open(phase_file, os.O_RDWR | os.O_CREAT, 0o644)

    class Phases(SearchObserver):
        def phase(self, name: str) -> None:
            os.pwrite(handle, name.ljust(12).encode(), 0)

    control = StopControl()
    try:
        with stop_on_signals(control):
            SearchSession(_request(storage, trials, steps)).run(Phases(), control=control)
    except Stop as stop:
        return 143 if stop.reason == "terminate" else 130
    except KeyboardInterrupt:
        return 130
    return 0


def _spawn(storage: Path, trials: int, steps: int, out: Path) -> tuple[subprocess.Popen, Path]:
    phase_file = out / f"phase-{time.time_ns()}"
    phase_file.write_text("starting".ljust(12))
    command = [sys.executable, __file__, "--worker", str(storage), "--trials", str(trials)]
    command += ["--steps", str(steps), "--phase-file", str(phase_file)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    with phase_file.with_suffix(".err").open("w") as errors:
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=errors)
    return process, phase_file


def _complete(storage: Path) -> int:
    import optuna

    from autoprune.search import open_storage

    try:
        study = optuna.load_study(study_name="soak", storage=open_storage(str(storage)))
    except KeyError:
        return 0
    return sum(t.state.name == "COMPLETE" for t in study.get_trials(deepcopy=False))


def soak(args: argparse.Namespace, out: Path) -> None:
    storage = out / "soak.log"
    kills = out / "kills.jsonl"
    done_kills = len(kills.read_text().splitlines()) if kills.exists() else 0
    rng = random.Random(args.seed + done_kills)  # a resumed run draws new kills
    workers = [_spawn(storage, args.trials, args.steps, out) for _ in range(args.workers)]
    next_kill = time.monotonic() + rng.expovariate(1 / args.kill_every)
    started = time.monotonic()
    while True:
        for i, (process, phase_file) in enumerate(workers):
            if process.poll() is not None:
                log = phase_file.with_suffix(".err")
                stderr = log.read_text() if log.exists() else ""
                if "Traceback" in stderr:
                    with (out / "tracebacks.txt").open("a") as f:
                        f.write(stderr + "\n---\n")
                phase_file.unlink(missing_ok=True)
                log.unlink(missing_ok=True)
                if process.returncode == 0:
                    workers[i] = (process, phase_file)  # done: the study is full
                else:
                    workers[i] = _spawn(storage, args.trials, args.steps, out)
        if all(p.poll() == 0 for p, _ in workers):
            break
        if time.monotonic() >= next_kill and _complete(storage) < args.trials:
            # a worker still importing is not in any phase of the search: spare it
            alive = [
                (p, f)
                for p, f in workers
                if p.poll() is None and f.exists() and f.read_text().strip() != "starting"
            ]
            if alive:
                process, phase_file = rng.choice(alive)
                phase = phase_file.read_text().strip() if phase_file.exists() else "?"
                name = rng.choice(sorted(SIGNALS))
                process.send_signal(SIGNALS[name])
                record = {"t": round(time.monotonic() - started, 2), "pid": process.pid}
                record.update(signal=name, phase=phase)
                with kills.open("a") as f:
                    f.write(json.dumps(record) + "\n")
            next_kill = time.monotonic() + rng.expovariate(1 / args.kill_every)
        time.sleep(0.05)
    (out / "soak_seconds.txt").open("a").write(f"{time.monotonic() - started:.1f}\n")


def account(storage: Path) -> dict:
    import optuna
    from optuna.trial import TrialState

    from autoprune.search import open_storage
    from autoprune.search.worker import (
        GIVEN_UP_ATTR,
        RETRY_HISTORY_ATTR,
        accounted,
        params_key,
    )

    study = optuna.load_study(study_name="soak", storage=open_storage(str(storage)))
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = [params_key(t.params) for t in complete]
    retried_numbers = {n for t in trials for n in t.system_attrs.get(RETRY_HISTORY_ATTR, [])}
    failed = [t for t in trials if t.state == TrialState.FAIL and accounted(t)]
    evaluated = [t for t in failed if t.params]
    given_up = {params_key(t.params) for t in evaluated if GIVEN_UP_ATTR in t.system_attrs}
    # lost: a point a failed trial held that no complete trial evaluated and no queued one
    # will (whatever retries happened in between)
    queued = {params_key(t.params) for t in trials if t.state == TrialState.WAITING}
    lost = [
        t.number for t in evaluated if params_key(t.params) not in set(keys) | queued | given_up
    ]
    return {
        "complete": len(complete),
        "failed": len(failed),
        "failed_with_ratios": len(evaluated),
        "retried": sum(t.number in retried_numbers for t in failed),
        "retries_completed": sum(RETRY_HISTORY_ATTR in t.system_attrs for t in complete),
        "duplicated": len(keys) - len(set(keys)),
        "lost": len(lost),
        "points_given_up_after_5_dead_workers": len(given_up),
        "discarded_unevaluated": sum(not accounted(t) for t in trials),
        "still_running": sum(t.state == TrialState.RUNNING for t in trials),
        "waiting": sum(t.state == TrialState.WAITING for t in trials),
    }


def throughput(args: argparse.Namespace, out: Path) -> dict:
    path = out / "throughput.json"
    results = json.loads(path.read_text()) if path.exists() else {}
    for count in (1, 2, 4):
        if str(count) in results:
            continue
        storage = out / f"throughput-{count}.log"
        storage.unlink(missing_ok=True)
        # warm the baseline cache first: throughput is about trials, not the one baseline
        command = [sys.executable, __file__, "--worker", str(storage), "--trials", "0"]
        command += ["--steps", str(args.steps), "--phase-file", str(out / "phase-warm")]
        subprocess.run(command, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=False)
        (out / "phase-warm").unlink(missing_ok=True)
        started = time.monotonic()
        workers = [_spawn(storage, args.throughput_trials, args.steps, out) for _ in range(count)]
        for process, phase_file in workers:
            process.wait()
            phase_file.unlink(missing_ok=True)
            phase_file.with_suffix(".err").unlink(missing_ok=True)
        seconds = time.monotonic() - started
        results[str(count)] = {"wall_seconds": round(seconds, 1), **_steady_rate(storage)}
        path.write_text(json.dumps(results, indent=2) + "\n")
    return results


def _steady_rate(storage: Path) -> dict:
    """Trials per minute once every worker runs: each worker's first trial (process start-up,
    first-call warm-up) is left out, the rest counted from the first completion on."""
    import optuna

    from autoprune.search import open_storage
    from autoprune.search.worker import WORKER_ATTR

    study = optuna.load_study(study_name="soak", storage=open_storage(str(storage)))
    complete = sorted(
        (t for t in study.trials if t.state.name == "COMPLETE"), key=lambda t: t.datetime_complete
    )
    firsts: dict[int, optuna.trial.FrozenTrial] = {}
    for trial in complete:
        firsts.setdefault(trial.system_attrs[WORKER_ATTR]["pid"], trial)
    start = max(t.datetime_complete for t in firsts.values())
    later = [t for t in complete if t.datetime_complete > start]
    span = (complete[-1].datetime_complete - start).total_seconds()
    return {
        "trials": len(complete),
        "steady_trials": len(later),
        "steady_seconds": round(span, 1),
        "trials_per_min": round(60 * len(later) / span, 1) if span > 0 else None,
    }


def report(args: argparse.Namespace, out: Path, counts: dict, speeds: dict) -> str:
    kills = [json.loads(line) for line in (out / "kills.jsonl").read_text().splitlines()]
    lines = [
        f"# Soak: {args.workers} workers, {args.trials} trials, a kill every ~{args.kill_every} s",
        "",
        "tiny_cnn W2A2 on digits (128 training images), TPE sampler, "
        f"{args.steps} fine-tuning steps per trial, one journal file, one torch thread per "
        f"worker; on a machine whose {os.cpu_count()} cores were shared with other work.",
        "",
        "| outcome | trials |",
        "| --- | ---: |",
        *(f"| {key.replace('_', ' ')} | {value} |" for key, value in counts.items()),
        "",
        "| kill landed in | SIGKILL | SIGTERM |",
        "| --- | ---: | ---: |",
    ]
    for phase in (*PHASES, "starting", "?"):
        row = [sum(k["phase"] == phase and k["signal"] == s for k in kills) for s in SIGNALS]
        if any(row):
            lines.append(f"| {phase} | {row[0]} | {row[1]} |")
    lines += [
        "",
        "| workers | trials | wall s (with start-up) | steady trials | steady s | trials/min |",
        "| ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for count, speed in speeds.items():
        cells = [speed[k] for k in ("trials", "wall_seconds", "steady_trials", "steady_seconds")]
        lines.append(f"| {count} | {' | '.join(map(str, cells))} | {speed['trials_per_min']} |")
    tracebacks = out / "tracebacks.txt"
    lines += [
        "",
        f"tracebacks from killed or stopped workers: {tracebacks.read_text().count('---')}"
        if tracebacks.exists()
        else "tracebacks from killed or stopped workers: 0",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--kill-every", type=float, default=4.0, help="mean seconds between kills")
    parser.add_argument("--steps", type=int, default=8, help="fine-tuning steps per trial")
    parser.add_argument("--throughput-trials", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--phase-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        sys.exit(worker(args.worker, args.trials, args.steps, args.phase_file))
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("AUTOPRUNE_CACHE", str(args.out / "cache"))
    soak(args, args.out)
    counts = account(args.out / "soak.log")
    (args.out / "accounting.json").write_text(json.dumps(counts, indent=2) + "\n")
    speeds = throughput(args, args.out)
    text = report(args, args.out, counts, speeds)
    (args.out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
