"""Search over per-group pruning ratios with Optuna: spaces, samplers, storage, study, front."""

from autoprune.search.export import ExportedTrial, export_trial
from autoprune.search.layerwise import GroupDecision, LayerwiseConfig, LayerwiseResult
from autoprune.search.objective import CandidateEvaluator, CandidateResult, FinetuneConfig
from autoprune.search.pareto import compact_bits, compact_ratios, trials_frame
from autoprune.search.record import TrialRecord
from autoprune.search.samplers import SAMPLERS, create_sampler
from autoprune.search.session import DEFAULT_BITS, DEFAULT_MODEL, SearchRequest, SearchSession
from autoprune.search.space import SearchSpace, load_search_space, parse_search_space
from autoprune.search.storage import DEFAULT_STORAGE, open_storage
from autoprune.search.study import (
    Reference,
    SearchObserver,
    load_existing_study,
    open_study,
    run_config_of,
    study_summaries,
)

__all__ = [
    "DEFAULT_BITS",
    "DEFAULT_MODEL",
    "DEFAULT_STORAGE",
    "SAMPLERS",
    "CandidateEvaluator",
    "CandidateResult",
    "ExportedTrial",
    "FinetuneConfig",
    "GroupDecision",
    "LayerwiseConfig",
    "LayerwiseResult",
    "Reference",
    "SearchObserver",
    "SearchRequest",
    "SearchSession",
    "SearchSpace",
    "TrialRecord",
    "compact_bits",
    "compact_ratios",
    "create_sampler",
    "export_trial",
    "load_existing_study",
    "load_search_space",
    "open_storage",
    "open_study",
    "parse_search_space",
    "run_config_of",
    "study_summaries",
    "trials_frame",
]
