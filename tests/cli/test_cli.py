"""The command line end to end on tiny models: search, resume, pareto, studies, errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import autoprune
from autoprune.search import open_storage
from autoprune_cli.main import app

runner = CliRunner()
TINY = [
    "--model",
    "tiny_resnet",
    "--bits",
    "2",
    "--epochs",
    "1",
    "--finetune-steps",
    "2",
    "--max-train",
    "256",
    "--device",
    "cpu",
]


def _invoke(*args: str):
    result = runner.invoke(app, list(args))
    return result


def test_search_then_resume_adds_trials(tmp_path: Path) -> None:
    storage = str(tmp_path / "studies.db")
    first = _invoke("search", *TINY, "--trials", "3", "--storage", storage, "--study", "s")
    assert first.exit_code == 0, first.output
    assert "new" in first.output and "trial   2" in first.output
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{storage}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 3
    assert complete[0].user_attrs["reference"] == "unpruned"
    assert all(v == 0.0 for v in complete[0].params.values())
    first_values = [t.values for t in complete]

    second = _invoke("search", *TINY, "--trials", "5", "--storage", storage, "--study", "s")
    assert second.exit_code == 0, second.output
    assert "resumed" in second.output and "cached baseline" in second.output
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{storage}")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 5
    assert [t.values for t in complete[:3]] == first_values  # earlier trials kept as they were
    assert {"kept_channels", "size_bits", "bops", "seconds"} <= set(complete[-1].user_attrs)

    again = _invoke("search", *TINY, "--trials", "5", "--storage", storage, "--study", "s")
    assert again.exit_code == 0 and "trial   5" not in again.output  # nothing left to run


def test_pareto_output_parses_back(tmp_path: Path) -> None:
    storage = str(tmp_path / "studies.db")
    assert _invoke("search", *TINY, "--trials", "4", "--storage", storage).exit_code == 0
    result = _invoke("pareto", "--storage", storage, "--csv", "-")
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(io.StringIO(result.output))
    assert {"trial", "val_accuracy", "size_mb", "compression_vs_fp32", "bops"} <= set(frame)
    assert len(frame) >= 1
    # a Pareto front: sorted by size, accuracy strictly rises with size
    assert frame["size_mb"].is_monotonic_increasing
    assert frame["val_accuracy"].is_monotonic_increasing
    assert frame["size_pct_of_quantized"].max() <= 100.0 + 1e-9

    as_json = _invoke("pareto", "--storage", storage, "--json", "-", "--all")
    records = json.loads(as_json.output)
    assert len(records) == 4 and {r["trial"] for r in records} == {0, 1, 2, 3}

    exported = tmp_path / "trial2.pt"
    result = _invoke(
        "export", "--storage", storage, "--trial", "2", "--out", str(exported), "--replay"
    )
    assert result.exit_code == 0, result.output
    pruned = autoprune.load(exported)
    unpruned = autoprune.create_model("tiny_resnet", bits=2, in_channels=1)
    assert sum(p.numel() for p in pruned.parameters()) < sum(
        p.numel() for p in unpruned.parameters()
    )
    assert pruned(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    # rebuilt deterministically: the same validation accuracy as the search measured
    record = next(r for r in records if r["trial"] == 2)
    assert f"val acc {100 * record['val_accuracy']:.2f} %" in " ".join(result.output.split())
    # by default the export recipe recovers it: longer and distilled, scored on test once
    recipe = _invoke(
        "export",
        "--storage",
        storage,
        "--trial",
        "2",
        "--out",
        str(tmp_path / "long.pt"),
        "--finetune-steps",
        "7",
    )
    assert recipe.exit_code == 0, recipe.output
    assert "after 7 export steps" in " ".join(recipe.output.split())
    # the export records the search that chose it, every default stated
    from autoprune.checkpoint import read_checkpoint
    from autoprune.config import RunConfig

    stored = read_checkpoint(tmp_path / "long.pt")["metadata"]
    assert RunConfig.from_dict(stored["run_config"]).search.seed == 0
    assert stored["finetune"]["steps"] == 7
    assert autoprune.load(tmp_path / "long.pt").state_dict().keys() == pruned.state_dict().keys()
    missing = _invoke("export", "--storage", storage, "--trial", "99", "--out", str(exported))
    assert "no complete trial 99" in str(missing.exception)

    table = _invoke("pareto", "--storage", storage)
    assert "Pareto front of tiny_resnet-w2a2-digits" in table.output
    studies = _invoke("studies", "--storage", storage)
    assert "tiny_resnet-w2a2-digits" in studies.output and "4" in studies.output


def test_a_different_config_under_the_same_study_is_refused(tmp_path: Path) -> None:
    storage = str(tmp_path / "studies.db")
    assert (
        _invoke("search", *TINY, "--trials", "1", "--storage", storage, "--study", "s").exit_code
        == 0
    )
    other = [a if a != "2" else "1" for a in TINY]  # --bits 1
    result = _invoke("search", *other, "--trials", "2", "--storage", storage, "--study", "s")
    assert result.exit_code != 0
    assert "another configuration" in str(result.exception)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{storage}")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == 1


def test_train_writes_checkpoint_that_load_and_search_accept(tmp_path: Path) -> None:
    out = tmp_path / "tiny.pt"
    result = _invoke(
        "train",
        "--model",
        "tiny_cnn",
        "--bits",
        "1",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    model = autoprune.load(out)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 10)
    storage = str(tmp_path / "s.db")
    searched = _invoke(
        "search",
        "--checkpoint",
        str(out),
        "--trials",
        "1",
        "--finetune-steps",
        "1",
        "--storage",
        storage,
        "--device",
        "cpu",
    )
    assert searched.exit_code == 0, searched.output
    assert "tiny_cnn-bnn-digits" in searched.output
    mismatched = _invoke(
        "search", "--checkpoint", str(out), "--model", "resnet20", "--storage", storage
    )
    assert mismatched.exit_code != 0 and "holds model tiny_cnn" in str(mismatched.exception)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["search", "--model", "resnet81"], "did you mean resnet18"),
        (["search", "--bits", "12"], "unsupported bit-width 12"),
        (["search", "--dataset", "imagenot"], "unknown dataset"),
        (["search", "--criterion", "angel"], "did you mean angle"),
        (["search", "--sampler", "gpp"], "did you mean gp"),
        (["pareto", "--storage", "missing.db"], "does not exist"),
        (["search", "--storage", "/no/such/folder/x.db"], "does not exist"),
        (["search", "--checkpoint", "nothing.pt"], "not found"),
    ],
)
def test_bad_input_is_a_clear_error(
    args: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = _invoke(*args, "--device", "cpu") if args[0] == "search" else _invoke(*args)
    assert result.exit_code != 0
    assert message in str(result.exception)


def test_malformed_search_space_and_corrupt_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    bad_yaml = tmp_path / "space.yaml"
    bad_yaml.write_text("groups: [a, b\n")
    result = _invoke("search", *TINY, "--search-space", str(bad_yaml))
    assert "not valid YAML" in str(result.exception)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"not a checkpoint at all")
    result = _invoke("search", "--checkpoint", str(corrupt), "--device", "cpu")
    assert "corrupt" in str(result.exception)


def test_console_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "autoprune_cli", "search", "--model", "resnet81", "--device", "cpu"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: unknown model 'resnet81'")


def test_two_workers_share_one_journal_storage(tmp_path: Path) -> None:
    """Two processes, one journal file: they split the budget of complete trials."""
    import subprocess
    import sys

    storage = str(tmp_path / "studies.log")
    command = [
        sys.executable,
        "-m",
        "autoprune_cli",
        "search",
        *TINY,
        "--trials",
        "8",
        "--storage",
        storage,
        "--study",
        "shared",
        "--sampler",
        "random",
    ]
    workers = [
        subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    outputs = [worker.communicate(timeout=240) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outputs
    study = optuna.load_study(study_name="shared", storage=open_storage(storage))
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    # each worker stops once 8 are complete; one finishing in flight may add one more each
    assert 8 <= len(complete) <= 10
    ran = [out.count("trial ") for out, _ in outputs]
    assert all(count > 0 for count in ran), ran
