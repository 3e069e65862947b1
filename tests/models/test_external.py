"""Bring your own network: ``create_model("package.module:factory")`` and its errors."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch

import autoprune
from autoprune.checkpoint import save_checkpoint
from autoprune.config import ModelConfig
from autoprune.errors import ConfigError, UntrustedModelError
from autoprune.models import build_model, create_model
from autoprune.quant import Identity, QuantConv2d, QuantLinear, QuantSpec
from autoprune.registry import UnknownNameError

USER_MODULE = """
from torch import nn

from autoprune.models.layers import classifier, quant_conv


class Net(nn.Module):
    def __init__(self, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def build(num_classes, in_channels):
    return Net(num_classes, in_channels)


def build_classes_only(num_classes):
    return Net(num_classes)


def fixed():
    return Net()


def own_quantized(*, spec, num_classes, in_channels):
    return _OwnQuantized(spec, num_classes, in_channels)


class _OwnQuantized(nn.Module):
    def __init__(self, spec, num_classes, in_channels):
        super().__init__()
        self.stem = quant_conv(spec, in_channels, 4, 3, stem=True)
        self.fc = classifier(spec, 4, num_classes)

    def forward(self, x):
        return self.fc(self.stem(x).mean((2, 3)))


def kwargs_only(**kwargs):
    return Net(**kwargs)


def raises(num_classes):
    raise RuntimeError("out of\\nmemory")


def not_a_module():
    return 42


NOT_CALLABLE = 3

nested = type("Namespace", (), {"build": staticmethod(build)})
"""


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module in a folder on ``sys.path``, as a user's own code would be."""
    name = f"usernets_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE))
    (tmp_path / "broken_user_module.py").write_text("import not_installed_package_xyz\n")
    (tmp_path / "syntax_user_module.py").write_text("def (:\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_factory_receives_what_it_names_and_is_quantized(user_module: str) -> None:
    model = create_model(f"{user_module}:build", bits=2, num_classes=5, in_channels=1)
    assert isinstance(model.conv1, QuantConv2d) and isinstance(model.fc, QuantLinear)
    assert model.conv1.in_channels == 1 and model.fc.out_features == 5
    assert model.conv1.weight_quantizer.bits == 32 and isinstance(
        model.conv1.input_quantizer, Identity
    )
    assert model.conv2.weight_quantizer.bits == 2 and model.fc.weight_quantizer.bits == 32
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 5)
    binary = create_model(f"{user_module}:Net", bits=1, num_classes=4, in_channels=3)
    assert isinstance(binary.relu1, torch.nn.Hardtanh)  # ReLU before a sign: every sign +1
    assert create_model(f"{user_module}:nested.build", num_classes=3).fc.out_features == 3


def test_factory_taking_spec_builds_its_own_network(user_module: str) -> None:
    spec = QuantSpec.from_bits(1)
    model = create_model(f"{user_module}:own_quantized", spec=spec, num_classes=3, in_channels=1)
    assert model(torch.randn(1, 1, 6, 6)).shape == (1, 3)
    assert model.stem.weight_quantizer.bits == 32 and model.fc.in_features == 4


def test_checkpoint_rebuilds_the_users_model(user_module: str, tmp_path: Path) -> None:
    name = f"{user_module}:build"
    config = ModelConfig(name, QuantSpec.from_bits(2).to_dict(), 4, 1, 8, source=name)
    torch.manual_seed(0)
    model = build_model(config).eval()
    path = save_checkpoint(tmp_path / "user.pt", model, config)
    with pytest.raises(UntrustedModelError, match=f"pass `model='{name}'`"):
        autoprune.load(path)  # the file alone never makes autoprune import its model
    loaded = autoprune.load(path, model=name)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert isinstance(loaded.conv2, QuantConv2d) and loaded.conv2.weight_quantizer.bits == 2


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ("no_such_module_xyz:build", ConfigError, "cannot import module 'no_such_module_xyz'.*"),
        ("broken_user_module:build", ConfigError, "failed to import.*install what it needs"),
        ("syntax_user_module:build", ConfigError, "failed to import.*SyntaxError.*fix the module"),
        ("{mod}:biuld", UnknownNameError, "has no attribute 'biuld'.*did you mean build"),
        ("{mod}:NOT_CALLABLE", ConfigError, "is a int, not callable"),
        ("{mod}:raises", ConfigError, r"raised RuntimeError: out of memory \(called with "),
        ("{mod}:not_a_module", ConfigError, "returned a int, not an nn.Module"),
        ("{mod}:fixed", ConfigError, "has 10 outputs but the data has 4 classes"),
        ("{mod}:build_classes_only", ConfigError, "reads 3-channel images but the data has 2"),
        ("{mod}:kwargs_only", ConfigError, "has 10 outputs"),  # **kwargs receive nothing
        (":build", ConfigError, "not of the form package.module:factory"),
        ("{mod}:a:b", ConfigError, "not of the form"),
    ],
)
def test_errors_name_problem_and_fix(
    user_module: str, target: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message) as raised:
        # 3 channels, except where the channel check itself is tested
        channels = 2 if "classes_only" in target else 3
        create_model(target.format(mod=user_module), num_classes=4, in_channels=channels)
    assert "\n" not in str(raised.value) and ": " in str(raised.value)


def test_unknown_registered_name_mentions_own_factories() -> None:
    with pytest.raises(UnknownNameError, match=r"did you mean .*resnet20.*package.module:factory"):
        create_model("resnet02")
