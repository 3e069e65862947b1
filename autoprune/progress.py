"""Progress of a search, for people: observers to pass to ``run_search(observer=...)``.

The library itself prints nothing. ``LoggingObserver`` writes one record per trial to a
logger (configure logging to see it); ``TqdmObserver`` draws a progress bar in a terminal or a
notebook (needs ``tqdm``, imported when the observer is made). The CLI passes its own rich
observer. Both implement ``autoprune.search.SearchObserver``.
"""

from __future__ import annotations

import logging
import math
import warnings
from typing import TYPE_CHECKING, Any

from autoprune.errors import ConfigError

with warnings.catch_warnings():  # Optuna imports tqdm.auto, which warns without ipywidgets
    warnings.filterwarnings("ignore", message="IProgress not found")
    from autoprune.search.study import SearchObserver

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["LoggingObserver", "TqdmObserver", "trial_summary"]


def trial_summary(trial: FrozenTrial) -> str:
    """``trial 3: val acc 91.20 %, 0.0123 MB`` (or the trial's state when it did not finish)."""
    from autoprune.search.record import TrialRecord

    stopped = TrialRecord.from_trial(trial).stopped_at
    if trial.state.name == "PRUNED" and stopped in trial.intermediate_values:
        score = 100 * trial.intermediate_values[stopped]
        return f"trial {trial.number}: stopped after {stopped} steps, subset acc {score:.2f} %"
    if trial.state.name != "COMPLETE" or not trial.values:
        return f"trial {trial.number}: {trial.state.name.lower()}"

    accuracy = trial.values[0]
    size = TrialRecord.from_trial(trial).size_mb  # a budget study has one objective
    shown = f"{100 * accuracy:.2f} %" if math.isfinite(accuracy) else str(accuracy)
    return f"trial {trial.number}: val acc {shown}, " + (
        f"{size:.4f} MB" if size is not None else "size ?"
    )


class LoggingObserver(SearchObserver):
    """Logs each finished trial (INFO) and each layer-wise decision to ``logger``
    (default ``autoprune.progress``); nothing is printed unless logging is configured."""

    def __init__(self, logger: logging.Logger | None = None, level: int = logging.INFO) -> None:
        self.logger = logger or logging.getLogger(__name__)
        self.level = level

    def trial_started(self, number: int, ratios: dict[str, float]) -> None:
        self.logger.debug("trial %d started: %s", number, ratios)

    def trial_finished(self, trial: FrozenTrial) -> None:
        self.logger.log(self.level, "%s", trial_summary(trial))

    def group_started(self, position: int, total: int, group: str) -> None:
        self.logger.log(self.level, "group %d of %d: %s", position + 1, total, group)

    def group_finished(self, decision: Any) -> None:
        self.logger.log(self.level, "chose %s", decision)


def _widgets_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ipywidgets") is not None


class TqdmObserver(SearchObserver):
    """A progress bar over trials (a widget in notebooks with ipywidgets, text elsewhere),
    its postfix showing the last trial; ``total`` is the number of trials to wait for."""

    def __init__(self, total: int | None = None, **tqdm_options: Any) -> None:
        try:
            from tqdm import tqdm

            if _widgets_available():  # a notebook widget; text bars where there are none
                from tqdm.auto import tqdm
        except ImportError as error:
            raise ConfigError(
                "TqdmObserver needs tqdm: pip install tqdm, or use LoggingObserver"
            ) from error
        self.bar = tqdm(total=total, unit="trial", **tqdm_options)

    def trial_finished(self, trial: FrozenTrial) -> None:
        if trial.state.name in ("COMPLETE", "PRUNED"):  # both count towards the trials
            self.bar.update(1)
        self.bar.set_postfix_str(trial_summary(trial), refresh=True)

    def close(self) -> None:
        """End the bar (it also ends when the observer is garbage-collected)."""
        self.bar.close()
