"""Contract of every registered sampler, for one objective (accuracy under a budget) and two
(accuracy and size): its proposals lie inside the distributions and on their step grid, a seed
makes it reproducible, it keeps proposing past its start-up trials (where its model takes
over), and it works under ``DistinctSampler`` (the wrapper every search uses). Seconds per
suggestion are printed for the curious, never asserted: timing belongs to
``benchmarks/sampler_speed.py``.

A sampler whose optional packages are missing (botorch) skips.
"""

from __future__ import annotations

import importlib.util
import math
import time

import optuna
import pytest

from autoprune.errors import ConfigError
from autoprune.search.samplers import (
    SAMPLERS,
    DistinctSampler,
    check_sampler_options,
    create_sampler,
    sampler_options,
)

STARTUP = 3
SPACE = {
    "a": optuna.distributions.FloatDistribution(0.0, 0.6, step=0.05),
    "b": optuna.distributions.FloatDistribution(0.0, 0.5, step=0.1),
    "c": optuna.distributions.FloatDistribution(0.1, 0.9, step=0.02),
}
DIRECTIONS = {1: ["maximize"], 2: ["maximize", "minimize"]}
# optional packages a sampler needs, by name
EXTRAS = {"botorch": "optuna_integration"}
# a smaller acquisition optimiser: the same code path, in seconds rather than minutes
OPTIONS: dict[str, dict[str, object]] = {
    "botorch": {"num_restarts": 2, "raw_samples": 32},
    "gp": {"acquisition_samples": 16, "local_searches": 2},
}


def _objective(trial: optuna.Trial, n_objectives: int) -> float | tuple[float, float]:
    x = {name: trial.suggest_float(name, d.low, d.high, step=d.step) for name, d in SPACE.items()}
    accuracy = 1.0 - (x["a"] - 0.3) ** 2 - (x["b"] - 0.2) ** 2 - 0.5 * (x["c"] - 0.5) ** 2
    size = 3.0 - sum(x.values())
    return accuracy if n_objectives == 1 else (accuracy, size)


def _available(name: str) -> None:
    if name in EXTRAS:
        pytest.importorskip(EXTRAS[name], reason=f"the {name} sampler's extra is not installed")


def _run(sampler: optuna.samplers.BaseSampler, n_objectives: int, n_trials: int) -> optuna.Study:
    study = optuna.create_study(directions=DIRECTIONS[n_objectives], sampler=sampler)
    started = time.perf_counter()
    study.optimize(lambda trial: _objective(trial, n_objectives), n_trials=n_trials)
    per_trial = (time.perf_counter() - started) / n_trials
    print(f"{type(sampler).__name__}: {per_trial:.3f} s per trial (not asserted)")
    return study


def _on_grid(value: float, distribution: optuna.distributions.FloatDistribution) -> bool:
    assert distribution.step is not None
    steps = (value - distribution.low) / distribution.step
    return math.isclose(steps, round(steps), abs_tol=1e-6)


# model fits that take seconds each on a busy 2-core machine: kept out of the default run
SLOW = {("gp", 2), ("botorch", 1), ("botorch", 2)}


def _cases() -> list[object]:
    return [
        pytest.param(name, n, marks=[pytest.mark.slow] if (name, n) in SLOW else [])
        for name in SAMPLERS.names()
        for n in (1, 2)
    ]


@pytest.mark.parametrize(("name", "n_objectives"), _cases())
def test_proposals_stay_inside_the_distributions_and_a_seed_repeats_them(
    name: str, n_objectives: int
) -> None:
    """Past the start-up too: 2x its start-up trials, half of them the model's proposals."""
    _available(name)

    def proposals(seed: int, n_trials: int) -> list[dict[str, float]]:
        sampler = create_sampler(
            name,
            seed=seed,
            n_startup_trials=STARTUP,
            n_objectives=n_objectives,
            options=OPTIONS.get(name),
        )
        study = _run(sampler, n_objectives, n_trials)
        complete = study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
        assert len(complete) == n_trials
        return [trial.params for trial in complete]

    first = proposals(7, 2 * STARTUP)
    for params in first:
        assert set(params) == set(SPACE)
        for key, value in params.items():
            assert SPACE[key].low <= value <= SPACE[key].high, (key, value)
            assert _on_grid(value, SPACE[key]), (key, value)
    assert proposals(7, 2 * STARTUP) == first
    assert proposals(8, STARTUP) != first[:STARTUP]  # the seed is used, not ignored


@pytest.mark.parametrize(("name", "n_objectives"), _cases())
def test_it_works_under_distinct_sampler(name: str, n_objectives: int) -> None:
    _available(name)
    sampler = DistinctSampler(name, seed=3, n_startup_trials=STARTUP, options=OPTIONS.get(name))
    study = _run(sampler, n_objectives, STARTUP + 2)
    points = [tuple(sorted(trial.params.items())) for trial in study.trials]
    assert len(set(points)) == len(points) == STARTUP + 2  # every trial holds its own point
    for params in (trial.params for trial in study.trials):
        assert all(SPACE[k].low <= v <= SPACE[k].high for k, v in params.items())


def test_every_option_has_a_default_and_a_scalar_type() -> None:
    for name in SAMPLERS.names():
        installed = name not in EXTRAS or importlib.util.find_spec(EXTRAS[name]) is not None
        for key, default in sampler_options(name).items():
            assert default is None or isinstance(default, bool | int | float | str), (name, key)
            if installed:  # checking builds the sampler once
                check_sampler_options(name, {key: default})  # its own default is accepted


def test_an_unknown_option_is_named_with_the_accepted_ones() -> None:
    with pytest.raises(ConfigError, match="unknown option 'populaton_size' of sampler 'nsga2'"):
        check_sampler_options("nsga2", {"populaton_size": 20})
    with pytest.raises(ConfigError) as caught:
        check_sampler_options("tpe", {"multivariat": True})
    assert all(key in str(caught.value) for key in sampler_options("tpe"))
    with pytest.raises(ConfigError, match="accepts: none"):
        check_sampler_options("random", {"x": 1})


def test_an_option_of_the_wrong_type_or_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="'multivariate' of sampler 'tpe' must be bool"):
        check_sampler_options("tpe", {"multivariate": "yes"})
    with pytest.raises(ConfigError, match="must be int or None, got True"):
        check_sampler_options("nsga2", {"population_size": True})
    with pytest.raises(ConfigError, match="population_size"):  # Optuna's own range check
        create_sampler("nsga2", seed=0, n_startup_trials=4, options={"population_size": 1})
    with pytest.raises(ConfigError, match="population_size"):  # checked before a search runs
        check_sampler_options("nsga2", {"population_size": 1})
    with pytest.raises(ConfigError, match="unknown option"):  # refused before any trial
        DistinctSampler("gp", seed=0, n_startup_trials=4, options={"nope": 1})


def test_options_reach_the_sampler() -> None:
    nsga2 = create_sampler("nsga2", seed=0, n_startup_trials=4, options={"population_size": 6})
    assert nsga2._population_size == 6  # type: ignore[attr-defined]
    assert create_sampler("nsga2", seed=0, n_startup_trials=5)._population_size == 5  # type: ignore[attr-defined]
    tpe = create_sampler("tpe", seed=0, n_startup_trials=4, options={"multivariate": False})
    assert tpe._multivariate is False  # type: ignore[attr-defined]
    gp = create_sampler(
        "gp", seed=0, n_startup_trials=4, options={"acquisition_samples": 32, "local_searches": 4}
    )
    assert gp._n_qmc_samples_ehvi == gp._n_qmc_samples_qei == 32  # type: ignore[attr-defined]
    assert gp._n_local_search == 4  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="at least 1"):
        create_sampler("gp", seed=0, n_startup_trials=4, options={"local_searches": 0})


def test_the_gp_is_lighter_for_two_objectives_unless_told() -> None:
    """Optuna's acquisition sizes for one objective; a quarter of log-EHVI's work for two
    (benchmarks/sampler_speed.py measured the same fronts at a quarter of the time)."""
    one = create_sampler("gp", seed=0, n_startup_trials=4, n_objectives=1)
    two = create_sampler("gp", seed=0, n_startup_trials=4, n_objectives=2)
    assert (one._n_qmc_samples_ehvi, one._n_local_search) == (128, 10)  # type: ignore[attr-defined]
    assert (two._n_qmc_samples_ehvi, two._n_local_search) == (32, 4)  # type: ignore[attr-defined]
    told = create_sampler(
        "gp", seed=0, n_startup_trials=4, n_objectives=2, options={"local_searches": 10}
    )
    assert told._n_local_search == 10  # type: ignore[attr-defined]
