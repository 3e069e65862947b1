"""One search worker: runs trials until the study holds its budget, safely shared with others.

Any number of workers (processes on one machine, or machines) may run the same search on one
storage. What keeps them from wasting or losing work, on every storage:

- **Exact budget.** A worker keeps a new trial only if, once it is RUNNING, the study holds at
  most ``total`` complete + running trials. The last of any two checks sees the other trial, so
  the study never completes more than ``total``; a worker that loses the race discards its
  fresh trial (FAIL, marked ``autoprune:discarded``) and backs off.
- **Distinct points.** The sampler avoids points already complete, running or queued
  (``samplers.DistinctSampler``), and after the ratios are written a worker discards its trial
  if another complete or running trial has the same ones (both may discard, never both run).
  A queued point (reference, retry) discarded that way is queued again if nothing else holds it.
- **Dead workers.** A running trial beats every ``interval`` seconds (Optuna's heartbeat on RDB
  storages, a system attribute on a journal file). Before each trial a worker fails and
  re-queues trials whose beat is older than ``grace``, and at once those of a process on its
  own machine that no longer exists.
- **Stops.** SIGINT, SIGTERM and a wall-clock limit fail the running trial and re-queue it;
  storage writes are never cut in half (a signal during one takes effect right after it).
- **Faults.** A diverging trial (non-finite loss) fails alone; a storage that fails (server
  lost, disk full) raises one ``StorageError`` and leaves a study the next run resumes.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import os
import random
import re
import signal
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from autoprune.errors import AutopruneError, ConfigError, StorageError
from autoprune.search.record import REFERENCE_KEY

logger = logging.getLogger(__name__)

WORKER_ATTR = "autoprune:worker"  # which process runs a trial: {"machine", "pid", "start"}
HEARTBEAT_ATTR = "autoprune:heartbeat"  # last beat (Unix time) where Optuna has no heartbeat
DISCARDED_ATTR = "autoprune:discarded"  # why a trial was dropped unevaluated (surplus, duplicate)
FAILURE_ATTR = "autoprune:failure"  # why a trial failed (diverged, interrupted, dead worker)
DEATHS_ATTR = "autoprune:deaths"  # times a point's worker died; past MAX_DEATHS it is not retried
RETRY_OF_ATTR = "failed_trial"  # Optuna's RetryFailedTrialCallback convention
RETRY_HISTORY_ATTR = "retry_history"
GIVEN_UP_ATTR = "autoprune:given_up"  # on a trial whose point is not retried (MAX_DEATHS)
MAX_DEATHS = 5
ALIVE = (TrialState.COMPLETE, TrialState.RUNNING)


@dataclass(frozen=True)
class Liveness:
    """How often a running trial beats, and after how long without a beat it is dead."""

    interval: float = 30.0
    grace: float = 120.0


class TrialFailed(Exception):
    """The candidate cannot be scored (e.g. its fine-tuning diverged): fail this trial only."""


class TrialStopped(Exception):
    """Successive halving stopped the candidate at a rung: the trial is PRUNED, with the
    ``attrs`` of its record (``autoprune.search.halving``)."""

    def __init__(self, attrs: dict[str, Any]) -> None:
        super().__init__(f"stopped at rung {attrs.get('stopped_at')}")
        self.attrs = attrs


class Stop(KeyboardInterrupt):
    """The worker was asked to stop: ``reason`` is interrupt (SIGINT), terminate (SIGTERM)
    or timeout. A KeyboardInterrupt, so code that saves work on Ctrl-C does so here too."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StopControl:
    """Stop requests from signal handlers and a wall-clock limit.

    A request raises ``Stop`` at once, except inside ``deferred()`` (storage writes), where it
    is raised when the block ends. A second request raises at once anywhere.
    """

    def __init__(self, timeout_s: float | None = None) -> None:
        self.timeout_s = timeout_s
        self.deadline = None if timeout_s is None else time.monotonic() + timeout_s
        self.reason: str | None = None
        self._deferring = 0

    def request(self, reason: str) -> None:
        first = self.reason is None
        if first:
            self.reason = reason
        if not self._deferring or not first:
            raise Stop(self.reason or reason)

    def check(self) -> None:
        if self.reason is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.reason = "timeout"
        if self.reason is not None:
            raise Stop(self.reason)

    def remaining(self) -> float | None:
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())

    @contextmanager
    def deferred(self) -> Iterator[None]:
        self._deferring += 1
        try:
            yield
        finally:
            self._deferring -= 1
        if not self._deferring:
            self.check()

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            self.check()
            time.sleep(min(left, 0.2))
        self.check()


@contextmanager
def stop_on_signals(control: StopControl) -> Iterator[StopControl]:
    """SIGINT, SIGTERM and the wall-clock limit (SIGALRM) become ``control`` requests.

    Only the main thread can own signal handlers; elsewhere this does nothing and the limit
    is still checked between fine-tuning steps.
    """
    if threading.current_thread() is not threading.main_thread():
        yield control
        return
    reasons = {signal.SIGINT: "interrupt", signal.SIGTERM: "terminate"}
    if control.deadline is not None and hasattr(signal, "SIGALRM"):
        reasons[signal.SIGALRM] = "timeout"
    previous = {number: signal.getsignal(number) for number in reasons}
    for number, reason in reasons.items():
        signal.signal(number, lambda _n, _f, reason=reason: control.request(reason))
    if signal.SIGALRM in reasons:
        signal.setitimer(signal.ITIMER_REAL, max(control.remaining() or 0.0, 0.001))
    previous_hook = sys.unraisablehook

    def drop_stops_raised_in_finalizers(unraisable: Any) -> None:
        # A signal landing while a finalizer or weakref callback runs (SQLAlchemy has some)
        # raises Stop where Python can only print it; the request is kept in
        # ``control.reason`` and raised again at the next check, so the trace is noise.
        if not isinstance(unraisable.exc_value, Stop):
            previous_hook(unraisable)

    sys.unraisablehook = drop_stops_raised_in_finalizers
    try:
        yield control
    finally:
        sys.unraisablehook = previous_hook
        if signal.SIGALRM in reasons:
            signal.setitimer(signal.ITIMER_REAL, 0)
        for number, handler in previous.items():
            signal.signal(number, handler)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_S = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``"90m"``, ``"2h"``, ``"1h30m"``, ``"45s"`` or plain seconds -> seconds (> 0)."""
    cleaned = text.strip().lower()
    parts = _DURATION.findall(cleaned)
    if not parts or _DURATION.sub("", cleaned).strip():
        raise ConfigError(f"timeout {text!r} is not a duration: use e.g. 90m, 2h, 1h30m or 3600")
    seconds = sum(float(number) * _UNIT_S[unit] for number, unit in parts)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"timeout {text!r} must be longer than 0 s: e.g. 90m")
    return seconds


# --- who runs a trial, and is it still alive --------------------------------------------------


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return None


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), None if it does not exist."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    return stat.rsplit(")", 1)[-1].split()[19]  # field 22; the name before ")" may hold spaces


def machine_identity() -> str | None:
    """This host, boot and PID namespace: processes it names can be checked with /proc.
    None where /proc is missing (no same-machine shortcut there)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return None
    return None if boot is None else f"{socket.gethostname()}/{boot}/{namespace}"


def worker_identity() -> dict[str, Any]:
    return {
        "machine": machine_identity(),
        "pid": os.getpid(),
        "start": _process_start(os.getpid()),
    }


def _process_gone(worker: Mapping[str, Any], machine: str | None) -> bool:
    """True only when ``worker`` ran on this machine and its process no longer exists
    (a reused PID has another start time)."""
    if machine is None or worker.get("machine") != machine or worker.get("start") is None:
        return False
    return _process_start(int(worker["pid"])) != worker["start"]


def _uses_optuna_heartbeat(storage: BaseStorage) -> bool:
    return isinstance(storage, RDBStorage) and storage.heartbeat_interval is not None


class Heartbeat:
    """Marks ``trial_id`` alive every ``interval`` seconds from a daemon thread.

    Failures are kept, not raised in the thread: ``error`` is set once no beat has succeeded
    for ``grace`` seconds (others then consider the trial dead), ``lost`` when another worker
    already failed the trial.
    """

    def __init__(self, storage: BaseStorage, trial_id: int, liveness: Liveness) -> None:
        self.storage, self.trial_id, self.liveness = storage, trial_id, liveness
        self.error: BaseException | None = None
        self.lost = False
        self._stop = threading.Event()
        self._last_ok = time.monotonic()
        storage.set_trial_system_attr(trial_id, WORKER_ATTR, worker_identity())
        self.beat()
        self._thread = threading.Thread(target=self._run, name="autoprune-heartbeat", daemon=True)
        self._thread.start()

    def beat(self) -> None:
        if _uses_optuna_heartbeat(self.storage):
            self.storage.record_heartbeat(self.trial_id)  # type: ignore[attr-defined]
        else:
            self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_ATTR, time.time())
        self._last_ok = time.monotonic()

    def _run(self) -> None:
        while not self._stop.wait(self.liveness.interval):
            try:
                self.beat()
            except UpdateFinishedTrialError:
                self.lost = True
                return
            except Exception as error:  # a lost server: retried until the grace is spent
                if time.monotonic() - self._last_ok > self.liveness.grace:
                    self.error = error
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _last_beat(trial: FrozenTrial) -> float | None:
    beat = trial.system_attrs.get(HEARTBEAT_ATTR)
    if isinstance(beat, (int, float)):
        return float(beat)
    return None if trial.datetime_start is None else trial.datetime_start.timestamp()


def fail_dead_trials(
    study: optuna.Study, storage: BaseStorage, liveness: Liveness
) -> list[FrozenTrial]:
    """Fail and re-queue the running trials whose worker is dead; returns those this call
    failed (another worker failing the same trial at once gets an error and skips it)."""
    if _uses_optuna_heartbeat(storage):
        # Optuna's own check; its callback (storage.open_storage) re-queues like ours does
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    machine = machine_identity()
    now = time.time()
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.system_attrs.get(WORKER_ATTR)
        if isinstance(worker, dict):
            dead = _process_gone(worker, machine)
            if not dead and not _uses_optuna_heartbeat(storage):
                beat = _last_beat(trial)
                dead = beat is not None and now - beat > liveness.grace
        else:  # died between being asked and its first beat (or not ours at all)
            beat = _last_beat(trial)
            dead = beat is not None and now - beat > liveness.grace
        if dead and _requeue_then_fail(study, storage, trial, "dead worker", died=True):
            failed.append(trial)
    return failed


def _requeue_then_fail(
    study: optuna.Study, storage: BaseStorage, trial: FrozenTrial, why: str, *, died: bool
) -> bool:
    """Queue the trial's point again, then FAIL it; True if this call failed it.

    In this order a worker killed in between leaves the trial running (found dead again,
    its copy already queued), never failed without a retry. Two workers doing this at once
    queue one copy (``enqueue_once``) and only one of them fails the trial.
    """
    requeue(study, storage, trial, died=died)
    return _fail(storage, trial, why)


def _fail(storage: BaseStorage, trial: FrozenTrial, why: str) -> bool:
    """FAIL a trial someone else may be failing too; True if this call did it."""
    try:
        storage.set_trial_system_attr(trial._trial_id, FAILURE_ATTR, why)
        return storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
    except UpdateFinishedTrialError:
        return False


def requeue_stale_trial(study: optuna.Study, trial: FrozenTrial) -> None:
    """Optuna's heartbeat callback (RDB storages): a dead worker's trial is queued again."""
    requeue(study, study._storage, trial, died=True)


# --- the queue: one waiting trial per point ---------------------------------------------------


def params_key(params: Mapping[str, Any]) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((name, round(float(value), 9)) for name, value in params.items()))


def enqueue_once(
    study: optuna.Study,
    storage: BaseStorage,
    params: Mapping[str, float],
    distributions: Mapping[str, optuna.distributions.BaseDistribution],
    *,
    user_attrs: Mapping[str, Any] | None = None,
    system_attrs: Mapping[str, Any] | None = None,
    exclude: int | None = None,
) -> bool:
    """Queue ``params`` unless a complete, running or waiting trial (other than number
    ``exclude``) holds them; True if queued.

    Two workers queueing the same point at once both add it; ``drop_duplicate_waiting`` then
    removes the later copy.
    """
    key = params_key(params)
    alive = (*ALIVE, TrialState.WAITING)
    for trial in study.get_trials(deepcopy=False, states=alive):
        if trial.number != exclude and params_key(trial.params) == key:
            return False
    study.add_trial(
        optuna.trial.create_trial(
            state=TrialState.WAITING,
            params=dict(params),
            distributions=dict(distributions),
            user_attrs=dict(user_attrs or {}),
            system_attrs=dict(system_attrs or {}),
        )
    )
    drop_duplicate_waiting(study, storage)
    return True


def drop_duplicate_waiting(study: optuna.Study, storage: BaseStorage) -> None:
    """Discard each waiting trial whose point a lower-numbered complete or waiting trial holds.

    The lowest copy is never discarded, and a copy is claimed (WAITING -> RUNNING, atomic in
    Optuna's storages) before it is failed, so a copy another worker just took is left alone.
    Running trials do not count: the one being re-queued is still running, and a copy of a
    point still running elsewhere is dropped when popped (``Worker._verdict``).
    """
    alive = (TrialState.COMPLETE, TrialState.WAITING)
    first: dict[tuple, int] = {}
    for trial in sorted(study.get_trials(deepcopy=False, states=alive), key=lambda t: t.number):
        key = params_key(trial.params)
        if not trial.params:
            continue
        if key not in first:
            first[key] = trial.number
        elif trial.state == TrialState.WAITING:
            try:
                if storage.set_trial_state_values(trial._trial_id, state=TrialState.RUNNING):
                    storage.set_trial_system_attr(trial._trial_id, DISCARDED_ATTR, "duplicate")
                    storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            except UpdateFinishedTrialError:
                pass


def requeue(
    study: optuna.Study, storage: BaseStorage, trial: FrozenTrial, *, died: bool = False
) -> bool:
    """Queue a failed trial's point again (its reference label kept); True if queued.

    A point whose worker died ``MAX_DEATHS`` times is given up: it may be what kills them.
    """
    if not trial.params:
        return False  # stopped before its ratios were chosen: nothing to redo
    deaths = int(trial.system_attrs.get(DEATHS_ATTR, 0)) + int(died)
    if deaths >= MAX_DEATHS:
        logger.warning("trial %d: its worker died %d times; not retried", trial.number, deaths)
        with contextlib.suppress(UpdateFinishedTrialError):
            storage.set_trial_system_attr(trial._trial_id, GIVEN_UP_ATTR, deaths)
        return False
    history = [*trial.system_attrs.get(RETRY_HISTORY_ATTR, []), trial.number]
    system_attrs = {
        RETRY_OF_ATTR: trial.system_attrs.get(RETRY_OF_ATTR, trial.number),
        RETRY_HISTORY_ATTR: history,
        DEATHS_ATTR: deaths,
    }
    user_attrs = {k: v for k, v in trial.user_attrs.items() if k == REFERENCE_KEY}
    return enqueue_once(
        study,
        storage,
        trial.params,
        trial.distributions,
        user_attrs=user_attrs,
        system_attrs=system_attrs,
        exclude=trial.number,
    )


def accounted(trial: FrozenTrial) -> bool:
    """False for trials dropped before any evaluation (surplus or duplicate)."""
    return DISCARDED_ATTR not in trial.system_attrs


# --- the loop ---------------------------------------------------------------------------------


class TrialObserver(Protocol):
    """What a ``Worker`` reports; ``study.SearchObserver`` implements it."""

    def phase(self, name: str) -> None: ...
    def trial_started(self, number: int, ratios: dict[str, float]) -> None: ...
    def finetune_step(self, done: int, total: int) -> None: ...
    def trial_finished(self, trial: FrozenTrial) -> None: ...


Evaluate = Callable[
    [int, dict[str, float], Callable[[int, int], None], Callable[[int, float], bool]],
    tuple[Sequence[float], dict[str, Any]],
]
"""``(number, ratios, progress, rung) -> (objective values, record attributes)``; ``rung(steps,
accuracy)`` reports an intermediate score and says whether to go on; ``TrialFailed`` or
``TrialStopped`` end the trial otherwise."""

# the trials that count towards a search's total: scored in full, or stopped by halving
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _storage_failure(label: str, what: str, error: BaseException) -> StorageError:
    while error.__cause__ is not None:  # Optuna wraps the driver's error in a vaguer one
        error = error.__cause__
    reason = (str(error).strip().splitlines() or [""])[0][:160]
    full = isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)
    full = full or "disk is full" in reason or "No space left" in reason
    fix = (
        "free disk space, then rerun the same command to resume"
        if full
        else "check the server or file, then rerun the same command to resume"
    )
    return StorageError(
        f"storage {label} failed while {what} ({type(error).__name__}: {reason}): every "
        f"complete trial is saved and the running one will be retried; {fix}"
    )


@dataclass
class Worker:
    """Runs trials of ``study`` until it holds ``total_trials`` finished ones (complete, or
    stopped at a rung by successive halving)."""

    study: optuna.Study
    storage: BaseStorage
    evaluate: Evaluate
    suggest: Callable[[optuna.Trial], dict[str, float]]
    total_trials: int
    observer: TrialObserver
    control: StopControl
    label: str = "storage"
    liveness: Liveness = Liveness()
    distinct_points: int | None = None  # how many points the space has (None: plenty)
    poll_s: float = 1.0
    max_failures_in_row: int = 5

    def __post_init__(self) -> None:
        self._jitter = random.Random(os.getpid() ^ time.time_ns())

    @contextmanager
    def _store(self, what: str) -> Iterator[None]:
        """A storage step: signals wait until it ends; its failure is one ``StorageError``."""
        with self.control.deferred():
            try:
                yield
            except (AutopruneError, KeyboardInterrupt, UpdateFinishedTrialError, TrialFailed):
                raise
            except Exception as error:
                raise _storage_failure(self.label, what, error) from error

    def run(self) -> int:
        """Returns how many trials this worker completed."""
        completed = failures = discards = 0
        while True:
            self.control.check()
            self.observer.phase("waiting")
            with self._store("checking for dead workers"):
                fail_dead_trials(self.study, self.storage, self.liveness)
                trials = self.study.get_trials(deepcopy=False)
            finished = sum(t.state in FINISHED for t in trials)
            running = sum(t.state == TrialState.RUNNING for t in trials)
            if finished >= self.total_trials:
                return completed
            if finished + running >= self.total_trials:
                self.control.sleep(self.poll_s)  # others finish, or die and are retried
                continue
            outcome = self._one_trial(allow_duplicate=discards >= 10)
            if outcome in ("complete", "stopped"):
                completed, failures, discards = completed + 1, 0, 0
            elif outcome == "failed":
                failures += 1
                if failures >= self.max_failures_in_row:
                    raise ConfigError(
                        f"{failures} trials in a row failed (fine-tuning diverged): lower the "
                        "fine-tuning learning rate or check the baseline"
                    )
            elif outcome == "discarded":
                discards += 1
                self.control.sleep(self._jitter.uniform(0.05, 0.5) * min(discards, 4))

    def _one_trial(self, *, allow_duplicate: bool) -> str:
        self.observer.phase("sampling")
        heartbeat: Heartbeat | None = None
        trial: optuna.Trial | None = None
        try:
            # one deferred block: a stop lands after the trial is asked, marked and sampled
            with self._store("starting a trial"), warnings.catch_warnings():
                # Optuna warns its heartbeat expects optimize(): we beat ourselves (Heartbeat)
                warnings.filterwarnings(
                    "ignore", message="Heartbeat of storage", category=UserWarning
                )
                trial = self.study.ask()
                heartbeat = Heartbeat(self.storage, trial._trial_id, self.liveness)
                ratios = self.suggest(trial)
                verdict = self._verdict(trial, allow_duplicate)
            if verdict is not None:
                with self._store("discarding a trial"):
                    self._discard(trial, verdict)
                return "discarded"
            self.observer.trial_started(trial.number, ratios)
            self.observer.phase("finetune")

            def progress(done: int, total: int) -> None:
                self.control.check()
                if heartbeat is not None and heartbeat.error is not None:
                    raise _storage_failure(self.label, "marking a trial alive", heartbeat.error)
                self.observer.finetune_step(done, total)

            def rung(steps: int, accuracy: float) -> bool:
                with self._store("reporting a rung"):
                    trial.report(accuracy, steps)
                    return not trial.should_prune()

            try:
                values, attrs = self.evaluate(trial.number, ratios, progress, rung)
            except TrialStopped as stopped:
                return self._record_stopped(trial, stopped.attrs)
            except TrialFailed as failure:
                logger.warning("trial %d failed: %s", trial.number, failure)
                self.observer.phase("storage")
                with self._store("recording a failed trial"):
                    self.storage.set_trial_system_attr(trial._trial_id, FAILURE_ATTR, str(failure))
                    frozen = self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                self.observer.trial_finished(frozen)
                return "failed"
            self.observer.phase("storage")
            with self._store("saving a trial"):
                for key, value in attrs.items():
                    trial.set_user_attr(key, value)
                frozen = self.study.tell(trial, list(values), skip_if_finished=True)
            self.observer.trial_finished(frozen)
            if frozen.state != TrialState.COMPLETE:
                raise UpdateFinishedTrialError(f"trial {trial.number} was failed meanwhile")
            return "complete"
        except UpdateFinishedTrialError:
            # another worker took this one for dead (a stalled worker): its retry redoes it
            logger.warning("a trial was failed by another worker; moving on")
            return "discarded"
        except KeyboardInterrupt:
            if trial is not None:
                with self.control.deferred():
                    self._stop_trial(trial, "interrupted")
            raise
        except StorageError:
            raise  # the trial stays RUNNING; its beats stop and a later worker retries it
        except BaseException:
            if trial is not None:
                with self.control.deferred():
                    self._stop_trial(trial, "error", requeue_it=False)
            raise
        finally:
            if heartbeat is not None:
                heartbeat.stop()

    def _record_stopped(self, trial: optuna.Trial, attrs: dict[str, Any]) -> str:
        self.observer.phase("storage")
        with self._store("recording a stopped trial"):
            for key, value in attrs.items():
                trial.set_user_attr(key, value)
            frozen = self.study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        self.observer.trial_finished(frozen)
        if frozen.state != TrialState.PRUNED:
            raise UpdateFinishedTrialError(f"trial {trial.number} was failed meanwhile")
        return "stopped"

    def _verdict(self, trial: optuna.Trial, allow_duplicate: bool) -> str | None:
        # a stopped point counts too: it is finished, and need not be stopped again
        trials = self.study.get_trials(deepcopy=False, states=(*ALIVE, TrialState.PRUNED))
        if len(trials) > self.total_trials:
            return "surplus"
        mine = next(t for t in trials if t.number == trial.number)
        if allow_duplicate or (
            self.distinct_points is not None and self.distinct_points <= len(trials)
        ):
            return None
        key = params_key(mine.params)
        for other in trials:
            if other.number != trial.number and params_key(other.params) == key:
                return "duplicate"
        return None

    def _discard(self, trial: optuna.Trial, reason: str) -> None:
        self.storage.set_trial_system_attr(trial._trial_id, DISCARDED_ATTR, reason)
        frozen = self.study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        if _was_queued(frozen):
            requeue(self.study, self.storage, frozen)  # no-op while another trial holds it

    def _stop_trial(self, trial: optuna.Trial, why: str, *, requeue_it: bool = True) -> None:
        """Fail the running trial (best effort: a lost storage leaves it to the dead check)."""
        try:
            frozen = self.storage.get_trial(trial._trial_id)
            if requeue_it:
                _requeue_then_fail(self.study, self.storage, frozen, why, died=False)
            else:
                _fail(self.storage, frozen, why)
        except KeyboardInterrupt:
            raise
        except Exception as error:
            logger.debug("could not fail trial %d: %s", trial.number, error)


def _was_queued(trial: FrozenTrial) -> bool:
    return REFERENCE_KEY in trial.user_attrs or RETRY_OF_ATTR in trial.system_attrs
