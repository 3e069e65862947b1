"""Optuna samplers by name.

A new sampler is one registered factory ``(seed, n_startup_trials) -> sampler``.
"""

from __future__ import annotations

from collections.abc import Callable

import optuna

from autoprune.errors import ConfigError
from autoprune.registry import Registry

SamplerFactory = Callable[[int | None, int], optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("gp")
def gp_sampler(seed: int | None, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    """Optuna's Gaussian-process sampler (Matern 5/2 kernel; EHVI for two objectives)."""
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)


@SAMPLERS.register("tpe")
def tpe_sampler(seed: int | None, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup_trials, multivariate=True
    )


@SAMPLERS.register("random")
def random_sampler(seed: int | None, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("botorch")
def botorch_sampler(seed: int | None, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    """BoTorch's qNEHVI through optuna-integration (the ``botorch`` extra)."""
    try:
        from optuna_integration import BoTorchSampler
    except ImportError as error:
        raise ConfigError(
            "the botorch sampler needs extra packages: pip install 'autoprune[botorch]'"
        ) from error
    return BoTorchSampler(seed=seed, n_startup_trials=n_startup_trials)


def create_sampler(
    name: str, *, seed: int | None, n_startup_trials: int
) -> optuna.samplers.BaseSampler:
    return SAMPLERS.get(name)(seed, n_startup_trials)
