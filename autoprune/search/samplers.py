"""Optuna samplers by name, and the wrapper that lets many workers share one study.

A new sampler is one registered factory ``(seed, n_startup_trials) -> sampler``. Running
trials are accounted for by the samplers themselves: TPE lies about them (``constant_liar``),
Optuna 5's GP sampler treats them as pending points (q-batch log-EHVI).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from autoprune.errors import ConfigError
from autoprune.registry import Registry
from autoprune.search.worker import params_key

SamplerFactory = Callable[[int | None, int], optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("gp")
def gp_sampler(seed: int | None, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    """Optuna's Gaussian-process sampler (Matern 5/2 kernel; EHVI for two objectives)."""
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=n_startup_trials)


@SAMPLERS.register("tpe")
def tpe_sampler(seed: int | None, n_startup_trials: int) -> optuna.samplers.BaseSampler:
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=n_startup_trials, multivariate=True, constant_liar=True
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


class DistinctSampler(optuna.samplers.BaseSampler):
    """A registered sampler made safe for many workers on one study.

    Each trial is sampled by a fresh inner sampler seeded with ``seed`` + the trial's number:
    numbers are unique across workers, so workers draw distinct start-up points, and one
    worker alone is reproducible. A relative (model-based) proposal equal to a complete,
    running or queued trial's ratios is replaced by a random point no trial holds yet.
    Queued trials (references, retries) keep their ratios without sampling.
    """

    def __init__(self, name: str, *, seed: int | None, n_startup_trials: int) -> None:
        self._factory = SAMPLERS.get(name)
        self._seed = seed
        self._n_startup_trials = n_startup_trials
        self._current: tuple[int, optuna.samplers.BaseSampler] | None = None

    def _seed_for(self, number: int) -> int | None:
        return None if self._seed is None else (self._seed + number) % 2**32

    def _inner(self, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if self._current is None or self._current[0] != trial.number:
            sampler = self._factory(self._seed_for(trial.number), self._n_startup_trials)
            self._current = (trial.number, sampler)
        return self._current[1]

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if trial.params or "fixed_params" in trial.system_attrs:
            return {}  # a queued point: nothing to sample (and no model to fit)
        return self._inner(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        params = self._inner(trial).sample_relative(study, trial, search_space)
        if not params or set(params) != set(search_space):
            return params
        states = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING)
        taken = {
            params_key(t.params)
            for t in study.get_trials(deepcopy=False, states=states)
            if t.number != trial.number
        }
        if params_key(params) not in taken:
            return params
        rng = np.random.default_rng(self._seed_for(trial.number))
        for _ in range(200):
            candidate = {name: _draw(rng, d) for name, d in search_space.items()}
            if params_key(candidate) not in taken:
                return candidate
        return params  # (nearly) every point is taken: repeat rather than stall

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._inner(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Any,
    ) -> None:
        self._inner(trial).after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Seeds are per trial already."""


def _draw(rng: np.random.Generator, distribution: BaseDistribution) -> Any:
    """A uniform random value of a float distribution on its step grid (ratios are floats)."""
    if isinstance(distribution, optuna.distributions.FloatDistribution):
        low, high, step = distribution.low, distribution.high, distribution.step
        if step is None:
            return float(rng.uniform(low, high))
        steps = round((high - low) / step)
        return round(low + int(rng.integers(0, steps + 1)) * step, 12)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return int(rng.integers(distribution.low, distribution.high + 1))
    choices = distribution.choices  # type: ignore[attr-defined]
    return choices[int(rng.integers(0, len(choices)))]
