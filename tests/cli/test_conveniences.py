"""CLI conveniences: `space`, `search --dry-run`, `studies --delete`, `pareto --plot/--scatter/
--best-under`, and the metric names `optuna-dashboard` shows."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pandas as pd
import pytest
import torch
import typer.testing
from optuna.distributions import FloatDistribution
from typer.testing import CliRunner

from autoprune.checkpoint import save_checkpoint
from autoprune.config import DataConfig, ModelConfig, RunConfig
from autoprune.data import load_dataset
from autoprune.errors import ConfigError
from autoprune.export import prune_checkpoint
from autoprune.metrics import BITS_PER_MB
from autoprune.models import build_model
from autoprune.quant import QuantSpec
from autoprune.search import (
    FinetuneConfig,
    SearchRequest,
    load_search_space,
    open_storage,
    parse_search_space,
    trials_frame,
)
from autoprune.search.dryrun import plan_search
from autoprune.search.pareto import best_under, parse_size_limit
from autoprune.search.space import SearchSpace, bundled_search_space_file, format_search_space
from autoprune.search.study import (
    LAYERWISE_PARENT_ATTR,
    REFERENCE_ATTR,
    delete_study,
    open_study,
)
from autoprune_cli.main import app

runner = CliRunner()
USER_MODULE = """
from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes, in_channels):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.bn1(self.conv1(x)).relu()
        return self.fc(self.bn2(self.conv2(x)).relu().mean((2, 3)))


def build(num_classes, in_channels):
    return Net(num_classes, in_channels)
"""
QUANTIZED_MB = 0.004
# (val accuracy, size MB, reference label): a front of 0, 2, 4 and the unpruned trial 5
POINTS = [
    (0.80, 0.0010, "uniform 0.60"),
    (0.70, 0.0015, ""),
    (0.86, 0.0020, ""),
    (0.84, 0.0024, "uniform 0.40"),
    (0.90, 0.0030, ""),
    (0.91, QUANTIZED_MB, "unpruned"),
]


def _invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _fake_study(storage: str | None, name: str, points=POINTS) -> optuna.Study:
    """A finished two-objective study as the search records it, without training anything."""
    study = optuna.create_study(
        storage=storage, study_name=name, directions=["maximize", "minimize"]
    )
    study.set_metric_names(["val_accuracy", "size_mb"])
    study.set_user_attr(
        REFERENCE_ATTR,
        {
            "quantized_size_bits": QUANTIZED_MB * BITS_PER_MB,
            "float_size_bits": 16 * QUANTIZED_MB * BITS_PER_MB,
            "baseline_val_accuracy": 0.9,
        },
    )
    distribution = FloatDistribution(0.0, 0.6, step=0.05)
    for accuracy, size, reference in points:
        ratio = round(0.6 * (1 - size / QUANTIZED_MB) / 0.05) * 0.05
        study.add_trial(
            optuna.trial.create_trial(
                values=[accuracy, size],
                params={"g1": ratio, "g2": ratio},
                distributions={"g1": distribution, "g2": distribution},
                user_attrs={"size_bits": size * BITS_PER_MB, "reference": reference},
            )
        )
    return study


@pytest.fixture
def studies_db(tmp_path: Path) -> Path:
    path = tmp_path / "studies.db"
    _fake_study(f"sqlite:///{path}", "a")
    _fake_study(f"sqlite:///{path}", "b", POINTS[:2])
    return path


# --- pareto --best-under -------------------------------------------------------------------


def test_best_under_picks_the_most_accurate_trial_that_fits() -> None:
    study = _fake_study(None, "s")  # in memory
    frame = trials_frame(study, pareto_only=False)
    # by MB: under 0.0025 MB trials 0..3 fit; trial 2 (86 %) beats the larger trial 3 (84 %)
    assert int(best_under(frame, 0.0025)["trial"]) == 2
    assert int(best_under(study, "0.0025")["trial"]) == 2
    # by percent of the quantized model: 75 % of 0.004 MB is 0.003 MB, trial 4 fits exactly
    assert int(best_under(study, "75%")["trial"]) == 4
    assert int(best_under(study, "100%")["trial"]) == 5
    assert best_under(study, 0.0009) is None
    # a Pareto-only frame gives the same answers
    front = trials_frame(study)
    for limit in (0.0011, 0.0025, "60%", "74%", "100%"):
        assert best_under(front, limit)["trial"] == best_under(frame, limit)["trial"]


@pytest.mark.parametrize("bad", ["abc", "-1", "0", "120%", "%", "nan", "inf"])
def test_a_malformed_size_limit_names_both_forms(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"MB such as 0\.05.*such as 50%"):
        parse_size_limit(bad)


def test_pareto_best_under_prints_one_trial_or_one_line(studies_db: Path) -> None:
    result = _invoke("pareto", "--storage", studies_db, "--study", "a", "--best-under", "60%")
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if line.startswith("│")]
    assert len(rows) == 1 and rows[0].split("│")[1].strip() == "2"  # 60 % is 0.0024 MB
    as_csv = _invoke(
        "pareto", "--storage", studies_db, "--study", "a", "--best-under", "0.0031", "--csv", "-"
    )
    assert pd.read_csv(io.StringIO(as_csv.output))["trial"].tolist() == [4]
    none = _invoke("pareto", "--storage", studies_db, "--study", "a", "--best-under", "0.0005")
    assert none.exit_code != 0
    assert "no trial of study a is at most 0.0005" in str(none.exception)


# --- pareto --plot / --scatter --------------------------------------------------------------


def test_plot_draws_trials_front_and_labelled_references(studies_db: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from autoprune.search.plot import plot_front

    study = optuna.load_study(study_name="a", storage=f"sqlite:///{studies_db}")
    figure = plot_front(study)
    (ax,) = figure.axes
    assert ax.get_xlabel() == "size (MB)" and ax.get_ylabel() == "validation accuracy (%)"
    assert "a" in ax.get_title()
    every, references = (c.get_offsets() for c in ax.collections)
    assert len(every) == len(POINTS) and len(references) == 3
    (front,) = ax.get_lines()
    assert list(front.get_xdata()) == [0.0010, 0.0020, 0.0030, QUANTIZED_MB]
    assert sorted(t.get_text() for t in ax.texts) == ["uniform 0.40", "uniform 0.60", "unpruned"]

    out = tmp_path / "front.png"
    result = _invoke("pareto", "--storage", studies_db, "--study", "a", "--plot", out)
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob("*.partial"))


def test_plot_without_matplotlib_names_the_extra(
    studies_db: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    out = tmp_path / "front.png"
    result = _invoke("pareto", "--storage", studies_db, "--study", "a", "--plot", out)
    assert result.exit_code != 0 and not out.exists()
    assert "pip install 'autoprune[plot]'" in str(result.exception)


def test_plot_refuses_an_unknown_image_format(studies_db: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    result = _invoke("pareto", "--storage", studies_db, "--plot", tmp_path / "front.txt")
    assert result.exit_code != 0 and ".png" in str(result.exception)


def test_scatter_draws_text_with_the_front_and_the_references(studies_db: Path) -> None:
    result = _invoke("pareto", "--storage", studies_db, "--study", "a", "--scatter")
    assert result.exit_code == 0, result.output
    assert "size (MB)" in result.output and "validation accuracy (%)" in result.output
    grid = [line.split("|", 1)[1] for line in result.output.splitlines() if "|" in line[:9]]
    marks = "".join(grid)
    # trials 2 and 4 are Pareto-optimal without a reference label, trial 1 is dominated
    assert marks.count("*") == 2 and marks.count(".") == 1
    assert all(digit in marks for digit in "012")
    assert "unpruned (trial 5)" in result.output and "uniform 0.60 (trial 0)" in result.output
    # the most accurate trial sits on the top row, at the right end
    assert grid[0].rstrip().endswith(("2", "*"))


# --- studies --delete -----------------------------------------------------------------------


def test_delete_needs_yes_outside_a_terminal_then_removes_only_that_study(
    studies_db: Path,
) -> None:
    refused = _invoke("studies", "--storage", studies_db, "--delete", "a")
    assert refused.exit_code != 0 and "--yes" in str(refused.exception)
    storage = open_storage(str(studies_db))
    assert sorted(optuna.get_all_study_names(storage)) == ["a", "b"]

    deleted = _invoke("studies", "--storage", studies_db, "--delete", "a", "--yes")
    assert deleted.exit_code == 0, deleted.output
    assert "deleted study a (6 complete trials)" in deleted.output
    assert optuna.get_all_study_names(storage) == ["b"]
    kept = optuna.load_study(study_name="b", storage=storage)
    assert [t.values for t in kept.trials] == [list(p[:2]) for p in POINTS[:2]]


def test_delete_of_an_unknown_study_is_one_line(studies_db: Path) -> None:
    result = _invoke("studies", "--storage", studies_db, "--delete", "nope", "--yes")
    assert result.exit_code != 0
    assert str(result.exception) == (
        f"no study named nope in {studies_db}: see `autoprune studies --storage {studies_db}`"
    )
    assert sorted(optuna.get_all_study_names(open_storage(str(studies_db)))) == ["a", "b"]


# --- space ----------------------------------------------------------------------------------


def _search_default(config: ModelConfig, path: Path | None = None) -> SearchSpace:
    """The space a search of ``config`` uses (as SearchSession loads it), or ``path``'s."""
    example = torch.zeros(1, *config.input_shape)
    return load_search_space(config.name, build_model(config), example, path)


@pytest.mark.parametrize(("name", "channels", "side"), [("tiny_dscnn", 1, 20), ("resnet20", 3, 32)])
def test_space_writes_what_the_search_uses_and_search_reads_it_back(
    name: str, channels: int, side: int, tmp_path: Path
) -> None:
    out = tmp_path / "space.yaml"
    result = _invoke("space", name, "--in-channels", channels, "--image-size", side, "--out", out)
    assert result.exit_code == 0, result.output
    config = ModelConfig(name, QuantSpec.from_bits(2).to_dict(), 10, channels, side, name)
    default = _search_default(config)
    assert _search_default(config, out) == default  # what --search-space FILE gives
    text = out.read_text()
    assert text.startswith("# ") and f"{len(default.groups)} groups" in result.output
    if name == "resnet20":  # the bundled file, comments and all
        assert text.endswith(bundled_search_space_file(name).read_text())
    else:  # generated: every group, residual ones by name, parsed as written
        assert parse_search_space(text) == default
        assert "residual:blocks" in default.names


def test_format_search_space_round_trips_overrides_and_odd_names() -> None:
    space = parse_search_space(
        "model: m\nratio: {low: 0.1, high: 0.7, step: 0.15}\nresidual: true\ngroups:\n"
        "  - a.conv\n  - {name: 'residual:b', high: 0.4, step: 0.1}\n  - {name: 'x: y'}\n"
    )
    text = format_search_space(space)
    again = parse_search_space(text)
    assert again == space and again.defaults == space.defaults
    assert "residual: true" in text and "- a.conv\n" in text
    with pytest.raises(ConfigError):  # a real check: a broken text does not parse
        parse_search_space(text.replace("step: 0.15", "step: 0.25"))


def test_space_of_a_checkpoint_of_your_own_model_needs_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "convenience_nets.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    factory = "convenience_nets:build"
    config = ModelConfig(factory, QuantSpec.from_bits(2).to_dict(), 4, 1, 8, source=factory)
    checkpoint = save_checkpoint(tmp_path / "user.pt", build_model(config), config)
    out = tmp_path / "space.yaml"
    refused = _invoke("space", checkpoint, "--out", out)
    assert refused.exit_code != 0 and not out.exists()
    assert factory in str(refused.exception)
    result = _invoke("space", checkpoint, "--model", factory, "--out", out)
    assert result.exit_code == 0, result.output
    assert _search_default(config, out) == _search_default(config)
    assert _search_default(config).names == ["conv1", "conv2"]
    same = _invoke("space", checkpoint, "--model", factory, "--out", checkpoint)
    assert same.exit_code != 0 and "is the checkpoint" in str(same.exception)


# --- search --dry-run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def untrained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny_resnet checkpoint for digits: sizes and speed do not need trained weights."""
    data = load_dataset("digits", max_train=64)
    config = ModelConfig.for_data("tiny_resnet", QuantSpec.from_bits(2), data)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "tiny.pt"
    return save_checkpoint(path, build_model(config), config)


DRY = ["--max-train", "64", "--device", "cpu", "--dry-run"]


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_dry_run_measures_the_size_range_and_a_trial_and_writes_nothing(
    untrained_checkpoint: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    storage = tmp_path / "new.db"
    before = _files(tmp_path), _files(isolated_cache)
    result = _invoke("search", "--checkpoint", untrained_checkpoint, "--storage", storage, *DRY)
    assert result.exit_code == 0, result.output
    assert (_files(tmp_path), _files(isolated_cache)) == before  # no storage, no baseline
    out = " ".join(result.output.split())
    assert "new study in a new file" in out and "nothing was written or trained" in out
    assert "64 training and 143 validation images" in out
    for group in ("residual:conv1", "layers.0.0.conv1", "residual:layers.1.0"):
        assert group in out
    assert "the default search space (4 groups) controls" in out
    # every group at 60 % is the uniform 0.6 network `autoprune prune` makes: measured alike
    pruned = prune_checkpoint(
        untrained_checkpoint, tmp_path / "p.pt", uniform=0.6, residual=True, criterion="l1"
    )
    smallest = f"{pruned.after.size_bits / BITS_PER_MB:.4g} MB"
    assert f"reachable size: {smallest}" in out
    assert "(100.0 %) at its lowest" in out  # the default space starts at ratio 0
    estimate = re.search(r"estimate: ([\d.]+) s per trial \(prune ([\d.]+), finetune", out)
    assert estimate is not None and float(estimate.group(1)) > 0, out
    assert "extrapolated to 40 steps" in out and "budget" not in out
    assert "confirmation" not in out  # a front has no best trial to confirm
    budget = _invoke(
        "search",
        "--checkpoint",
        untrained_checkpoint,
        "--storage",
        storage,
        *DRY,
        "--target-size",
        "50%",
    )
    assert budget.exit_code == 0, budget.output
    said = " ".join(budget.output.split())
    assert (
        "then confirmation: the 2 best trials and the reference trials (about 3 in all) given "
        "400 steps of the export recipe" in said
    )


def test_dry_run_suggests_searching_widths_only_where_a_lower_one_exists(
    untrained_checkpoint: Path, tmp_path: Path, isolated_cache: Path
) -> None:
    data = load_dataset("digits", max_train=64)
    config = ModelConfig.for_data("tiny_resnet", QuantSpec.from_bits(4), data)
    torch.manual_seed(0)
    four_bit = save_checkpoint(tmp_path / "w4.pt", build_model(config), config)
    storage = ["--storage", tmp_path / "s.db", "--finetune-steps", "0"]
    hinted = _invoke("search", "--checkpoint", four_bit, *storage, *DRY)
    assert hinted.exit_code == 0, hinted.output
    said = " ".join(hinted.output.split())
    assert "hint: the inner layers are at 4 bits; --search-bits 2,4,8" in said
    searched = _invoke("search", "--checkpoint", four_bit, *storage, *DRY, "--search-bits", "2,4")
    assert searched.exit_code == 0 and "hint:" not in searched.output  # already searched
    lowest = _invoke("search", "--checkpoint", untrained_checkpoint, *storage, *DRY)
    assert lowest.exit_code == 0 and "hint:" not in lowest.output  # 2 bits: nothing lower


@pytest.mark.slow
def test_dry_run_of_a_named_model_trains_nothing(tmp_path: Path, isolated_cache: Path) -> None:
    tiny = ["--model", "tiny_resnet", "--epochs", "1", "--finetune-steps", "2"]
    result = _invoke("search", *tiny, "--storage", tmp_path / "s.db", *DRY)
    assert result.exit_code == 0, result.output
    assert "trained first (1 epochs" in " ".join(result.output.split())
    assert _files(tmp_path) == [] and not list(isolated_cache.rglob("*.pt"))


def test_dry_run_reports_the_study_it_would_resume(
    untrained_checkpoint: Path, studies_db: Path
) -> None:
    args = ["--checkpoint", untrained_checkpoint, "--storage", studies_db, *DRY]
    before = studies_db.read_bytes()
    resumed = _invoke("search", *args, "--study", "a", "--finetune-steps", "0")
    assert resumed.exit_code == 0, resumed.output
    assert "resumes: 6 complete trials" in resumed.output
    assert studies_db.read_bytes() == before
    bad = _invoke("search", *args, "--sampler", "nope")
    assert bad.exit_code != 0 and "nope" in str(bad.exception)
    budget = plan_search(  # a budget search: the limit is checked and reported
        SearchRequest(
            checkpoint=str(untrained_checkpoint),
            storage=None,
            target_size="50%",
            finetune=FinetuneConfig(steps=0),
            max_train=64,
            device="cpu",
        )
    )
    assert budget.budget is not None and "(50.0% of the unpruned network)" in budget.budget
    assert budget.study == "new study, in memory" and budget.seconds["finetune"] == 0.0


def test_metric_names_are_set_for_the_dashboard(tmp_path: Path) -> None:
    model = ModelConfig("tiny_resnet", QuantSpec.from_bits(2).to_dict(), 10, 1, 8, "tiny_resnet")
    config = RunConfig.from_dict(  # a study's identity as an older autoprune stored it
        {
            "model": model.to_dict(),
            "data": DataConfig("digits").to_dict(),
            "baseline": {"checkpoint": "0123456789abcdef"},
            "criterion": "l1",
            "finetune": {"steps": 1},
            "space": {"model": "tiny_resnet", "groups": []},
            "seed": 0,
        }
    )
    study, created = open_study(open_storage(str(tmp_path / "m.db")), "m", config=config)
    assert created and study.metric_names == ["val_accuracy", "size_mb"]


def test_the_library_and_the_command_line_start_without_matplotlib() -> None:
    code = (
        "import sys, autoprune, autoprune.search.plot, autoprune_cli.main; "
        "assert 'matplotlib' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_delete_in_a_terminal_asks_and_a_no_keeps_the_study(
    studies_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(typer.testing._NamedTextIOWrapper, "isatty", lambda self: True)
    kept = runner.invoke(
        app, ["studies", "--storage", str(studies_db), "--delete", "a"], input="n\n"
    )
    assert kept.exit_code != 0 and "delete study a (6 complete trials)" in kept.output
    storage = open_storage(str(studies_db))
    assert sorted(optuna.get_all_study_names(storage)) == ["a", "b"]
    gone = runner.invoke(
        app, ["studies", "--storage", str(studies_db), "--delete", "a"], input="y\n"
    )
    assert gone.exit_code == 0, gone.output
    assert optuna.get_all_study_names(storage) == ["b"]


def test_delete_study_takes_a_layerwise_study_with_its_group_studies_only() -> None:
    storage = optuna.storages.InMemoryStorage()
    for name, parent in (("p", None), ("p-g1", "p"), ("p-g2", "p"), ("q", None), ("q-g1", "q")):
        study = optuna.create_study(storage=storage, study_name=name)
        if parent is not None:
            study.set_user_attr(LAYERWISE_PARENT_ATTR, parent)
    with pytest.raises(ConfigError, match="one group of the layer-wise study 'q'"):
        delete_study(storage, "q-g1")
    assert sorted(delete_study(storage, "p")) == ["p", "p-g1", "p-g2"]
    assert sorted(optuna.get_all_study_names(storage)) == ["q", "q-g1"]
