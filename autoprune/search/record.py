"""What autoprune stores per trial as Optuna user attributes, in one type.

Every writer (the joint search, the layer-wise method, the reference points) builds a
``TrialRecord`` and stores ``to_user_attrs()``; every reader (the Pareto table, the CLI, export)
reads ``TrialRecord.from_trial``. The attribute keys are the field names. Trials of older studies
lack some keys: those fields read as None.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import optuna
from optuna.trial import FrozenTrial

from autoprune.metrics import BITS_PER_MB

# The label of a reference point (``"unpruned"``, ``"uniform 0.20"``, ``"layer-wise result"``);
# the worker queues reference points with it before any record exists.
REFERENCE_KEY = "reference"


@dataclass(frozen=True)
class TrialRecord:
    """One trial's measurements and bookkeeping; every field is optional.

    - ``reference``: label of a reference point (else None: a searched point).
    - ``val_loss``, ``val_accuracy``: the candidate's validation scores (the joint search's
      accuracy is also its first objective value).
    - ``size_bits``, ``params``, ``macs``, ``bops``: ``autoprune.metrics.measure`` of it.
    - ``kept_channels``: output channels kept per group.
    - ``seconds``: time per phase (prune, finetune, evaluate).
    - ``checkpoint``: where the layer-wise method saved the trial's network.
    - ``probe``, ``repeat_of``: a layer-wise group's fixed probe; the trial whose (deterministic)
      result a repeated ratio copied.
    - ``ratios``: the ratios applied, where they are not the trial's parameters (a budget
      search samples an allocation shape, see ``autoprune.search.budget``); ``trial_ratios``.
    - ``stopped_at``: the rung (fine-tuning steps) at which successive halving stopped the
      trial (``autoprune.search.halving``); its scores are then the rung's, on the subset.
    """

    reference: str | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    size_bits: int | None = None
    params: int | None = None
    macs: int | None = None
    bops: int | None = None
    kept_channels: dict[str, int] | None = None
    seconds: dict[str, float] | None = None
    checkpoint: str | None = None
    probe: bool | None = None
    repeat_of: int | None = None
    ratios: dict[str, float] | None = None
    stopped_at: int | None = None

    def to_user_attrs(self) -> dict[str, Any]:
        """The fields that are set, keyed by name (what Optuna stores)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    def write(self, trial: optuna.Trial) -> None:
        """Store the record on a running trial."""
        for key, value in self.to_user_attrs().items():
            trial.set_user_attr(key, value)

    @classmethod
    def from_trial(cls, trial: FrozenTrial) -> TrialRecord:
        """The record of any trial, of old studies too (missing keys: None).

        Trials from before ``size_bits`` was stored get it from their second objective, the
        size in MB, when the study had two.
        """
        attrs = trial.user_attrs
        record = cls(**{f.name: attrs.get(f.name) for f in fields(cls)})
        values = trial.values
        if record.size_bits is None and values is not None and len(values) == 2:
            record = replace(record, size_bits=round(values[1] * BITS_PER_MB))
        return record

    @property
    def size_mb(self) -> float | None:
        return None if self.size_bits is None else self.size_bits / BITS_PER_MB


def trial_ratios(trial: FrozenTrial) -> dict[str, float]:
    """The per-group ratios a trial pruned with: its record's, else its parameters."""
    ratios = TrialRecord.from_trial(trial).ratios
    return dict(ratios) if isinstance(ratios, dict) else dict(trial.params)
