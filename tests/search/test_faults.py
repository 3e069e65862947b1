"""Faults during a search: stops (signals, wall limit), diverging trials, failing storage."""

from __future__ import annotations

import errno
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from autoprune.config import TrainConfig
from autoprune.errors import ConfigError, StorageError
from autoprune.quant import QuantSpec
from autoprune.search import FinetuneConfig, SearchObserver, SearchRequest, SearchSession
from autoprune.search import storage as storage_module
from autoprune.search.objective import CandidateResult
from autoprune.search.worker import (
    DISCARDED_ATTR,
    FAILURE_ATTR,
    Liveness,
    Stop,
    StopControl,
    fail_dead_trials,
    parse_duration,
    stop_on_signals,
)


def _request(storage: Path, trials: int, steps: int = 2) -> SearchRequest:
    return SearchRequest(
        model="tiny_cnn",
        quant=QuantSpec.from_bits(2),
        trials=trials,
        storage=str(storage),
        study_name="s",
        finetune=FinetuneConfig(steps=steps),
        train=TrainConfig(epochs=1),
        device="cpu",
        max_train=128,
    )


def _states(study: optuna.Study) -> list[str]:
    return [t.state.name for t in study.trials]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90m", 5400), ("2h", 7200), ("1h30m", 5400), ("45s", 45), ("3600", 3600), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "soon", "10x", "-5m", "0", "5m later"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        parse_duration(text)


class _ExpireAt(SearchObserver):
    """Moves the wall-clock limit into the past during trial ``trial``'s fine-tuning."""

    def __init__(self, control: StopControl, trial: int) -> None:
        self.control, self.trial, self.current = control, trial, -1

    def trial_started(self, number: int, ratios: dict[str, float]) -> None:
        self.current = number

    def finetune_step(self, done: int, total: int) -> None:
        if self.current == self.trial:
            self.control.deadline = time.monotonic() - 1


def test_wall_limit_stops_and_requeues_the_running_trial(tmp_path: Path) -> None:
    session = SearchSession(_request(tmp_path / "s.db", 4, steps=3))
    control = StopControl(timeout_s=3600)
    with pytest.raises(Stop) as stopped:
        session.run(_ExpireAt(control, 1), control=control)
    assert stopped.value.reason == "timeout"
    trials = session.study.trials
    assert _states(session.study)[:2] == ["COMPLETE", "FAIL"]
    assert trials[1].system_attrs[FAILURE_ATTR] == "interrupted"
    queued = [t for t in trials if t.state.name == "WAITING" and t.params == trials[1].params]
    assert len(queued) == 1 and queued[0].user_attrs["reference"] == "uniform 0.20"
    # the next run picks the re-queued point up and ends with exactly the budget
    again = SearchSession(_request(tmp_path / "s.db", 4, steps=3))
    again.run()
    complete = [t for t in again.study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 4
    assert "uniform 0.20" in {t.user_attrs.get("reference") for t in complete}


def test_diverging_trial_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = SearchSession(_request(tmp_path / "s.db", 3))
    real = session.evaluator.__class__.__call__
    calls = []

    def sometimes_nan(self, ratios, *, seed, progress=None, rung=None) -> CandidateResult:
        result = real(self, ratios, seed=seed, progress=progress, rung=rung)
        calls.append(seed)
        if len(calls) == 2:  # the second candidate's fine-tuning "diverges"
            return CandidateResult(**{**result.__dict__, "val_loss": float("nan")})
        return result

    monkeypatch.setattr(session.evaluator.__class__, "__call__", sometimes_nan)
    session.run()
    trials = session.study.trials
    assert _states(session.study).count("COMPLETE") == 3
    failed = [t for t in trials if t.state.name == "FAIL"]
    assert len(failed) == 1 and "diverged" in failed[0].system_attrs[FAILURE_ATTR]


def test_every_trial_diverging_stops_with_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = SearchSession(_request(tmp_path / "s.db", 8, steps=1))
    real = session.evaluator.__class__.__call__

    def always_nan(self, ratios, *, seed, progress=None, rung=None) -> CandidateResult:
        result = real(self, ratios, seed=seed, progress=progress, rung=rung)
        return CandidateResult(**{**result.__dict__, "val_loss": float("inf")})

    monkeypatch.setattr(session.evaluator.__class__, "__call__", always_nan)
    with pytest.raises(ConfigError, match="in a row failed"):
        session.run()
    assert _states(session.study).count("FAIL") == 5


def test_full_disk_on_a_journal_is_one_error_and_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.log"
    session = SearchSession(_request(path, 3))
    real_append = storage_module._append
    writes = []

    def full_after_a_while(file: str, logs: list) -> None:
        writes.append(1)
        if len(writes) > 12:
            with open(file, "ab") as f:  # half a line reaches the disk, then it is full
                f.write(b'{"op_code": 5, "worker')
            raise OSError(errno.ENOSPC, "No space left on device")
        real_append(file, logs)

    monkeypatch.setattr(storage_module, "_append", full_after_a_while)
    with pytest.raises(StorageError, match="free disk space"):
        session.run()
    monkeypatch.setattr(storage_module, "_append", real_append)
    assert path.read_bytes().endswith(b"\n")  # the torn line was cut off again
    again = SearchSession(_request(path, 3))
    # the trial left running belongs to this (living) process: with no grace it counts as
    # dead, as it would once its beats stop
    fail_dead_trials(again.study, again.storage, Liveness(interval=1, grace=0))
    again.run()
    assert _states(again.study).count("COMPLETE") == 3


def test_sigterm_and_ctrl_c_print_one_line(tmp_path: Path) -> None:
    """A real process: SIGTERM exits 143, SIGINT 130, each with one line and no traceback;
    the running trial is failed and queued again."""
    storage = tmp_path / "s.db"
    command = [
        *(sys.executable, "-m", "autoprune_cli", "search", "--model", "tiny_cnn", "--bits", "2"),
        *("--epochs", "1", "--finetune-steps", "400", "--max-train", "128", "--device", "cpu"),
        *("--trials", "3", "--storage", str(storage), "--study", "s"),
    ]
    for signum, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
        worker = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert worker.stdout is not None
        for line in worker.stdout:  # wait until a trial is fine-tuning
            if "study s in" in line:
                break
        time.sleep(2.0)
        worker.send_signal(signum)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == code, err
        lines = [line for line in err.splitlines() if line.strip() and "WARNING" not in line]
        assert len(lines) == 1 and "rerun the same command" in lines[0], err
        assert "Traceback" not in err
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{storage}")
    stopped = [t for t in study.trials if t.system_attrs.get(FAILURE_ATTR) == "interrupted"]
    assert len(stopped) == 2
    waiting = {tuple(t.params.items()) for t in study.trials if t.state.name == "WAITING"}
    assert all(tuple(t.params.items()) in waiting for t in stopped)
    assert not any(DISCARDED_ATTR in t.system_attrs for t in study.trials)


def test_search_timeout_stops_cleanly(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from autoprune_cli.main import app

    result = CliRunner().invoke(
        app,
        [
            *("search", "--model", "tiny_cnn", "--bits", "2", "--epochs", "1"),
            *("--max-train", "128", "--device", "cpu", "--finetune-steps", "200"),
            *("--trials", "50", "--storage", str(tmp_path / "s.db"), "--timeout", "4s"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "time limit 4s reached" in result.output
    assert "Traceback" not in result.output
    if (tmp_path / "s.db").exists():
        url = f"sqlite:///{tmp_path / 's.db'}"
        for name in optuna.get_all_study_names(url):
            study = optuna.load_study(study_name=name, storage=url)
            assert not [t for t in study.trials if t.state.name == "RUNNING"]


def test_a_stop_raised_inside_a_finalizer_is_kept_and_prints_nothing(monkeypatch) -> None:
    """A signal can land while a finalizer runs (SQLAlchemy's weakref callbacks), where Python
    can only hand the raised Stop to ``sys.unraisablehook``, which prints it: the request must
    survive and the hook must not see it."""
    import sys

    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: seen.append(unraisable.exc_value))
    control = StopControl()
    with stop_on_signals(control):

        class Finalized:
            def __del__(self) -> None:
                control.request("interrupt")  # what the signal handler does there

        Finalized()  # finalized at once: its Stop is unraisable
        with pytest.raises(Stop, match="interrupt"):
            control.check()

        class Broken:
            def __del__(self) -> None:
                raise ValueError("not ours")

        Broken()
    assert [type(error) for error in seen] == [ValueError]  # others still reach the hook
