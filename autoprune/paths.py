"""Output files: checked before the expensive work, written atomically.

Every command that writes a file checks its path first (``check_output``), so a typo costs a
second, not the hours of training or searching before the write; and writes it through a
temporary file (``write_atomically``), so an interrupted or failed write leaves what was there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

from autoprune.errors import OutputError


def _nearest_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path(path.anchor or ".")


def _same_file(a: Path, b: Path) -> bool:
    with contextlib.suppress(OSError):
        if a.exists() and b.exists():
            return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def check_output(
    path: str | Path,
    *,
    inputs: Mapping[str, str | Path | None] | None = None,
    what: str = "output",
) -> Path:
    """``path`` if a file can be written there; else a one-line ``OutputError``.

    Refused: a directory, a path under a file, a folder that cannot be written (probed by
    creating and removing a temporary file, which also catches read-only mounts and /proc), and
    any of ``inputs`` (description -> path; None entries are skipped), which writing would
    destroy. Missing folders are fine: they are created when the file is written.
    """
    path = Path(path).expanduser()
    for description, source in (inputs or {}).items():
        if source is not None and _same_file(path, Path(source).expanduser()):
            raise OutputError(f"{what} {path} is {description}: write it elsewhere")
    if path.is_dir():
        raise OutputError(f"{what} {path} is a folder: name a file inside it")
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        raise OutputError(
            f"{what} {path} lies under {folder}, which is a file: choose another path"
        )
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".autoprune-probe-"):
            pass
    except OSError as error:
        raise OutputError(
            f"{what} {path} cannot be written: folder {folder} is not writable "
            f"({os.strerror(error.errno) if error.errno else error}): choose another path"
        ) from error
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {path} is read-only: choose another path or allow writing")
    return path


def _disk_error(error: BaseException) -> bool:
    """torch.save reports a short write from its C++ zip writer as a RuntimeError."""
    text = str(error)
    return isinstance(error, RuntimeError) and any(
        marker in text for marker in ("unexpected pos", "file write failed", "PytorchStreamWriter")
    )


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError) and error.errno is not None:
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        return os.strerror(error.errno) + (": free some space and retry" if full else "")
    if _disk_error(error):
        return "the write was cut short (is the disk full?): free some space and retry"
    return " ".join(str(error).split())


def write_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(temporary_path)``, then rename the result onto ``path``.

    An interrupted or failed write (Ctrl-C, a full disk) leaves the old file as it was and no
    debris; an ``OSError`` or a short write becomes a one-line ``OutputError``.
    """
    path = Path(path).expanduser()
    partial = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(partial)
        partial.replace(path)
    except BaseException as error:
        with contextlib.suppress(OSError):  # the original error is the one to report
            partial.unlink(missing_ok=True)
        if isinstance(error, OSError) or _disk_error(error):
            raise OutputError(f"cannot write {path}: {_reason(error)}") from error
        raise
    return path


def write_text_atomically(path: str | Path, text: str) -> Path:
    return write_atomically(path, lambda partial: partial.write_text(text))
