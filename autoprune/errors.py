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


class ConfigError(AutopruneError, ValueError):
    """An option, bit-width, search-space file or study configuration is invalid."""


class StorageError(AutopruneError):
    """The Optuna storage cannot be opened."""
