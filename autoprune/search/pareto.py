"""The accuracy/size Pareto front of a study, as a pandas DataFrame.

Besides the compact ``ratios`` column (percent, in group order), each searched group has a
column ``ratio:<group>`` holding its pruning ratio (a fraction), so JSON and CSV name them;
``frame.attrs["groups"]`` lists the group names in order.
"""

from __future__ import annotations

import optuna
import pandas as pd
from optuna.trial import TrialState

from autoprune.metrics import BITS_PER_MB
from autoprune.search.study import CONFIG_ATTR, REFERENCE_ATTR

COLUMNS = [
    "trial",
    "val_accuracy",
    "size_mb",
    "size_pct_of_quantized",
    "compression_vs_fp32",
    "bops",
    "macs",
    "params",
    "reference",
    "ratios",
]
RATIO_PREFIX = "ratio:"


def group_names(study: optuna.Study) -> list[str]:
    """The searched groups in the space's order (else in the order trials name them)."""
    space = (study.user_attrs.get(CONFIG_ATTR) or {}).get("space") or {}
    names = [g["name"] for g in space.get("groups", []) if isinstance(g, dict) and "name" in g]
    if names:
        return names
    seen: dict[str, None] = {}
    for trial in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        seen.update(dict.fromkeys(trial.params))
    return list(seen)


def compact_ratios(params: dict[str, float]) -> str:
    """Ratios in percent, in group order, e.g. ``0 15 30 ...``."""
    return " ".join(f"{round(100 * value):d}" for value in params.values())


def trials_frame(study: optuna.Study, *, pareto_only: bool = True) -> pd.DataFrame:
    """One row per complete trial (or per Pareto-optimal one), sorted by size."""
    reference = study.user_attrs.get(REFERENCE_ATTR, {})
    quantized_bits = reference.get("quantized_size_bits")
    float_bits = reference.get("float_size_bits")
    trials = (
        study.best_trials
        if pareto_only
        else study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    )
    groups = group_names(study)
    rows = []
    for trial in trials:
        size_bits = trial.user_attrs.get("size_bits", trial.values[1] * BITS_PER_MB)
        rows.append(
            {
                "trial": trial.number,
                "val_accuracy": trial.values[0],
                "size_mb": size_bits / BITS_PER_MB,
                "size_pct_of_quantized": 100 * size_bits / quantized_bits
                if quantized_bits
                else None,
                "compression_vs_fp32": float_bits / size_bits if float_bits else None,
                "bops": trial.user_attrs.get("bops"),
                "macs": trial.user_attrs.get("macs"),
                "params": trial.user_attrs.get("params"),
                "reference": trial.user_attrs.get("reference", ""),
                "ratios": compact_ratios({g: trial.params.get(g, 0.0) for g in groups}),
                **{RATIO_PREFIX + g: trial.params.get(g) for g in groups},
            }
        )
    frame = pd.DataFrame(rows, columns=COLUMNS + [RATIO_PREFIX + g for g in groups])
    frame = frame.sort_values(["size_mb", "trial"]).reset_index(drop=True)
    frame.attrs["groups"] = groups
    return frame
