"""Each CLI command and its API call give the same result on one tiny run.

The command line (``search``, ``pareto``, ``export``, ``prune``, ``inspect``) and the Python
API (``run_search``, ``SearchResult.pareto``/``.export``, ``prune_``, ``inspect``) are run on
separate storages and files with the same options; their trial values, tables, exported
networks and reports must be equal.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import autoprune
from autoprune import FinetuneConfig, QuantSpec, TrainConfig
from autoprune_cli.main import app

runner = CliRunner()
STEPS, EPOCHS, BATCH, LR, MAX_TRAIN, TRIALS = 2, 2, 16, 0.01, 200, 3
CLI_OPTIONS = (
    f"--model tiny_cnn --bits 2 --dataset digits --epochs {EPOCHS} --batch-size {BATCH} "
    f"--lr {LR} --finetune-steps {STEPS} --max-train {MAX_TRAIN} --trials {TRIALS} "
    "--device cpu --study s --seed 0"
).split()


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}{result.exception!r}"
    return result.output


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Both faces of one tiny search, sharing the cache (one baseline trained)."""
    folder = tmp_path_factory.mktemp("agreement")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AUTOPRUNE_CACHE", str(folder / "cache"))
        cli_storage, api_storage = str(folder / "cli.db"), str(folder / "api.db")
        _cli("search", *CLI_OPTIONS, "--storage", cli_storage)
        result = autoprune.run_search(
            "tiny_cnn",
            "digits",
            quant=QuantSpec.from_bits(2),
            storage=api_storage,
            study_name="s",
            trials=TRIALS,
            finetune=FinetuneConfig(steps=STEPS, batch_size=BATCH),
            # the CLI's baseline flags change digits' own recipe (its warmup share stays)
            train=TrainConfig.recommended("digits", epochs=EPOCHS, batch_size=BATCH, lr=LR),
            max_train=MAX_TRAIN,
            device="cpu",
            seed=0,
        )
        yield {"folder": folder, "cli": cli_storage, "api": api_storage, "result": result}


def _values(storage: str) -> list[tuple[int, list[float], dict[str, float]]]:
    study = autoprune.load_search(storage, "s").study
    return [(t.number, t.values, t.params) for t in study.trials if t.state.name == "COMPLETE"]


def test_search_gives_the_same_trials(run: dict) -> None:
    cli_trials = _values(run["cli"])
    assert len(cli_trials) == TRIALS
    assert cli_trials == _values(run["api"])
    assert len({tuple(v) for _, v, _ in cli_trials}) > 1  # trials differ: a real comparison


def test_pareto_gives_the_same_rows(run: dict) -> None:
    cli_rows = json.loads(_cli("pareto", "--storage", run["cli"], "--all", "--json", "-"))
    frame = autoprune.load_search(run["api"], "s").pareto(all_trials=True)
    groups = frame.attrs["groups"]
    assert groups and set(groups) <= set(frame.columns)
    api_rows = frame.to_dict(orient="records")
    assert len(cli_rows) == len(api_rows) == TRIALS
    for cli_row, api_row in zip(cli_rows, api_rows, strict=True):
        for column in ("trial", "val_accuracy", "size_mb", "params", "macs", "bops"):
            # the JSON holds 10 decimals (pandas' to_json)
            assert cli_row[column] == pytest.approx(api_row[column], rel=0, abs=1e-10), column
        assert {g: cli_row[f"ratio:{g}"] for g in groups} == {g: api_row[g] for g in groups}


def _state(path: Path) -> dict[str, torch.Tensor]:
    return autoprune.load(path).state_dict()


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def exported(run: dict) -> tuple[Path, Path]:
    folder = run["folder"]
    cli_out, api_out = folder / "cli_export.pt", folder / "api_export.pt"
    _cli("export", "--storage", run["cli"], "--trial", "1", "--out", str(cli_out))
    run["result"].export(1, api_out)
    return cli_out, api_out


def test_export_writes_the_same_network(exported: tuple[Path, Path]) -> None:
    cli_out, api_out = exported
    cli_report, api_report = autoprune.inspect(cli_out), autoprune.inspect(api_out)
    for key in ("val_accuracy", "test_accuracy"):
        assert getattr(cli_report, key) == getattr(api_report, key)
    assert cli_report.kept_channels == api_report.kept_channels
    assert cli_report.cost.size_bits == api_report.cost.size_bits
    assert _same_state(_state(cli_out), _state(api_out))


def test_prune_and_inspect_agree(exported: tuple[Path, Path], tmp_path: Path) -> None:
    source, _ = exported
    out = tmp_path / "pruned.pt"
    _cli("prune", str(source), "--out", str(out), "--uniform", "0.3", "--criterion", "l1")
    network = autoprune.load(source)
    report = autoprune.inspect(source)
    kept = autoprune.prune_(network, 0.3, input_shape=report.model.input_shape, criterion="l1")
    assert autoprune.inspect(out).kept_channels == kept
    assert _same_state(_state(out), network.state_dict())

    shown = json.loads(_cli("inspect", str(out), "--json"))
    assert shown == json.loads(json.dumps(autoprune.inspect(out).to_dict()))
    cost = autoprune.measure(network, report.model.input_shape)
    assert shown["totals"]["size_bits"] == cost.size_bits < report.cost.size_bits
