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

Models without a file get one generated from all their channel groups, residual ones
included (listed by name).

A search may also choose each inner DoReFa layer's bit-width (weights and input together) from
a few choices (``BitChoices``, set by ``SearchSpace.with_bits``, never by the file): Optuna
parameters ``bits:<layer>``, next to the groups' ratios. ``split_params`` separates the two.

Files are checked against a fixed schema before anything is searched: only the keys above
(a typo is named with its closest match), numbers where numbers belong, ratios in [0, 1),
``low <= high``, ``high - low`` a whole number of ``step``s (Optuna would otherwise silently
shrink the range), each key once per mapping, and a ``model:`` line, if any, naming the model
searched.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import asdict, dataclass, field, replace
from decimal import Decimal
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
from autoprune.quant import bit_layers

DEFAULT_RATIO = {"low": 0.0, "high": 0.6, "step": 0.05}
TOP_KEYS = ("model", "ratio", "groups", "residual")
RATIO_KEYS = ("low", "high", "step")
GROUP_KEYS = ("name", *RATIO_KEYS)
_EXAMPLE_RATIO = "{low: 0.0, high: 0.6, step: 0.05}"
BITS_PREFIX = "bits:"
"""Prefix of the Optuna parameter holding a layer's searched bit-width, ``bits:<layer>``."""


def split_params(params: dict[str, float]) -> tuple[dict[str, float], dict[str, int]]:
    """A trial's parameters (or ratios) as ``(ratios per group, bits per layer)``."""
    ratios = {k: v for k, v in params.items() if not k.startswith(BITS_PREFIX)}
    bits = {k[len(BITS_PREFIX) :]: int(v) for k, v in params.items() if k.startswith(BITS_PREFIX)}
    return ratios, bits


@dataclass(frozen=True)
class BitChoices:
    """The widths each of ``layers`` may take; ``own`` is the network's (its reference points)."""

    layers: tuple[str, ...]
    choices: tuple[int, ...]
    own: int

    def suggest(self, trial: optuna.Trial) -> dict[str, int]:
        return {
            BITS_PREFIX + layer: trial.suggest_categorical(BITS_PREFIX + layer, self.choices)
            for layer in self.layers
        }

    def at(self, width: int) -> dict[str, int]:
        """Every layer at ``width``, as parameters."""
        return {BITS_PREFIX + layer: width for layer in self.layers}

    def unchanged(self) -> dict[str, int]:
        """Every layer at the network's own width: the parameters of a pruning-only point."""
        return self.at(self.own)

    @property
    def lowest(self) -> int:
        return min(self.choices)

    def can_lower(self) -> bool:
        """Whether a width below the network's own is a choice: then every layer at
        ``lowest`` is the point of lowering the precision instead of pruning."""
        return self.lowest < self.own

    def distributions(self) -> dict[str, optuna.distributions.CategoricalDistribution]:
        return {
            BITS_PREFIX + layer: optuna.distributions.CategoricalDistribution(self.choices)
            for layer in self.layers
        }


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
    bits: BitChoices | None = None
    """Per-layer bit-widths searched too (``with_bits``); None: the network's own throughout."""

    @property
    def names(self) -> list[str]:
        return [group.name for group in self.groups]

    def suggest(self, trial: optuna.Trial) -> dict[str, float]:
        """One ratio per group (Optuna parameters named after the groups), then the searched
        bit-widths, if any (``bits:<layer>``)."""
        ratios = {
            group.name: trial.suggest_float(group.name, group.low, group.high, step=group.step)
            for group in self.groups
        }
        return ratios if self.bits is None else {**ratios, **self.bits.suggest(trial)}

    def uniform(self, ratio: float) -> dict[str, float]:
        """The same ratio for every group, clipped to each group's range and snapped to its
        step; searched bit-widths at the network's own."""
        params = {}
        for group in self.groups:
            clipped = min(max(ratio, group.low), group.high)
            snapped = group.low + round((clipped - group.low) / group.step) * group.step
            params[group.name] = round(min(snapped, group.high), 10)
        return params if self.bits is None else {**params, **self.bits.unchanged()}

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        """The Optuna distribution of every parameter ``suggest`` draws."""
        ratios = {group.name: group.distribution() for group in self.groups}
        return ratios if self.bits is None else {**ratios, **self.bits.distributions()}

    def distinct_points(self) -> int:
        """How many different parameter sets the space holds."""
        count = 1
        for group in self.groups:
            count *= round((group.high - group.low) / group.step) + 1
        if self.bits is not None:
            count *= len(self.bits.choices) ** len(self.bits.layers)
        return count

    def with_bits(self, model: nn.Module, choices: tuple[int, ...], own: int) -> SearchSpace:
        """This space searching, besides the ratios, the width of every inner DoReFa layer of
        ``model`` among ``choices`` (``autoprune.quant.bit_layers``; the choices are checked
        by ``autoprune.quant.check_bit_choices``)."""
        layers = tuple(bit_layers(model))
        if not layers:
            raise ConfigError(
                f"{self.model} has no inner DoReFa layer whose bit-width could be searched: "
                "search its ratios alone"
            )
        return replace(self, bits=BitChoices(layers, tuple(sorted(set(choices))), own))

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
            close = difflib.get_close_matches(unknown[0], sorted(available), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(
                f"search space for {self.model} names groups the model does not have "
                f"({', '.join(unknown[:3])}){hint}: prunable groups are "
                f"{', '.join(sorted(available))}"
            )


def _unknown_key(key: Any, allowed: tuple[str, ...], where: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(str(key), allowed, n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return ConfigError(
        f"{source}: unknown key '{key}'{where}{hint}: the keys allowed{where} are "
        f"{', '.join(allowed)}"
    )


def _number(value: Any, key: str, source: str) -> float:
    # PyYAML reads 5e-2 (no dot) as a string: numeric strings are accepted as numbers
    if not isinstance(value, bool) and isinstance(value, int | float | str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise ConfigError(f"{source}: {key} must be a finite number such as 0.5, got {value!r}")


_NICE_STEPS = tuple(Decimal(v) for v in ("0.1", "0.05", "0.025", "0.02", "0.01", "0.005"))


def _check_range(values: dict[str, Any], where: str, source: str) -> tuple[float, float, float]:
    """``(low, high, step)`` of a merged ratio mapping, each bound checked; ``where`` names
    the mapping ("ratio", "group NAME") in messages."""
    low, high, step = (_number(values[key], f"{where}: {key}", source) for key in RATIO_KEYS)
    for key, value in (("low", low), ("high", high)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(
                f"{source}: {where}: {key} must lie in [0, 1), got {value:g}: ratios are "
                f"fractions of channels removed, 0 <= low <= high < 1, e.g. {key}: "
                f"{DEFAULT_RATIO[key]}"
            )
    if low > high:
        raise ConfigError(f"{source}: {where}: low {low:g} is above high {high:g}: swap them")
    if step <= 0:
        raise ConfigError(f"{source}: {where}: step must be > 0, got {step:g}: e.g. step: 0.05")
    # The test Optuna applies (decimal, as written): a range that is not a whole number of
    # steps would be shrunk with only a warning, down to ratio `low` alone if step > high - low.
    d_low, d_step = Decimal(str(low)), Decimal(str(step))
    span = Decimal(str(high)) - d_low
    if span % d_step != 0:
        nice = next((n for n in _NICE_STEPS if n <= d_step and span % n == 0), None)
        steps = int(span // d_step)
        fixes = [f"high: {float(d_low + steps * d_step):g}"] if steps >= 1 else []
        fixes += [f"step: {nice if nice is not None else span}"]
        raise ConfigError(
            f"{source}: {where}: step {step:g} does not fit the range [{low:g}, {high:g}]: "
            f"high - low must be a whole number of steps, e.g. {' or '.join(fixes)}"
        )
    return low, high, step


def _group_range(entry: Any, defaults: dict[str, Any], source: str) -> GroupRange:
    if isinstance(entry, str):
        entry = {"name": entry}
    if not isinstance(entry, dict) or "name" not in entry:
        raise ConfigError(
            f"{source}: each group must be a name or a mapping with 'name', got {entry!r}: "
            "e.g. - layers.0.0.conv1 or - {name: layers.0.0.conv1, high: 0.5}"
        )
    name = entry["name"]
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{source}: group name {name!r} must be a layer name such as layers.0.0.conv1 "
            "(quote it if YAML reads it as something else)"
        )
    for key in entry:
        if key not in GROUP_KEYS:
            raise _unknown_key(key, GROUP_KEYS, f" in group {name}", source)
    values = {**defaults, **{k: v for k, v in entry.items() if k != "name"}}
    return GroupRange(name, *_check_range(values, f"group {name}", source))


class _DuplicateKey(yaml.MarkedYAMLError):
    pass


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key given twice in one mapping (PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            if key_node.value in seen:
                raise _DuplicateKey(
                    problem=f"key '{key_node.value}' appears twice",
                    problem_mark=key_node.start_mark,
                )
            seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: builds plain data only
    except yaml.YAMLError as error:
        where = getattr(error, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        if isinstance(error, _DuplicateKey):
            raise ConfigError(f"{source}: {error.problem}{line}: keep one of them") from error
        raise ConfigError(f"{source} is not valid YAML{line}: fix the file's syntax") from error


def parse_search_space(text: str, source: str = "search space") -> SearchSpace:
    """The space a YAML text describes, checked against the schema of the module docstring;
    any deviation is a ``ConfigError`` naming the key and the fix."""
    data = _load_yaml(text, source)
    shape = "a mapping with 'model' and a non-empty 'groups' list"
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be {shape}")
    for key in data:
        if key not in TOP_KEYS:
            raise _unknown_key(key, TOP_KEYS, "", source)
    model = data.get("model", "")
    if not isinstance(model, str):
        raise ConfigError(f"{source}: model must be a model name such as resnet20, got {model!r}")
    residual = data.get("residual", False)
    if not isinstance(residual, bool):
        raise ConfigError(f"{source}: 'residual' must be true or false, got {residual!r}")
    groups_data = data.get("groups", [] if residual else None)
    if groups_data is not None and not isinstance(groups_data, list):
        raise ConfigError(
            f"{source}: groups must be a list of group names, one '- name' line each, "
            f"got {groups_data!r}"
        )
    if not (groups_data or residual):
        raise ConfigError(f"{source} must be {shape} (it may be empty with residual: true)")
    ratio = data.get("ratio") or {}
    if not isinstance(ratio, dict):
        raise ConfigError(
            f"{source}: ratio must be a mapping such as {_EXAMPLE_RATIO}, got {ratio!r}"
        )
    for key in ratio:
        if key not in RATIO_KEYS:
            raise _unknown_key(key, RATIO_KEYS, " in ratio", source)
    defaults = {**DEFAULT_RATIO, **ratio}
    # checked even when every group overrides it: residual groups added later use it
    low, high, step = _check_range(defaults, "ratio", source)
    defaults = {"low": low, "high": high, "step": step}
    groups = tuple(_group_range(entry, defaults, source) for entry in groups_data)
    names = [group.name for group in groups]
    if len(set(names)) != len(names):
        twice = sorted({name for name in names if names.count(name) > 1})
        raise ConfigError(f"{source} lists group {twice[0]} twice: keep one entry per group")
    return SearchSpace(model, groups, residual, defaults)


def bundled_search_space_file(model_name: str) -> Path | None:
    """The YAML file shipped for ``model_name``, if any."""
    candidate = resources.files("autoprune_search_spaces") / f"{model_name}.yaml"
    return Path(str(candidate)) if candidate.is_file() else None


def generate_search_space(
    model_name: str, model: nn.Module, example_input: torch.Tensor, *, residual: bool = False
) -> SearchSpace:
    """Every channel group of ``model``, residual ones included, with the default ranges.

    Residual groups are listed by name (as a file may list them), so the space's identity
    carries the ``residual`` flag only when asked; without them a depthwise-separable or
    MobileNet-style network could shrink little (its largest layers sit on residual streams).
    """
    groups = tuple(
        GroupRange(group.name, **DEFAULT_RATIO)
        for group in find_groups(model, example_input, residual=True)
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
        raise ConfigError(f"search space file {source} not found: check the `search_space` path")
    space = parse_search_space(source.read_text(), str(source))
    if space.model and space.model.lower() != model_name.lower():
        raise ConfigError(
            f"{source} is a search space for model {space.model}, not {model_name}: pass a "
            f"search space written for {model_name}, or change the file's model: line"
        )
    if space.residual or residual:
        space = space.with_residual_groups(model, example_input)
        if not space.groups:
            raise ConfigError(
                f"{source} lists no groups and {model_name} has no residual groups: "
                "list the groups to search"
            )
    space.validate_against(model, example_input)
    return space


def _yaml_name(name: str) -> str:
    """``name`` as a YAML scalar: plain where YAML reads it back unchanged, else quoted."""
    try:
        plain = yaml.safe_load(name) == name and ": " not in name and " #" not in name
    except yaml.YAMLError:
        plain = False
    return name if plain else "'" + name.replace("'", "''") + "'"


def format_search_space(space: SearchSpace) -> str:
    """YAML text that ``parse_search_space`` reads back as ``space``: the default ratio range
    once, groups with another range as mappings, the others as plain names."""
    defaults = {key: float(space.defaults[key]) for key in RATIO_KEYS}

    def ratio(values: dict[str, float]) -> str:
        return ", ".join(f"{key}: {values[key]!r}" for key in RATIO_KEYS)  # repr: exact

    lines = [f"model: {_yaml_name(space.model)}", f"ratio: {{{ratio(defaults)}}}"]
    lines.append("groups:" if space.groups else "groups: []")
    for group in space.groups:
        own = {key: getattr(group, key) for key in RATIO_KEYS}
        if own == defaults:
            lines.append(f"  - {_yaml_name(group.name)}")
        else:
            lines.append(f"  - {{name: {_yaml_name(group.name)}, {ratio(own)}}}")
    if space.residual:
        lines.append("residual: true")
    return "\n".join(lines) + "\n"
