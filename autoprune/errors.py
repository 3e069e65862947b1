"""Errors a user can fix. The CLI prints their message as one line and exits non-zero.

Every message names the problem and the fix, e.g. "dataset 'cifar10' not found in /x:
pass --data-dir pointing at ...". Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class AutopruneError(Exception):
    """Base of every error caused by input the user can change."""


class DatasetNotFoundError(AutopruneError, FileNotFoundError):
    """A dataset's files are missing or incomplete."""


class CheckpointError(AutopruneError):
    """A checkpoint is unreadable, corrupt, or does not match the requested model."""


class UntrustedModelError(CheckpointError):
    """A file names user code (``package.module:factory``) that the caller did not name.

    autoprune never imports code because a checkpoint or study says so: the caller allows it by
    naming the same factory (or passing the factory or a model object) as ``model``.
    """

    def __init__(self, source: str, name: str) -> None:
        self.source, self.name = source, name
        super().__init__(
            f"{source} was made from your own model {name!r}; autoprune imports code named in "
            f"a file only when you name it too: pass model={name!r} (its folder on PYTHONPATH)"
        )


class OutputError(AutopruneError):
    """An output path cannot be written, or writing it would destroy an input."""


class ConfigError(AutopruneError, ValueError):
    """An option, bit-width, search-space file or study configuration is invalid."""


class StorageError(AutopruneError):
    """The Optuna storage cannot be opened."""
