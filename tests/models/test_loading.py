"""Rebuilding from files runs no code: a user-defined model is imported only when named.

Each test plants a module whose import and whose factory each leave a marker file, names it in
a checkpoint or a study, and asserts that reading them leaves no marker unless the caller named
the factory (or passed the factory or a model object).
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
import torch
from typer.testing import CliRunner

import autoprune
from autoprune.checkpoint import save_checkpoint
from autoprune.config import ModelConfig
from autoprune.errors import CheckpointError, UntrustedModelError
from autoprune.export import prune_checkpoint
from autoprune.models import build_model, load_checkpoint
from autoprune.quant import QuantSpec
from autoprune.search import export_trial
from autoprune.search.study import BASELINE_PATH_ATTR, CONFIG_ATTR
from autoprune.train import describe_checkpoint
from autoprune_cli.main import app

SPEC = QuantSpec.from_bits(2).to_dict()
MARKED_MODULE = """
from pathlib import Path
from torch import nn

HERE = Path(__file__).parent
(HERE / "imported.marker").write_text("the module was imported")


def build(num_classes=10, in_channels=1):
    (HERE / "called.marker").write_text("the factory was called")
    return nn.Sequential(
        nn.Conv2d(in_channels, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(8, num_classes),
    )
"""


@pytest.fixture
def marked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    """A factory name ``module:build`` whose import and call leave markers in a folder."""
    module = f"marked_net_{abs(hash(tmp_path)) % 10**8}"
    folder = tmp_path / "code"
    folder.mkdir()
    (folder / f"{module}.py").write_text(textwrap.dedent(MARKED_MODULE))
    monkeypatch.syspath_prepend(str(folder))
    yield f"{module}:build", folder
    sys.modules.pop(module, None)


def _markers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.marker"))


def _checkpoint(tmp_path: Path, name: str) -> Path:
    """A checkpoint naming ``name`` as its model, written without building it."""
    config = ModelConfig("tiny_cnn", SPEC, 10, 1, 8)
    model = build_model(config)
    path = save_checkpoint(tmp_path / "crafted.pt", model, config)
    payload = torch.load(path, weights_only=True)
    payload["model"]["name"] = name
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("name", ["os:abort", "venv:main", "subprocess:run"])
def test_factory_names_in_a_checkpoint_are_never_imported(
    tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # venv:main would create a virtualenv here
    path = _checkpoint(tmp_path, name)
    module = name.partition(":")[0]
    was_loaded = module in sys.modules
    for read in (
        lambda: autoprune.load(path),
        lambda: describe_checkpoint(path),
        lambda: prune_checkpoint(path, tmp_path / "out.pt", uniform=0.5),
    ):
        with pytest.raises(UntrustedModelError, match=f"pass `model='{name}'`"):
            read()
    assert (module in sys.modules) == was_loaded
    assert not (tmp_path / "out.pt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["crafted.pt"]


def test_the_named_factory_the_factory_object_or_a_model_object_allow_it(
    tmp_path: Path, marked: tuple[str, Path]
) -> None:
    name, folder = marked
    config = ModelConfig(name, SPEC, 10, 1, 8, source=name)  # the caller named it here
    torch.manual_seed(0)
    original = build_model(config).eval()
    path = save_checkpoint(tmp_path / "own.pt", original, config)
    sys.modules.pop(name.partition(":")[0], None)
    for marker in folder.glob("*.marker"):
        marker.unlink()

    with pytest.raises(UntrustedModelError):
        autoprune.load(path)
    assert _markers(folder) == []  # not imported, not called
    with pytest.raises(CheckpointError, match="not 'other:build'"):
        autoprune.load(path, model="other:build")
    assert _markers(folder) == []

    x = torch.randn(3, 1, 8, 8)
    by_name = autoprune.load(path, model=name)
    assert _markers(folder) == ["called.marker", "imported.marker"]
    factory = sys.modules[name.partition(":")[0]].build
    by_factory = autoprune.load(path, model=factory)
    by_object = autoprune.load(path, model=factory(num_classes=10, in_channels=1))
    with torch.no_grad():
        expected = original(x)
        for loaded in (by_name, by_factory, by_object):
            assert torch.equal(loaded(x), expected)
    # the permission travels with the loaded config, so rebuilding it needs no second one
    assert isinstance(load_checkpoint(path, model=name).config.source, str)
    assert "source" not in load_checkpoint(path, model=name).config.to_dict()


def test_a_study_naming_a_factory_imports_nothing_on_export(
    tmp_path: Path, marked: tuple[str, Path]
) -> None:
    name, folder = marked
    baseline = _checkpoint(tmp_path, name)
    study = optuna.create_study(directions=["maximize", "minimize"])
    config = ModelConfig(name, SPEC, 10, 1, 8).to_dict()
    study.set_user_attr(
        CONFIG_ATTR,
        {"model": config, "data": {"name": "digits"}, "criterion": "l1", "finetune": {}},
    )
    study.set_user_attr(BASELINE_PATH_ATTR, str(baseline))
    study.enqueue_trial({})
    study.optimize(lambda trial: (0.5, 1.0), n_trials=1)
    with pytest.raises(UntrustedModelError):
        export_trial(study, 0, tmp_path / "out.pt", device="cpu")
    assert _markers(folder) == [] and not (tmp_path / "out.pt").exists()


def test_the_cli_refuses_in_one_line_naming_the_option(tmp_path: Path) -> None:
    path = _checkpoint(tmp_path, "os:abort")
    runner = CliRunner()
    for command in (
        ["inspect", str(path)],
        ["prune", str(path), "--out", "o.pt", "--uniform", "0.5"],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code != 0
        assert isinstance(result.exception, UntrustedModelError)


def test_a_pickled_payload_in_a_checkpoint_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran.marker"

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.write_text, (marker, "code ran"))

    path = tmp_path / "payload.pt"
    torch.save({"format": "autoprune-checkpoint", "version": 1, "model": Payload()}, path)
    with pytest.raises(CheckpointError, match="corrupt"):
        autoprune.load(path)
    with pytest.raises(CheckpointError):
        autoprune.models.read_state_dict(path)
    assert not marker.exists()
