"""Output paths are refused before any work when they cannot or must not be written."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from autoprune.errors import OutputError
from autoprune.paths import check_output, write_atomically, write_text_atomically


def test_a_writable_path_passes_and_missing_folders_are_fine(tmp_path: Path) -> None:
    assert check_output(tmp_path / "a.pt") == tmp_path / "a.pt"
    assert check_output(tmp_path / "new" / "deeper" / "a.pt") == tmp_path / "new/deeper/a.pt"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert list(tmp_path.iterdir()) == []


def _file(path: Path) -> Path:
    path.write_text("x")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root, "is a folder: name a file inside it"),
        (
            lambda root: (root / "file").write_text("x") and root / "file" / "a.pt",
            "which is a file",
        ),
        (lambda root: Path("/proc/autoprune-out.pt"), "cannot be written"),
    ],
    ids=["directory", "under-a-file", "proc"],
)
def test_unwritable_outputs_are_one_line(tmp_path: Path, make, message: str) -> None:
    with pytest.raises(OutputError, match=message) as caught:
        check_output(make(tmp_path), what="--out")
    assert "\n" not in str(caught.value) and str(caught.value).startswith("--out ")


def test_an_output_that_is_an_input_is_refused(tmp_path: Path) -> None:
    study = tmp_path / "s.db"
    study.write_bytes(b"sqlite")
    for alias in (study, tmp_path / "." / "s.db", tmp_path / "sub" / ".." / "s.db"):
        with pytest.raises(OutputError, match="is the study's storage: write it elsewhere"):
            check_output(alias, inputs={"the study's storage": study, "unused": None})
    link = tmp_path / "link.db"
    link.symlink_to(study)
    with pytest.raises(OutputError, match="is the study's storage"):
        check_output(link, inputs={"the study's storage": study})
    assert study.read_bytes() == b"sqlite"


def test_a_failed_write_keeps_the_old_file_and_leaves_no_debris(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    write_text_atomically(target, "old")

    def full_disk(partial: Path) -> None:
        partial.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OutputError, match="No space left on device: free some space"):
        write_atomically(target, full_disk)

    def torch_short_write(partial: Path) -> None:
        partial.write_text("half")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64 vs 0")

    with pytest.raises(OutputError, match="cut short"):
        write_atomically(target, torch_short_write)

    def interrupted(partial: Path) -> None:
        partial.write_text("half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_atomically(target, interrupted)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]
