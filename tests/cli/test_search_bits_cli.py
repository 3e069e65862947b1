"""``search --search-bits``: the plan, the trial lines and the Pareto table show the searched
widths, and ``export`` writes a network that reloads at them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

import autoprune
from autoprune.checkpoint import read_checkpoint
from autoprune_cli.main import app

runner = CliRunner()
OPTIONS = [
    *("--model", "tiny_cnn", "--bits", "2", "--dataset", "digits", "--epochs", "1"),
    *("--batch-size", "16", "--finetune-steps", "1", "--max-train", "64", "--trials", "7"),
    *("--device", "cpu", "--study", "s", "--search-bits", "2,4,8"),
]


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}{result.exception!r}"
    return " ".join(result.output.split())  # read however the terminal wrapped it


def test_the_widths_are_planned_shown_and_exported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path / "cache"))
    storage = str(tmp_path / "s.db")
    plan = _cli("search", *OPTIONS, "--storage", storage, "--dry-run")
    assert "bit-widths searched: 2,4,8 for each of 2 inner layers" in plan
    assert "every layer at 2 bits" in plan and "8 bits" in plan

    searched = _cli("search", *OPTIONS, "--storage", storage)
    assert "ratios % 0 0 0 bits 2 2" in searched  # the unpruned reference keeps its widths

    table = _cli("pareto", "--storage", storage, "--all")
    assert "bits (per layer)" in table

    out = tmp_path / "net.pt"
    _cli("export", "--storage", storage, "--trial", "6", "--out", str(out), "--finetune-steps", "1")
    payload = read_checkpoint(out)
    study = autoprune.load_search(storage, "s").study
    widths = {k.split(":", 1)[1]: v for k, v in study.trials[6].params.items() if ":" in k}
    assert any(v != 2 for v in widths.values())  # a sampled trial (seed 0): another width
    assert payload["metadata"]["layer_bits"] == widths
    assert payload.get("layer_bits", {}) == {k: v for k, v in widths.items() if v != 2}
    assert autoprune.load(out) is not None
