"""Many workers on one study: exact budget, no repeated ratios, dead workers' trials retried.

Real processes on SQLite, a journal file and PostgreSQL (``conftest.postgres_server``), one of
them SIGKILLed mid-trial; and the pieces (queue, dead-trial check, duplicate guard) in-process.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from autoprune.search import open_storage
from autoprune.search.study import DIRECTIONS, UNIFORM_PROBES
from autoprune.search.worker import (
    DISCARDED_ATTR,
    FAILURE_ATTR,
    HEARTBEAT_ATTR,
    RETRY_HISTORY_ATTR,
    WORKER_ATTR,
    Liveness,
    StopControl,
    Worker,
    accounted,
    drop_duplicate_waiting,
    enqueue_once,
    fail_dead_trials,
    machine_identity,
    params_key,
    worker_identity,
)

RATIO = FloatDistribution(0.0, 0.6, step=0.05)
TINY = [
    *("--model", "tiny_cnn", "--bits", "2", "--epochs", "1", "--finetune-steps", "12"),
    *("--max-train", "128", "--device", "cpu", "--study", "w"),
]


def _study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name="w", directions=list(DIRECTIONS))


# --- the pieces, in one process ---------------------------------------------------------------


def test_a_point_queued_twice_at_once_is_kept_once(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "s.log"))
    study = _study(storage)
    for _ in range(2):  # two workers that both saw an empty queue
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING, params={"a": 0.2}, distributions={"a": RATIO}
            )
        )
    drop_duplicate_waiting(study, storage)
    states = [(t.state, t.system_attrs.get(DISCARDED_ATTR)) for t in study.trials]
    assert states == [(TrialState.WAITING, None), (TrialState.FAIL, "duplicate")]
    # queueing it again is a no-op while a live trial holds the point
    assert not enqueue_once(study, storage, {"a": 0.2}, {"a": RATIO})
    assert enqueue_once(study, storage, {"a": 0.4}, {"a": RATIO})
    assert sum(t.state == TrialState.WAITING for t in study.trials) == 2


def _running_trial(study: optuna.Study, worker: dict, beat: float | None) -> optuna.Trial:
    # each its own point: a sampled duplicate of a live trial's point is (rightly) not re-queued
    study.enqueue_trial({"a": 0.05 * len(study.trials)})
    trial = study.ask({"a": RATIO})
    study._storage.set_trial_system_attr(trial._trial_id, WORKER_ATTR, worker)
    if beat is not None:
        study._storage.set_trial_system_attr(trial._trial_id, HEARTBEAT_ATTR, beat)
    return trial


def test_a_silent_worker_on_a_journal_is_declared_dead_after_the_grace(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "s.log"))
    study = _study(storage)
    elsewhere = {"machine": "another-host/boot/1", "pid": 1, "start": "1"}
    silent = _running_trial(study, elsewhere, beat=time.time() - 500)
    beating = _running_trial(study, elsewhere, beat=time.time())
    failed = fail_dead_trials(study, storage, Liveness(interval=30, grace=120))
    assert [t.number for t in failed] == [silent.number]
    trials = study.trials
    assert trials[silent.number].state == TrialState.FAIL
    assert trials[silent.number].system_attrs[FAILURE_ATTR] == "dead worker"
    assert trials[beating.number].state == TrialState.RUNNING
    retry = trials[-1]
    assert retry.state == TrialState.WAITING and retry.params == trials[silent.number].params
    assert retry.system_attrs[RETRY_HISTORY_ATTR] == [silent.number]
    # a second check (another worker) does not retry it again
    assert fail_dead_trials(study, storage, Liveness(interval=30, grace=120)) == []
    assert len(study.trials) == len(trials)


@pytest.mark.parametrize("kind", ["s.db", "s.log"])
def test_a_dead_process_on_this_machine_is_noticed_at_once(tmp_path: Path, kind: str) -> None:
    if machine_identity() is None:
        pytest.skip("no /proc: only heartbeats tell")
    storage = open_storage(str(tmp_path / kind))
    study = _study(storage)
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True, check=True)  # fmt: skip
    dead = {**worker_identity(), "pid": int(finished.stdout)}
    alive = worker_identity()
    gone = _running_trial(study, dead, beat=time.time())
    mine = _running_trial(study, alive, beat=time.time())
    failed = fail_dead_trials(study, storage, Liveness(interval=30, grace=120))
    assert [t.number for t in failed] == [gone.number]
    assert study.trials[mine.number].state == TrialState.RUNNING


def _worker(study: optuna.Study, suggest, evaluate, total: int) -> Worker:
    return Worker(
        study=study,
        storage=study._storage,
        evaluate=evaluate,
        suggest=suggest,
        total_trials=total,
        observer=_Quiet(),
        control=StopControl(),
        poll_s=0.05,
    )


class _Quiet:
    def phase(self, name: str) -> None: ...
    def trial_started(self, number: int, ratios: dict[str, float]) -> None: ...
    def finetune_step(self, done: int, total: int) -> None: ...
    def trial_finished(self, trial: optuna.trial.FrozenTrial) -> None: ...


def test_a_worker_never_evaluates_ratios_another_trial_runs(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "s.log"))
    study = _study(storage)
    other = study.ask({"a": RATIO})  # another worker's trial, running
    taken = other.params["a"]

    def evaluate(number, ratios, progress, rung):
        if other.number not in [t.number for t in study.trials if t.state.is_finished()]:
            study.tell(other, [0.5, 1.0])  # the other worker finishes meanwhile
        return (0.9, 0.5), {}

    # the study queue hands each proposal to the next trial; the sampler is not involved
    for value in (taken, taken, 0.6 if taken != 0.6 else 0.0):
        study.enqueue_trial({"a": value})
    worker = _worker(study, lambda t: {"a": t.suggest_float("a", 0.0, 0.6, step=0.05)}, evaluate, 2)
    assert worker.run() == 1
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert sorted(t.params["a"] for t in complete) == sorted([taken, complete[-1].params["a"]])
    assert complete[-1].params["a"] != taken
    # both proposals of the running point were dropped before any evaluation
    discarded = [t.system_attrs.get(DISCARDED_ATTR) for t in study.trials if not accounted(t)]
    assert discarded == ["duplicate", "duplicate"]


def test_a_trial_beyond_the_budget_is_discarded_before_any_work(tmp_path: Path) -> None:
    storage = open_storage(str(tmp_path / "s.log"))
    study = _study(storage)
    # three distinct points: a sampled repeat of a finished point is a duplicate, not a surplus
    for value in (0.1, 0.2, 0.3):
        study.enqueue_trial({"a": value})
    done = study.ask({"a": RATIO})
    study.tell(done, [0.5, 1.0])
    racing = study.ask({"a": RATIO})  # a worker that checked the budget just before us
    mine = study.ask({"a": RATIO})
    worker = _worker(study, lambda t: t.params, lambda *a: ((0.0, 0.0), {}), total=2)
    assert worker._verdict(racing, allow_duplicate=False) == "surplus"
    study.tell(racing, state=TrialState.FAIL)
    assert worker._verdict(mine, allow_duplicate=False) is None


# --- real workers -----------------------------------------------------------------------------


def _start(storage: str, trials: int, cwd: Path, *extra: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "autoprune_cli", "search", *TINY, "--trials", str(trials)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [*command, "--storage", storage, *extra],
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _kill_mid_trial(victim: subprocess.Popen, storage: optuna.storages.BaseStorage) -> int:
    """SIGKILL ``victim`` once it is fine-tuning a trial with its ratios chosen; its number."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            study = optuna.load_study(study_name="w", storage=storage)
        except KeyError:
            time.sleep(0.2)
            continue
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker = trial.system_attrs.get(WORKER_ATTR, {})
            if worker.get("pid") == victim.pid and trial.params:
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=30)
                return trial.number
        time.sleep(0.05)
    raise AssertionError("the worker never started a trial")


def _check_accounted(storage: optuna.storages.BaseStorage, total: int) -> optuna.Study:
    """Exactly ``total`` complete trials, each with its own ratios, every reference point
    among them, nothing left running, and every failed point retried to completion."""
    study = optuna.load_study(study_name="w", storage=storage)
    trials = study.trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == total, [(t.number, t.state.name) for t in trials]
    keys = [params_key(t.params) for t in complete]
    assert len(set(keys)) == len(keys), "two complete trials share their ratios"
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    labels = {t.user_attrs.get("reference") for t in complete}
    assert {"unpruned", *(f"uniform {r:.2f}" for r in UNIFORM_PROBES)} <= labels
    for failed in (t for t in trials if t.state == TrialState.FAIL and accounted(t)):
        if failed.params:
            assert params_key(failed.params) in keys, f"trial {failed.number} was lost"
    return study


def _run_two(storage: str, tmp_path: Path, *, kill: bool, total: int = 7) -> optuna.Study:
    opened = open_storage(storage)
    workers = [_start(storage, total, tmp_path) for _ in range(2)]
    killed = _kill_mid_trial(workers[0], opened) if kill else None
    survivor_err = workers[1].communicate(timeout=300)[1]
    assert workers[1].returncode == 0, survivor_err
    assert "Traceback" not in survivor_err
    if kill:
        assert workers[0].returncode == -signal.SIGKILL
    else:
        for worker in workers[:1]:
            assert worker.wait(timeout=300) == 0, worker.communicate()[1]
    study = _check_accounted(opened, total)
    if killed is not None:
        trial = study.trials[killed]
        assert trial.state == TrialState.FAIL
        assert trial.system_attrs[FAILURE_ATTR] == "dead worker"
    return study


@pytest.mark.slow  # the journal and PostgreSQL tests below cover the same loop
def test_two_workers_on_sqlite(tmp_path: Path) -> None:
    study = _run_two(str(tmp_path / "s.db"), tmp_path, kill=False)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len({t.system_attrs[WORKER_ATTR]["pid"] for t in complete}) == 2  # both worked


def test_two_workers_on_a_journal_one_killed(tmp_path: Path) -> None:
    _run_two(str(tmp_path / "s.log"), tmp_path, kill=True)


def test_two_workers_on_postgresql_one_killed(tmp_path: Path, postgres_url: str) -> None:
    _run_two(postgres_url, tmp_path, kill=True)
