"""Confirming a budget search's best trials with fresh fine-tune seeds: stored at once, resumed,
used by the pick and the verdict against uniform pruning; refused for a front."""

from __future__ import annotations

import pytest

from autoprune.config import SEED_LIMIT, TrainConfig
from autoprune.errors import ConfigError
from autoprune.search.confirm import (
    CONFIRM_ATTR,
    contenders,
    difference_noise,
    fresh_seed,
    seed_variance,
    stored_confirmations,
)
from autoprune.search.objective import FinetuneConfig
from autoprune.search.pareto import best_under, trials_frame, uniform_lead
from autoprune.search.record import TrialRecord
from autoprune.search.session import SearchRequest, SearchSession
from autoprune.search.study import BUDGET_REFERENCE


def _session(path, **overrides) -> SearchSession:
    options = dict(
        model="tiny_cnn",
        dataset="digits",
        max_train=200,
        trials=4,
        criterion="l1",
        finetune=FinetuneConfig(steps=2),
        train=TrainConfig(epochs=1),
        target_size="60%",
        storage=str(path),
    )
    return SearchSession(SearchRequest(**{**options, **overrides}))


def test_fresh_seeds_differ_from_every_trial_seed_and_from_each_other() -> None:
    seeds = {fresh_seed(0, number, round_) for number in range(100) for round_ in range(3)}
    assert len(seeds) == 300 and not seeds & set(range(100))
    assert 0 <= fresh_seed(SEED_LIMIT - 1, 5, 0) < SEED_LIMIT


def test_the_best_trials_and_the_reference_are_rescored_stored_and_resumed(tmp_path) -> None:
    session = _session(tmp_path / "c.db")
    session.run()
    calls: list[tuple[int, int]] = []
    found = session.confirm(
        2, seeds=2, steps="search", on_score=lambda t, r, a: calls.append((t, r))
    )
    chosen = contenders(session.study, 2)
    reference = [t for t in chosen if TrialRecord.from_trial(t).reference == BUDGET_REFERENCE]
    assert len(reference) == 1 and 2 <= len(chosen) <= 3
    assert sorted(calls) == sorted((t.number, r) for t in chosen for r in range(2))
    assert [c.mean for c in found] == sorted((c.mean for c in found), reverse=True)
    stored = stored_confirmations(session.study)
    assert {n: len(v) for n, v in stored.items()} == {t.number: 2 for t in chosen}
    # a fresh seed is one more draw of the same network: the pruned channels are the trial's
    trial = chosen[0]
    assert session.evaluator.rescore(
        TrialRecord.from_trial(trial).ratios, seed=trial.number, finetune_seed=trial.number
    ) == pytest.approx(trial.values[0])
    # resumed: nothing measured twice, only the missing third seed
    calls.clear()
    session.confirm(2, seeds=3, steps="search", on_score=lambda t, r, a: calls.append((t, r)))
    assert sorted(calls) == sorted((t.number, 2) for t in chosen)


def test_the_pick_and_the_verdict_use_the_fresh_means(tmp_path) -> None:
    session = _session(tmp_path / "p.db")
    session.run()
    study = session.study
    frame = trials_frame(study, pareto_only=False)
    uniform = int(frame[frame["reference"] == BUDGET_REFERENCE].iloc[0]["trial"])
    other = int(frame[frame["trial"] != uniform].iloc[0]["trial"])
    # the other trial's fresh seeds beat the uniform reference's, whatever the search saw
    study.set_user_attr(CONFIRM_ATTR, {str(uniform): [0.50, 0.52], str(other): [0.70, 0.74]})
    frame = trials_frame(study, pareto_only=False)
    assert frame.set_index("trial").loc[other, "confirmed_accuracy"] == pytest.approx(0.72)
    assert int(best_under(frame, float(frame["size_mb"].max()))["trial"]) == other
    # the table of the front shows every confirmed trial, on the front or not
    assert {uniform, other} <= set(trials_frame(study)["trial"])
    lead = uniform_lead(study)
    assert (lead.best_trial, lead.uniform_trial, lead.rescored) == (other, uniform, 2)
    assert lead.lead == pytest.approx(0.21)
    assert lead.noise == pytest.approx(
        difference_noise(
            (0.70, 0.74),
            (0.50, 0.52),
            seed_variance([(0.50, 0.52), (0.70, 0.74)]),
            session.data.num_examples("val"),
        )
    )


def test_noise_pools_the_seeds_and_adds_the_images() -> None:
    pooled = seed_variance([(0.80, 0.82), (0.70, 0.74)])  # variances 2e-4 and 8e-4
    assert pooled == pytest.approx(5e-4)
    assert seed_variance([(0.8,)]) is None
    both = difference_noise((0.8, 0.8), (0.7, 0.7), 5e-4, 1000)
    assert both == pytest.approx(2 * (5e-4 + 2 * 0.75 * 0.25 / 1000) ** 0.5)
    assert difference_noise((0.8,), (0.7,), None, None) is None


def test_stored_confirmations_are_data_only_and_a_front_is_refused(tmp_path) -> None:
    session = _session(tmp_path / "f.db", target_size=None, trials=1)
    session.run()
    study = session.study
    study.set_user_attr(CONFIRM_ATTR, {"0": [0.5, "x", True, 2.0], "a": [0.1], "1": "0.3"})
    assert stored_confirmations(study) == {0: (0.5,)}
    with pytest.raises(ConfigError, match="not a budget search"):
        session.confirm(1)


def test_a_search_result_confirms_and_then_picks_by_the_fresh_means(tmp_path) -> None:
    from autoprune.api import SearchResult

    session = _session(tmp_path / "a.db", trials=3)
    session.run()
    result = SearchResult(study=session.study, session=session)
    found = result.confirm(1, seeds=1, steps="search")
    best_trial = max(found, key=lambda c: (c.mean, -c.trial)).trial
    assert result.best().number == best_trial
    with pytest.raises(ConfigError, match="read from a storage"):
        SearchResult(study=session.study).confirm()


def test_a_round_another_worker_stored_meanwhile_is_kept_not_doubled(tmp_path) -> None:
    from autoprune.search.confirm import confirm

    session = _session(tmp_path / "w.db", trials=2)
    session.run()
    study = session.study

    def rescore(trial, round_):
        if trial.number == 0 and round_ == 0:  # another worker stores the same round first
            current = {str(k): list(v) for k, v in stored_confirmations(study).items()}
            study.set_user_attr(CONFIRM_ATTR, {**current, "0": [0.5]})
        return 0.25

    confirm(study, rescore, top=1, seeds=2)
    stored = stored_confirmations(study)
    assert stored[0] == (0.5, 0.25)  # its round 0 kept, ours went on with round 1
    assert all(len(v) == 2 for v in stored.values())


def test_each_trial_is_stored_alone_so_workers_never_overwrite_each_other(tmp_path) -> None:
    """One attribute per trial: a worker storing trial 1's round while another stores trial
    0's cannot drop it (the whole-study dict was read, changed and written back)."""
    from autoprune.search.confirm import confirm

    session = _session(tmp_path / "k.db", trials=2)
    session.run()
    study = session.study
    study.set_user_attr(CONFIRM_ATTR, {"7": [0.4]})  # a study from before: still read

    def rescore(trial, round_):
        # another worker stores a trial of its own while this one fine-tunes
        study.set_user_attr(f"{CONFIRM_ATTR}:9", [0.3])
        return 0.25

    found = confirm(study, rescore, top=1, seeds=1)
    stored = stored_confirmations(study)
    assert stored[9] == (0.3,) and stored[7] == (0.4,)
    assert all(stored[c.trial] == (0.25,) for c in found)
    assert f"{CONFIRM_ATTR}:{found[0].trial}" in study.user_attrs


def test_confirmation_lengths_parse_and_bad_ones_are_refused() -> None:
    from autoprune.config import EXPORT_FINETUNE
    from autoprune.search.confirm import confirm_steps, default_seeds

    assert confirm_steps(None) == EXPORT_FINETUNE.steps
    assert confirm_steps("search") is None and default_seeds(None) == 2
    assert confirm_steps(12) == confirm_steps("12") == 12 and default_seeds(12) == 1
    for bad in (0, -3, "x", True, 2.5):
        with pytest.raises(ConfigError, match="number of fine-tuning steps >= 1"):
            confirm_steps(bad)


def test_a_promoted_trial_scores_what_its_export_will(tmp_path) -> None:
    """Promotion fine-tunes each contender with the export recipe and the export's seed: the
    pick's stored score is the validation accuracy `export_trial` then measures, and the
    pick, the table and the verdict use the promotion over the short confirmation."""
    from dataclasses import replace

    from autoprune.config import EXPORT_FINETUNE
    from autoprune.search.confirm import preferred_confirmations, promoted_network
    from autoprune.search.export import export_trial

    session = _session(tmp_path / "e.db", trials=3)
    session.run()
    study = session.study
    calls: list[tuple[int, int]] = []
    found = session.confirm(1, steps=3, on_score=lambda t, r, a: calls.append((t, r)))
    chosen = contenders(study, 1)
    assert sorted(calls) == sorted((t.number, 0) for t in chosen)  # one seed each
    assert all(c.steps == 3 and len(c.rescored) == 1 for c in found)
    assert stored_confirmations(study) == {}  # nothing at the search's own length
    steps, promoted = preferred_confirmations(study)
    assert steps == 3 and set(promoted) == {t.number for t in chosen}
    assert f"{CONFIRM_ATTR}:{found[0].trial}:3" in study.user_attrs
    pick = found[0].trial

    def export(steps: int):
        return export_trial(
            study,
            pick,
            tmp_path / "pick.pt",
            finetune=replace(EXPORT_FINETUNE, steps=steps),
            data=session.data,
            baseline=session.baseline,
        )

    exported = export(3)  # the promoted network itself, not fine-tuned again
    assert exported.reused_promotion and exported.val_accuracy == found[0].mean
    # its saved file changed: rebuilt, and the rebuild is the same network (same seed)
    saved = promoted_network(study, pick, 3)
    assert saved is not None
    saved.write_bytes(saved.read_bytes() + b"x")
    assert promoted_network(study, pick, 3) is None
    rebuilt = export(3)
    assert not rebuilt.reused_promotion
    assert rebuilt.val_accuracy == pytest.approx(found[0].mean, abs=1e-9)
    assert not export(4).reused_promotion  # another recipe: fine-tuned afresh
    # a short confirmation that disagrees does not override the longer one
    others = [t.number for t in study.trials if t.number != pick]
    study.set_user_attr(f"{CONFIRM_ATTR}:{others[0]}", [0.99, 0.99])
    study.set_user_attr(f"{CONFIRM_ATTR}:{pick}", [0.01, 0.01])
    frame = trials_frame(study, pareto_only=False)
    assert frame.attrs["confirmed_steps"] == 3
    assert int(best_under(frame, float(frame["size_mb"].max()))["trial"]) == pick
    lead = uniform_lead(study)
    if lead is not None and lead.rescored:
        assert lead.steps == 3 and lead.seed_variance is None  # one seed: images' noise only
    # resumed: nothing is fine-tuned again
    calls.clear()
    session.confirm(1, steps=3, on_score=lambda t, r, a: calls.append((t, r)))
    assert calls == []
    # a second seed is a fresh one, added after the export's
    session.confirm(1, steps=3, seeds=2, on_score=lambda t, r, a: calls.append((t, r)))
    assert sorted(calls) == sorted((t.number, 1) for t in chosen)
    assert stored_confirmations(study, 3)[pick][0] == found[0].mean


def test_the_warm_start_references_are_contenders(tmp_path) -> None:
    session = _session(tmp_path / "r.db", trials=4, warm_start="sensitivity")
    session.run()
    labels = {TrialRecord.from_trial(t).reference for t in contenders(session.study, 1)}
    assert {BUDGET_REFERENCE, "sensitivity greedy"} <= labels


def test_a_length_without_a_confirmation_is_refused_before_any_work() -> None:
    import autoprune

    with pytest.raises(ConfigError, match="drop confirm_steps"):
        autoprune.run_search("tiny_cnn", "digits", trials=1, confirm_steps=5)
    with pytest.raises(ConfigError, match="number of fine-tuning steps"):
        autoprune.run_search("tiny_cnn", "digits", trials=1, target_size="60%", confirm_steps=0)
