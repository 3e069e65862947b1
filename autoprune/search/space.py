"""Search spaces: which channel groups a search tunes, and the bounds of their ratios.

A search space is YAML data, one file per model in ``search_spaces/`` (installed as the
``autoprune_search_spaces`` package), for example::

    model: resnet20
    ratio: {low: 0.0, high: 0.6, step: 0.05}   # defaults for every group
    groups:
      - layers.0.0.conv1
      - {name: layers.2.2.conv1, high: 0.8}      # a per-group override
      - {name: "residual:layers.1", high: 0.3}   # a residual stream, named explicitly
    residual: true   # optional (default false): also search every residual group not listed

Groups are block-internal (named after their conv) or residual (``residual:...``: the channels
a ResNet stage's residual additions share, see ``autoprune.prune.groups``). ``residual: true``
adds every residual group the file does not list, with the default ratio range, and orders
all groups as the model defines them.

Models without a file get one generated from their block-internal channel groups (and their
residual groups with ``residual=True``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import optuna
import torch
import yaml
from torch import nn

from autoprune.errors import ConfigError
from autoprune.prune import find_groups
from autoprune.prune.groups import RESIDUAL_PREFIX

DEFAULT_RATIO = {"low": 0.0, "high": 0.6, "step": 0.05}


@dataclass(frozen=True)
class GroupRange:
    name: str
    low: float
    high: float
    step: float

    def distribution(self) -> optuna.distributions.FloatDistribution:
        return optuna.distributions.FloatDistribution(self.low, self.high, step=self.step)


@dataclass(frozen=True)
class SearchSpace:
    model: str
    groups: tuple[GroupRange, ...]
    residual: bool = False
    """Every residual group of the model is searched (those not listed get ``defaults``)."""
    defaults: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_RATIO), compare=False)

    @property
    def names(self) -> list[str]:
        return [group.name for group in self.groups]

    def suggest(self, trial: optuna.Trial) -> dict[str, float]:
        """One ratio per group; Optuna parameter names are the group names."""
        return {
            group.name: trial.suggest_float(group.name, group.low, group.high, step=group.step)
            for group in self.groups
        }

    def uniform(self, ratio: float) -> dict[str, float]:
        """The same ratio for every group, clipped to each group's range and snapped to its step."""
        params = {}
        for group in self.groups:
            clipped = min(max(ratio, group.low), group.high)
            snapped = group.low + round((clipped - group.low) / group.step) * group.step
            params[group.name] = round(min(snapped, group.high), 10)
        return params

    def to_dict(self) -> dict[str, Any]:
        # "residual" only when set: spaces without it keep the identity existing studies hold
        data = {"model": self.model, "groups": [asdict(g) for g in self.groups]}
        return {**data, "residual": True} if self.residual else data

    def with_residual_groups(self, model: nn.Module, example_input: torch.Tensor) -> SearchSpace:
        """This space plus every residual group of ``model`` it does not list yet, all in the
        model's definition order (the order the layer-wise method walks, backwards)."""
        listed = {group.name: group for group in self.groups}
        order = [group.name for group in find_groups(model, example_input, residual=True)]
        groups = {
            name: listed.get(name)
            or _group_range(name, self.defaults, f"search space for {self.model}")
            for name in order
            if name in listed or name.startswith(RESIDUAL_PREFIX)
        }
        unknown = tuple(group for name, group in listed.items() if name not in groups)
        return replace(self, groups=tuple(groups.values()) + unknown, residual=True)

    def validate_against(self, model: nn.Module, example_input: torch.Tensor) -> None:
        available = {group.name for group in find_groups(model, example_input, residual=True)}
        unknown = [name for name in self.names if name not in available]
        if unknown:
            raise ConfigError(
                f"search space for {self.model} names groups the model does not have "
                f"({', '.join(unknown[:3])}): prunable groups are {', '.join(sorted(available))}"
            )


def _group_range(entry: Any, defaults: dict[str, float], source: str) -> GroupRange:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(f"{source}: each group must be a name or a mapping with 'name'")
    values = {**defaults, **{k: v for k, v in entry.items() if k != "name"}}
    try:
        low, high, step = float(values["low"]), float(values["high"]), float(values["step"])
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(f"{source}: group {entry['name']} needs numeric low/high/step") from error
    if not (0.0 <= low <= high < 1.0) or step <= 0:
        raise ConfigError(
            f"{source}: group {entry['name']} needs 0 <= low <= high < 1 and step > 0, "
            f"got low={low}, high={high}, step={step}"
        )
    return GroupRange(str(entry["name"]), low, high, step)


def parse_search_space(text: str, source: str = "search space") -> SearchSpace:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        raise ConfigError(f"{source} is not valid YAML{line}: fix the file's syntax") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping with 'model' and a non-empty 'groups' list")
    residual = data.get("residual", False)
    if not isinstance(residual, bool):
        raise ConfigError(f"{source}: 'residual' must be true or false, got {residual!r}")
    groups_data = data.get("groups", [] if residual else None)
    if not isinstance(groups_data, list) or not (groups_data or residual):
        raise ConfigError(f"{source} must be a mapping with 'model' and a non-empty 'groups' list")
    defaults = {**DEFAULT_RATIO, **(data.get("ratio") or {})}
    groups = tuple(_group_range(entry, defaults, source) for entry in groups_data)
    names = [group.name for group in groups]
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ConfigError(f"{source} lists group {twice[0]} twice: keep one entry per group")
    return SearchSpace(str(data.get("model", "")), groups, residual, defaults)


def bundled_search_space_file(model_name: str) -> Path | None:
    """The YAML file shipped for ``model_name``, if any."""
    candidate = resources.files("autoprune_search_spaces") / f"{model_name}.yaml"
    return Path(str(candidate)) if candidate.is_file() else None


def generate_search_space(
    model_name: str, model: nn.Module, example_input: torch.Tensor, *, residual: bool = False
) -> SearchSpace:
    """Every block-internal group of ``model`` (and residual group if asked), default ranges."""
    groups = tuple(
        GroupRange(group.name, **DEFAULT_RATIO)
        for group in find_groups(model, example_input, residual=residual)
    )
    return SearchSpace(model=model_name, groups=groups, residual=residual)


def load_search_space(
    model_name: str,
    model: nn.Module,
    example_input: torch.Tensor,
    path: str | Path | None = None,
    *,
    residual: bool = False,
) -> SearchSpace:
    """The space from ``path``, else the bundled file for the model, else a generated one.

    ``residual=True`` adds every residual group, as ``residual: true`` in the file does.
    """
    source = Path(path) if path is not None else bundled_search_space_file(model_name)
    if source is None:
        return generate_search_space(model_name, model, example_input, residual=residual)
    if not source.is_file():
        raise ConfigError(f"search space file {source} not found: check the --search-space path")
    space = parse_search_space(source.read_text(), str(source))
    if space.residual or residual:
        space = space.with_residual_groups(model, example_input)
        if not space.groups:
            raise ConfigError(
                f"{source} lists no groups and {model_name} has no residual groups: "
                "list the groups to search"
            )
    space.validate_against(model, example_input)
    return space
