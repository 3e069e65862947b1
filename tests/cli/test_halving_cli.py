"""``search --halving``: stopped trials print one line each, count towards --trials, and
``studies`` lists them."""

from __future__ import annotations

from pathlib import Path

import optuna
from typer.testing import CliRunner

from autoprune_cli.main import app

TINY = "--model tiny_resnet --bits 2 --epochs 1 --finetune-steps 3 --max-train 256 --device cpu"


def _lead_sentence(output: str) -> str:
    """The verdict against uniform pruning, however the terminal wrapped it."""
    flat = " ".join(output.split())
    start = max(flat.rfind("best trial "), flat.rfind("no trial beats uniform"))
    assert start >= 0, output
    end = flat.find(" inspect again", start)
    return flat[start : end if end >= 0 else len(flat)]


def test_search_with_halving_prints_stopped_trials_and_counts_them(tmp_path: Path) -> None:
    storage = str(tmp_path / "s.db")
    argv = [*TINY.split(), "--trials", "7", "--storage", storage, "--study", "h"]
    argv += ["--target-size", "60%", "--halving", "0,1"]
    result = CliRunner().invoke(app, ["search", *argv])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="h", storage=f"sqlite:///{storage}")
    states = [t.state.name for t in study.trials]
    assert states.count("COMPLETE") + states.count("PRUNED") == 7
    stopped_lines = [line for line in result.output.splitlines() if "stopped after" in line]
    assert len(stopped_lines) == states.count("PRUNED")
    assert all("subset acc" in line and "MB" in line for line in stopped_lines)
    # a budget search ends by saying whether its best beats uniform pruning beyond noise
    said = _lead_sentence(result.output)
    assert "within noise" in said or "beyond noise" in said or "no better" in said
    shown = CliRunner().invoke(app, ["pareto", "--storage", storage, "--study", "h"])
    assert shown.exit_code == 0 and _lead_sentence(shown.output) == said
    listed = CliRunner().invoke(app, ["studies", "--storage", storage])
    assert "stopped" in listed.output and str(states.count("PRUNED")) in listed.output
    dry = CliRunner().invoke(app, ["search", *argv, "--dry-run"])
    assert dry.exit_code == 0, dry.output
    resumes = f"resumes: {states.count('COMPLETE')} complete trials"
    if states.count("PRUNED"):
        resumes += f", {states.count('PRUNED')} stopped"
    assert resumes in dry.output


def test_search_confirms_its_best_trials_with_fresh_seeds(
    tmp_path: Path,
) -> None:
    storage = str(tmp_path / "c.db")
    argv = [*TINY.split(), "--trials", "3", "--storage", storage, "--study", "c"]
    result = CliRunner().invoke(
        app,
        ["search", *argv, "--target-size", "60%", "--confirm", "1", "--confirm-steps", "search"],
    )
    assert result.exit_code == 0, result.output
    assert "fresh seed 2" in result.output and "(uniform at budget)" in result.output
    said = _lead_sentence(result.output)
    assert "no trial beats" in said or "(means of 2 fresh fine-tunes each)" in said


def test_search_promotes_its_best_trials_to_the_export_recipe_by_default(
    tmp_path: Path,
) -> None:
    storage = str(tmp_path / "e.db")
    argv = [*TINY.split(), "--trials", "3", "--storage", storage, "--study", "e"]
    budget = ["--target-size", "60%", "--confirm", "1", "--confirm-steps", "3"]
    result = CliRunner().invoke(app, ["search", *argv, *budget])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "with 3 steps of the export recipe" in said and "after 3 steps, seed 1" in said
    assert "confirmed %: val acc after 3 steps of the export recipe" in said
    lead = _lead_sentence(result.output)
    assert "no trial beats" in lead or "(after 3 steps of the export recipe)" in lead
    # rerun: everything is stored, nothing is fine-tuned again
    again = CliRunner().invoke(app, ["search", *argv, *budget])
    assert again.exit_code == 0 and "after 3 steps, seed" not in again.output
    # the export at the promotion's recipe reloads the promoted network
    from autoprune.search.confirm import preferred_confirmations

    _, promoted = preferred_confirmations(
        optuna.load_study(study_name="e", storage=f"sqlite:///{storage}")
    )
    pick = max(promoted, key=lambda n: (promoted[n][0], -n))
    out = str(tmp_path / "pick.pt")
    where = ["--storage", storage, "--study", "e", "--trial", str(pick), "--out", out]
    exported = CliRunner().invoke(app, ["export", *where, "--finetune-steps", "3"])
    assert exported.exit_code == 0, exported.output
    said = " ".join(exported.output.split())
    assert "after 3 export steps (the search's promotion, reused): val acc" in said
    assert f"val acc {100 * promoted[pick][0]:.2f} %" in said
