"""A failing session removes the new, empty storage file it made, unless another session is
preparing on that file (workers started together on one new database)."""

from __future__ import annotations

from pathlib import Path

import optuna

from autoprune.search.session import _StorageClaim
from autoprune.search.storage import open_storage


def _create_study(path: Path) -> None:
    storage = open_storage(str(path))
    optuna.create_study(storage=storage, study_name="s")
    storage.engine.dispose()


def test_a_failing_session_alone_removes_the_empty_file_it_found_missing(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    claim = _StorageClaim(str(path))
    claim.hold()
    _create_study(path)
    claim.abandon()
    assert not path.exists()


def test_a_failing_session_keeps_a_new_file_another_is_preparing_on(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first, second = _StorageClaim(str(path)), _StorageClaim(str(path))
    first.hold()
    _create_study(path)
    second.hold()  # the second worker joined the new file and is training its baseline
    first.abandon()
    assert path.exists() and optuna.get_all_study_names(f"sqlite:///{path}") == ["s"]
    second.abandon()  # the second fails too, and is now the last: the empty file goes
    assert not path.exists()


def test_a_failing_session_keeps_a_file_that_was_there(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _create_study(path)
    claim = _StorageClaim(str(path))
    claim.hold()
    claim.abandon()
    assert path.exists()


def test_a_server_or_a_missing_folder_is_not_locked(tmp_path: Path) -> None:
    for storage in ("postgresql://u@localhost/db", str(tmp_path / "missing" / "s.db")):
        claim = _StorageClaim(storage)
        claim.hold()
        assert claim.descriptor is None
        claim.abandon()
    assert not (tmp_path / "missing").exists()
