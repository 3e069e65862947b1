"""Search spaces with residual groups: the ``residual`` key, explicit names, identity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoprune.errors import ConfigError
from autoprune.models import create_model
from autoprune.search import load_search_space, parse_search_space
from autoprune.search.space import bundled_search_space_file, generate_search_space

EXAMPLE = torch.zeros(1, 3, 8, 8)


def test_bundled_space_dict_is_unchanged_without_residual_key() -> None:
    """Studies store ``space.to_dict()``: files without the key keep their identity."""
    model = create_model("resnet20", bits=2)
    space = load_search_space("resnet20", model, EXAMPLE)
    assert set(space.to_dict()) == {"model", "groups"}
    assert not any(name.startswith("residual:") for name in space.names)
    generated = generate_search_space("tiny_resnet", create_model("tiny_resnet"), EXAMPLE)
    assert set(generated.to_dict()) == {"model", "groups"}


def test_residual_true_adds_every_residual_group_in_definition_order(tmp_path: Path) -> None:
    bundled = bundled_search_space_file("resnet20")
    assert bundled is not None
    path = tmp_path / "s.yaml"
    path.write_text(bundled.read_text() + "residual: true\n")
    space = load_search_space("resnet20", create_model("resnet20", bits=2), EXAMPLE, path)
    assert space.names[0] == "residual:conv1"
    assert [n for n in space.names if n.startswith("residual:")] == [
        "residual:conv1",
        "residual:layers.1",
        "residual:layers.2",
    ]
    assert len(space.names) == 12
    # a residual group sits where its first producer is defined (layers.1.0.conv2)
    position = space.names.index
    assert (
        position("layers.1.0.conv1") < position("residual:layers.1") < position("layers.1.1.conv1")
    )
    assert space.to_dict()["residual"] is True
    high = {g.name: g.high for g in space.groups}
    assert high["residual:layers.2"] == 0.6  # the file's default ratio range


def test_residual_groups_can_be_listed_explicitly(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "model: resnet20\ngroups:\n  - layers.0.0.conv1\n"
        "  - {name: 'residual:layers.1', high: 0.3}\n"
    )
    space = load_search_space("resnet20", create_model("resnet20", bits=2), EXAMPLE, path)
    assert space.names == ["layers.0.0.conv1", "residual:layers.1"]
    assert space.groups[1].high == 0.3
    assert set(space.to_dict()) == {"model", "groups"}


def test_residual_override_keeps_explicit_ranges_and_flag_from_caller(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "model: tiny_resnet\nresidual: true\ngroups:\n  - {name: 'residual:conv1', high: 0.2}\n"
    )
    model = create_model("tiny_resnet", bits=2)
    space = load_search_space("tiny_resnet", model, EXAMPLE, path)
    assert space.names == ["residual:conv1", "residual:layers.1.0"]
    assert space.groups[0].high == 0.2
    generated = load_search_space("tiny_resnet", model, EXAMPLE, residual=True)
    assert "residual:layers.1.0" in generated.names and generated.to_dict()["residual"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model: m\nresidual: maybe\ngroups: [a]\n", "true or false"),
        ("model: m\ngroups: [a, a]\n", "lists group a twice"),
    ],
)
def test_malformed_residual_spaces(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_search_space(text, "space.yaml")


def test_residual_only_space_for_a_model_without_residual_groups(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("model: tiny_cnn\nresidual: true\n")
    with pytest.raises(ConfigError, match="no residual groups"):
        load_search_space("tiny_cnn", create_model("tiny_cnn", bits=2), EXAMPLE, path)
