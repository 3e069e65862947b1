"""Where studies live: a SQLite file by default, any Optuna RDB URL, or a journal file.

Many workers may share one storage (PostgreSQL/MySQL URL, or a journal file on a shared
filesystem); Optuna coordinates them, autoprune adds no scheduler of its own.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.storages import JournalStorage, RDBStorage
from optuna.storages.journal import JournalFileBackend

from autoprune.errors import StorageError

DEFAULT_STORAGE = "autoprune.db"
JOURNAL_SUFFIXES = (".log", ".journal", ".jsonl")
# A worker that stops beating for this long is considered dead; its trial is failed and retried.
HEARTBEAT_INTERVAL_S = 30
HEARTBEAT_GRACE_S = 120


def storage_url(spec: str) -> str:
    """``path.db`` -> ``sqlite:///path.db``; URLs pass through unchanged."""
    return spec if "://" in spec else f"sqlite:///{Path(spec).expanduser()}"


def open_storage(spec: str = DEFAULT_STORAGE) -> optuna.storages.BaseStorage:
    """Open (creating if needed) the storage named by a path or URL; ``StorageError`` if not."""
    try:
        if spec.endswith(JOURNAL_SUFFIXES) and "://" not in spec:
            path = Path(spec).expanduser()
            if not path.parent.is_dir():
                raise StorageError(f"storage {spec}: folder {path.parent} does not exist")
            return JournalStorage(JournalFileBackend(str(path)))
        url = storage_url(spec)
        if url.startswith("sqlite:///"):
            folder = Path(url.removeprefix("sqlite:///")).parent
            if not folder.is_dir():
                raise StorageError(
                    f"storage {spec}: folder {folder} does not exist; create it "
                    "or pass another --storage"
                )
        return RDBStorage(
            url,
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=HEARTBEAT_GRACE_S,
            heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                max_retry=2
            ),
        )
    except StorageError:
        raise
    except Exception as error:  # SQLAlchemy, driver and filesystem errors all mean the same here
        reason = str(error).splitlines()[0][:200]
        raise StorageError(
            f"cannot open storage {spec} ({type(error).__name__}: {reason}): check the URL or "
            "path, the server and its driver (e.g. pip install psycopg2-binary)"
        ) from error
