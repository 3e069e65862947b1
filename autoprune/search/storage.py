"""Where studies live: a SQLite file by default, any Optuna RDB URL, or a journal file.

Many workers may share one storage (PostgreSQL/MySQL URL, or a journal file on a shared
filesystem; SQLite for a few processes on one machine); ``worker.Worker`` keeps them from
repeating or losing each other's trials.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock

from autoprune.errors import StorageError
from autoprune.search.worker import Liveness, requeue_stale_trial

DEFAULT_STORAGE = "autoprune.db"
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
# A worker that stops beating for this long is considered dead; its trial is failed and retried.
HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 120
JOURNAL_LOCK_GRACE_S = 10  # a journal write holds its lock for milliseconds
LIVENESS = Liveness(interval=HEARTBEAT_INTERVAL_S, grace=HEARTBEAT_GRACE_S)
# the drivers SQLAlchemy 2 picks for each URL scheme, and the extra that installs them
DRIVER_HINTS = {
    "postgresql": "pip install 'autoprune[postgres]' (psycopg 3)",
    "mysql": "pip install pymysql and use mysql+pymysql://",
}


class SafeJournalFileBackend(JournalFileBackend):
    """Optuna's journal file, kept whole when a write fails (e.g. a full disk).

    A half-written line would make every later read fail; under the file's lock a failed
    append is cut back off, and a torn tail left by a killed writer is cut before appending.
    """

    def __init__(self, path: str) -> None:
        self._path = path
        # a writer killed while holding the lock leaves it behind; others break it after
        # this long (Optuna's default, 30 s, stalls every worker that long)
        self._write_lock = JournalFileSymlinkLock(path, grace_period=JOURNAL_LOCK_GRACE_S)
        super().__init__(path, lock_obj=self._write_lock)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        acquired = self._write_lock.acquire()
        try:
            size = _whole_size(self._path)
            if os.path.exists(self._path) and os.path.getsize(self._path) != size:
                os.truncate(self._path, size)
            try:
                _append(self._path, logs)
            except BaseException:
                os.truncate(self._path, size)
                raise
        finally:
            if acquired:
                self._write_lock.release()


def _whole_size(path: str) -> int:
    """Bytes up to and including the last newline (0 for a missing or empty file)."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            position = end
            while position > 0:
                step = min(4096, position)
                f.seek(position - step)
                chunk = f.read(step)
                newline = chunk.rfind(b"\n")
                if newline >= 0:
                    return position - step + newline + 1
                position -= step
            return 0
    except FileNotFoundError:
        return 0


def _append(path: str, logs: list[dict[str, Any]]) -> None:
    import json

    text = "\n".join(json.dumps(log, separators=(",", ":")) for log in logs) + "\n"
    with open(path, "ab") as f:
        f.write(text.encode("utf-8"))
        f.flush()
        os.fsync(f.fileno())


def storage_url(spec: str) -> str:
    """``path.db`` -> ``sqlite:///path.db``; URLs pass through unchanged."""
    return spec if "://" in spec else f"sqlite:///{Path(spec).expanduser()}"


def storage_file(spec: str) -> Path | None:
    """The local file a storage names (SQLite or journal); None for a database server."""
    if spec.startswith("sqlite:///"):
        return Path(spec.removeprefix("sqlite:///")).expanduser()
    return None if "://" in spec else Path(spec).expanduser()


def driver_hint(spec: str) -> str:
    scheme = spec.split("://", 1)[0].split("+", 1)[0] if "://" in spec else "sqlite"
    return DRIVER_HINTS.get(scheme, "its SQLAlchemy driver")


def storage_liveness(storage: optuna.storages.BaseStorage) -> Liveness:
    """The heartbeat interval and grace period the storage's workers use."""
    if isinstance(storage, RDBStorage) and storage.heartbeat_interval is not None:
        grace = storage.grace_period or 2 * storage.heartbeat_interval
        return Liveness(interval=storage.heartbeat_interval, grace=grace)
    return LIVENESS


def open_storage(
    spec: str = DEFAULT_STORAGE, *, liveness: Liveness = LIVENESS
) -> optuna.storages.BaseStorage:
    """Open (creating if needed) the storage named by a path or URL; ``StorageError`` if not."""
    try:
        if spec.endswith(JOURNAL_SUFFIXES) and "://" not in spec:
            path = Path(spec).expanduser()
            if not path.parent.is_dir():
                raise StorageError(f"storage {spec}: folder {path.parent} does not exist")
            return JournalStorage(SafeJournalFileBackend(str(path)))
        url = storage_url(spec)
        if url.startswith("sqlite:///"):
            folder = Path(url.removeprefix("sqlite:///")).parent
            if not folder.is_dir():
                raise StorageError(
                    f"storage {spec}: folder {folder} does not exist; create it "
                    "or pass another `storage`"
                )
        # several processes on one SQLite file take turns writing: wait for the lock rather
        # than fail with "database is locked" after SQLite's default 5 s
        engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else None
        return RDBStorage(
            url,
            engine_kwargs=engine_kwargs,
            heartbeat_interval=max(1, round(liveness.interval)),
            grace_period=max(1, round(liveness.grace)),
            heartbeat_stale_trial_callback=requeue_stale_trial,
        )
    except StorageError:
        raise
    except Exception as error:  # SQLAlchemy, driver and filesystem errors all mean the same here
        reason = str(error).splitlines()[0][:200] if str(error) else ""
        raise StorageError(
            f"cannot open storage {spec} ({type(error).__name__}: {reason}): check the URL or "
            f"path, the server and its driver ({driver_hint(spec)})"
        ) from error
