"""autoprune: automatic pruning of quantized neural networks.

The public API (implemented in ``autoprune.api``; see its docstring for a tour):

- networks: ``create_model``, ``quantize_`` (in place), ``prune_`` (in place, physically
  smaller), ``load`` (a checkpoint), ``inspect`` (a summary), ``measure`` (exact cost);
- configs: ``QuantSpec``, ``TrainConfig``, ``DataConfig``, ``FinetuneConfig``, ``HalvingConfig``,
  ``RunConfig``;
- entry points: ``train_baseline``, ``run_search`` -> ``SearchResult`` (``.pareto()``,
  ``.best()``, ``.build()``, ``.export()``), ``load_search``, ``export_trial``;
- progress: ``autoprune.progress`` (logging and tqdm observers); the library prints nothing.

Names that need Optuna or the search machinery are imported on first use, so
``import autoprune`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

from autoprune.api import (
    SearchResult,
    create_model,
    export_trial,
    inspect,
    load,
    load_search,
    measure,
    prune_,
    quantize_,
    run_search,
    train_baseline,
)
from autoprune.config import (
    DataConfig,
    FinetuneConfig,
    HalvingConfig,
    LayerwiseConfig,
    RunConfig,
    TrainConfig,
)
from autoprune.quant import QuantSpec

__version__ = "0.1.0"

# public names imported on first access: (module, attribute)
_LAZY = {
    "SearchObserver": ("autoprune.search.study", "SearchObserver"),
    "DataSplits": ("autoprune.data", "DataSplits"),
}

__all__ = [
    "DataConfig",
    "DataSplits",
    "FinetuneConfig",
    "HalvingConfig",
    "LayerwiseConfig",
    "QuantSpec",
    "RunConfig",
    "SearchObserver",
    "SearchResult",
    "TrainConfig",
    "__version__",
    "create_model",
    "export_trial",
    "inspect",
    "load",
    "load_search",
    "measure",
    "prune_",
    "quantize_",
    "run_search",
    "train_baseline",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attribute = _LAZY[name]
        value = getattr(importlib.import_module(module), attribute)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'autoprune' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
