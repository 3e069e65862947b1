"""Optuna samplers by name, with keyword options, and the wrapper that lets many workers share
one study.

A new sampler is one registered factory ``(seed, n_startup_trials, n_objectives, *, option=
default, ...) -> sampler``: its keyword-only parameters are its options, which
``create_sampler`` checks by name and type before calling it. Every sampler must work with one
objective (validation accuracy under a budget) and with two (accuracy and cost):
``tests/search/test_sampler_contracts.py`` holds each registered one to that. Running trials are
accounted for by the samplers themselves: TPE lies about them (``constant_liar``), Optuna 5's GP
sampler and BoTorch's treat them as pending points.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from autoprune.config import SEED_LIMIT
from autoprune.errors import ConfigError
from autoprune.registry import Registry
from autoprune.search.worker import params_key

SamplerFactory = Callable[..., optuna.samplers.BaseSampler]
SAMPLERS: Registry[SamplerFactory] = Registry("sampler")


@SAMPLERS.register("gp")
def gp_sampler(
    seed: int | None,
    n_startup_trials: int,
    n_objectives: int,
    *,
    deterministic_objective: bool = False,
    acquisition_samples: int | None = None,
    local_searches: int | None = None,
) -> optuna.samplers.BaseSampler:
    """Optuna's Gaussian-process sampler (Matern 5/2; log-EI for one objective, log-EHVI for
    more). Fine-tuned accuracies are noisy, hence ``deterministic_objective`` off.

    ``acquisition_samples`` (quasi-Monte-Carlo samples of log-EHVI, and of log-EI over running
    trials) and ``local_searches`` (starting points of the acquisition's local optimisation)
    size the work per suggestion. Unset: Optuna's 128 and 10 for one objective; 32 and 4 for
    more, where log-EHVI made the default sizes 8.9 % of a search's time at 100 trials and
    these 2.3 %, with the same fronts (``benchmarks/sampler_speed.py``, synthetic surface, 2
    seeds). Optuna has no public argument for them, so they are set on the attributes Optuna
    5 reads, refused if those are missing."""
    light = n_objectives > 1
    if acquisition_samples is None:
        acquisition_samples = 32 if light else 128
    if local_searches is None:
        local_searches = 4 if light else 10
    if acquisition_samples < 1 or local_searches < 1:
        raise ValueError("acquisition_samples and local_searches must be at least 1")
    sampler = optuna.samplers.GPSampler(
        seed=seed,
        n_startup_trials=n_startup_trials,
        deterministic_objective=deterministic_objective,
    )
    sizes = {
        "_n_qmc_samples_ehvi": acquisition_samples,
        "_n_qmc_samples_qei": acquisition_samples,
        "_n_local_search": local_searches,
    }
    for attribute, value in sizes.items():
        if hasattr(sampler, attribute):
            setattr(sampler, attribute, value)
        elif value != _OPTUNA_GP_SIZES[attribute]:
            raise ConfigError(
                f"Optuna {optuna.__version__}'s GP sampler cannot be sized: leave "
                "acquisition_samples and local_searches at their defaults, or use Optuna 5"
            )
    return sampler


# Optuna 5.0's own sizes of the GP sampler's acquisition optimisation (one objective's defaults)
_OPTUNA_GP_SIZES = {"_n_qmc_samples_ehvi": 128, "_n_qmc_samples_qei": 128, "_n_local_search": 10}


@SAMPLERS.register("tpe")
def tpe_sampler(
    seed: int | None,
    n_startup_trials: int,
    n_objectives: int,
    *,
    multivariate: bool = True,
    group: bool = False,
    constant_liar: bool = True,
    n_ei_candidates: int = 24,
) -> optuna.samplers.BaseSampler:
    """Optuna's tree-structured Parzen estimator (MOTPE for more than one objective)."""
    return optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=n_startup_trials,
        multivariate=multivariate,
        group=group,
        constant_liar=constant_liar,
        n_ei_candidates=n_ei_candidates,
    )


@SAMPLERS.register("nsga2")
def nsga2_sampler(
    seed: int | None,
    n_startup_trials: int,
    n_objectives: int,
    *,
    population_size: int | None = None,
    mutation_prob: float | None = None,
    crossover_prob: float = 0.9,
    swapping_prob: float = 0.5,
) -> optuna.samplers.BaseSampler:
    """Optuna's NSGA-II genetic algorithm. Its first generation is its random start-up, so the
    population defaults to ``n_startup_trials`` (at least 2) rather than Optuna's 50."""
    return optuna.samplers.NSGAIISampler(
        seed=seed,
        population_size=population_size or max(n_startup_trials, 2),
        mutation_prob=mutation_prob,
        crossover_prob=crossover_prob,
        swapping_prob=swapping_prob,
    )


@SAMPLERS.register("random")
def random_sampler(
    seed: int | None, n_startup_trials: int, n_objectives: int
) -> optuna.samplers.BaseSampler:
    """Uniform random points: the baseline every model-based sampler must beat."""
    return optuna.samplers.RandomSampler(seed=seed)


@SAMPLERS.register("botorch")
def botorch_sampler(
    seed: int | None,
    n_startup_trials: int,
    n_objectives: int,
    *,
    consider_running_trials: bool = True,
    num_restarts: int = 10,
    raw_samples: int = 512,
) -> optuna.samplers.BaseSampler:
    """BoTorch through optuna-integration (the ``botorch`` extra): q-log-NEI for one objective,
    q-log-NEHVI for more (both noise-aware, as fine-tuned accuracies are). ``num_restarts``
    and ``raw_samples`` size the acquisition optimiser (fewer: faster, coarser proposals)."""
    try:
        from optuna_integration import BoTorchSampler
    except ImportError as error:
        raise ConfigError(
            "the botorch sampler needs extra packages: pip install 'autoprune[botorch]'"
        ) from error
    return BoTorchSampler(
        candidates_func=_LogNoisyCandidates(num_restarts, raw_samples),
        n_startup_trials=n_startup_trials,
        consider_running_trials=consider_running_trials,
        seed=seed,
    )


class _LogNoisyCandidates:
    """BoTorchSampler's ``candidates_func``: one point maximising q-log-NEI (one objective) or
    q-log-NEHVI (several) under a GP fitted to the complete trials, running trials
    (``pending_x``) integrated over. Written after optuna-integration's ``qnei``/``qnehvi``
    candidate functions, with the log variants BoTorch recommends (they do not vanish far from
    the incumbent) and the optimiser's size as parameters."""

    def __init__(self, num_restarts: int, raw_samples: int) -> None:
        self.num_restarts, self.raw_samples = num_restarts, raw_samples

    def __call__(
        self, train_x: Any, train_obj: Any, train_con: Any, bounds: Any, pending_x: Any
    ) -> Any:
        import torch
        from botorch.acquisition.logei import qLogNoisyExpectedImprovement
        from botorch.acquisition.multi_objective.logei import (
            qLogNoisyExpectedHypervolumeImprovement,
        )
        from botorch.fit import fit_gpytorch_mll
        from botorch.models import SingleTaskGP
        from botorch.models.transforms.outcome import Standardize
        from botorch.optim import optimize_acqf
        from botorch.sampling import SobolQMCNormalSampler
        from botorch.utils.transforms import normalize, unnormalize
        from gpytorch.mlls import ExactMarginalLogLikelihood

        if train_con is not None:
            raise ConfigError("the botorch sampler does not take constraints")
        train_x = normalize(train_x, bounds=bounds)
        if pending_x is not None:
            pending_x = normalize(pending_x, bounds=bounds)
        model = SingleTaskGP(
            train_x, train_obj, outcome_transform=Standardize(m=train_obj.size(-1))
        )
        fit_gpytorch_mll(ExactMarginalLogLikelihood(model.likelihood, model))
        sampler = SobolQMCNormalSampler(sample_shape=torch.Size((256,)))
        common = {"model": model, "X_baseline": train_x, "sampler": sampler, "X_pending": pending_x}
        if train_obj.size(-1) == 1:  # the study's count (callers may not pass theirs)
            acquisition: Any = qLogNoisyExpectedImprovement(prune_baseline=True, **common)
        else:  # reference point just below the worst observed values, as optuna-integration
            reference = (train_obj.min(dim=0).values - 1e-8).tolist()
            acquisition = qLogNoisyExpectedHypervolumeImprovement(
                ref_point=reference, prune_baseline=True, **common
            )
        unit = torch.zeros_like(bounds)
        unit[1] = 1
        candidates, _ = optimize_acqf(
            acq_function=acquisition,
            bounds=unit,
            q=1,
            num_restarts=self.num_restarts,
            raw_samples=self.raw_samples,
            options={"batch_limit": 5, "maxiter": 200},
            sequential=True,
        )
        return unnormalize(candidates.detach(), bounds=bounds)


def sampler_options(name: str) -> dict[str, Any]:
    """The keyword options of the registered sampler ``name`` and their defaults."""
    signature = inspect.signature(SAMPLERS.get(name))
    return {
        key: parameter.default
        for key, parameter in signature.parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }


def check_sampler_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` for sampler ``name``, refused with a ConfigError naming an unknown option
    (and the accepted ones), a value of the wrong type, or one out of the sampler's range: the
    sampler is built once with them, so a search refuses them before any work, not at its
    first trial."""
    checked = _typed_options(name, options)
    create_sampler(name, seed=0, n_startup_trials=1, options=checked)
    return checked


def _typed_options(name: str, options: Mapping[str, Any] | None) -> dict[str, Any]:
    """``options`` checked for names and types (the sampler refuses values out of range)."""
    options = dict(options or {})
    accepted = sampler_options(name)
    hints = typing.get_type_hints(SAMPLERS.get(name))
    for key, value in options.items():
        if key not in accepted:
            listed = ", ".join(accepted) or "none"
            raise ConfigError(
                f"unknown option {key!r} of sampler {name!r}: check `sampler_options` "
                f"(the {name} sampler accepts: {listed})"
            )
        if not _matches(hints.get(key, Any), value):
            raise ConfigError(
                f"option {key!r} of sampler {name!r} must be "
                f"{_type_name(hints[key])}, got {value!r}: check `sampler_options`"
            )
    return options


def create_sampler(
    name: str,
    *,
    seed: int | None,
    n_startup_trials: int,
    n_objectives: int = 2,
    options: Mapping[str, Any] | None = None,
) -> optuna.samplers.BaseSampler:
    """The registered sampler ``name`` with ``options`` checked (see ``check_sampler_options``)."""
    factory, checked = SAMPLERS.get(name), _typed_options(name, options)
    try:
        return factory(seed, n_startup_trials, n_objectives, **checked)
    except ValueError as error:  # Optuna's refusal of a value out of range
        if isinstance(error, ConfigError):
            raise
        raise ConfigError(
            f"sampler {name!r} refused its options {checked}: {error}; check `sampler_options`"
        ) from error


def _type_name(hint: Any) -> str:
    names = [getattr(t, "__name__", str(t)) for t in _union_members(hint)]
    return " or ".join("None" if n == "NoneType" else n for n in names)


def _union_members(hint: Any) -> tuple[Any, ...]:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)


def _matches(hint: Any, value: Any) -> bool:
    """Whether ``value`` fits ``hint`` (a scalar type or a union of them): bools are not
    numbers, ints are floats."""
    for member in _union_members(hint):
        if member is Any or (member is type(None) and value is None):
            return True
        if member in (int, float) and isinstance(value, bool):
            continue
        if member is float and isinstance(value, int | float):
            return True
        if isinstance(member, type) and isinstance(value, member):
            return True
    return False


class DistinctSampler(optuna.samplers.BaseSampler):
    """A registered sampler made safe for many workers on one study.

    Each trial is sampled by a fresh inner sampler seeded with ``seed`` + the trial's number:
    numbers are unique across workers, so workers draw distinct start-up points, and one
    worker alone is reproducible. A relative (model-based) proposal equal to a complete,
    running or queued trial's ratios is replaced by a random point no trial holds yet.
    Queued trials (references, retries) keep their ratios without sampling. ``n_objectives``
    defaults to the study's number of directions.
    """

    def __init__(
        self,
        name: str,
        *,
        seed: int | None,
        n_startup_trials: int,
        n_objectives: int | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self._name = name
        self._options = check_sampler_options(name, options)  # refused before any trial
        self._seed = seed
        self._n_startup_trials = n_startup_trials
        self._n_objectives = n_objectives
        self._current: tuple[int, optuna.samplers.BaseSampler] | None = None

    def _seed_for(self, number: int) -> int | None:
        return None if self._seed is None else (self._seed + number) % SEED_LIMIT

    def _inner(self, study: optuna.Study, trial: FrozenTrial) -> optuna.samplers.BaseSampler:
        if self._current is None or self._current[0] != trial.number:
            sampler = create_sampler(
                self._name,
                seed=self._seed_for(trial.number),
                n_startup_trials=self._n_startup_trials,
                n_objectives=self._n_objectives or len(study.directions),
                options=self._options,
            )
            self._current = (trial.number, sampler)
        return self._current[1]

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if trial.params or "fixed_params" in trial.system_attrs:
            return {}  # a queued point: nothing to sample (and no model to fit)
        return self._inner(study, trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        params = self._inner(study, trial).sample_relative(study, trial, search_space)
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
        inner = self._inner(study, trial)
        return inner.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._inner(study, trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Any,
    ) -> None:
        self._inner(study, trial).after_trial(study, trial, state, values)

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
