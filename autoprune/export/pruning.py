"""Prune a saved checkpoint by given ratios: ``prune_checkpoint`` behind ``autoprune prune``.

The checkpoint's network is rebuilt, its channel groups are scored with a criterion and the
lowest-scoring ``ratio`` of each named group's channels are removed physically (``prune_``);
the smaller network is saved with its kept channels per group, so ``autoprune.load`` rebuilds
it exactly. No fine-tuning happens here.

A checkpoint that is already pruned can be pruned further: ratios then apply to the channels
it has now, and its kept channels are composed with the new ones (a group pruned earlier and
not named now keeps its earlier count).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from autoprune.checkpoint import save_checkpoint
from autoprune.config import CalibrationConfig, DataConfig
from autoprune.data import calibration_batches, load_dataset
from autoprune.errors import CheckpointError, ConfigError
from autoprune.metrics import LayerCost, ModelCost, measure
from autoprune.models import ModelSource, load_checkpoint
from autoprune.paths import check_output
from autoprune.prune import CRITERIA, ChannelGroup, find_groups, prune_
from autoprune.prune.criteria.base import Batch

DEFAULT_CRITERION = "angle-next"


@dataclass(frozen=True)
class LayerChange:
    """One layer of ``measure`` before and after pruning (``*_before`` / ``*_after``)."""

    name: str
    kind: str  # conv, linear or batchnorm
    out_before: int
    out_after: int
    params_before: int
    params_after: int
    size_bits_before: int
    size_bits_after: int
    macs_before: int
    macs_after: int
    bops_before: int
    bops_after: int

    @classmethod
    def between(cls, before: LayerCost, after: LayerCost) -> LayerChange:
        return cls(
            name=before.name,
            kind=before.kind,
            out_before=before.out_channels,
            out_after=after.out_channels,
            params_before=before.params,
            params_after=after.params,
            size_bits_before=before.size_bits,
            size_bits_after=after.size_bits,
            macs_before=before.macs,
            macs_after=after.macs,
            bops_before=before.bops,
            bops_after=after.bops,
        )


@dataclass(frozen=True)
class PruneReport:
    """What ``prune_checkpoint`` did. ``before`` / ``after`` are the whole networks' costs;
    ``layers`` holds every layer ``measure`` lists, in its order (convs and linears first,
    then BatchNorms), so the rows sum to the totals except for parameters outside them."""

    path: Path
    source: Path
    criterion: str
    ratios: dict[str, float]
    kept_channels: dict[str, int]  # every group of the saved network (what load rebuilds)
    channels_before: dict[str, int]  # the same groups in the source checkpoint
    layers: list[LayerChange]
    before: ModelCost
    after: ModelCost
    source_was_pruned: bool = False
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def compute_layers(self) -> list[LayerChange]:
        """The conv and linear rows (where MACs and BOPs are)."""
        return [layer for layer in self.layers if layer.kind != "batchnorm"]

    @property
    def batchnorm_layers(self) -> list[LayerChange]:
        return [layer for layer in self.layers if layer.kind == "batchnorm"]

    @property
    def batchnorm_total(self) -> LayerChange:
        """All BatchNorm rows summed into one (channels summed too)."""
        rows = self.batchnorm_layers
        return LayerChange(
            f"batchnorm ({len(rows)} layers)",
            "batchnorm",
            *(sum(getattr(row, f.name) for row in rows) for f in fields(LayerChange)[2:]),
        )


def parse_ratios(text: str) -> dict[str, float]:
    """``"group=r,group=r"`` -> ``{group: r}``; ``ConfigError`` on anything else.

    Group names may hold dots and colons (``residual:layers.1``), never ``=`` or ``,``.
    """
    ratios: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            ratio = float(value)
        except ValueError:
            ratio = math.nan
        if not sep or not name or math.isnan(ratio):
            raise ConfigError(
                f"cannot read ratio {item!r}: write group=ratio pairs separated by commas, "
                "e.g. layers.0.0.conv1=0.5,layers.1.0.conv1=0.25"
            )
        if name in ratios:
            raise ConfigError(f"group {name} is given twice in the ratios: give it once")
        ratios[name] = ratio
    if not ratios:
        raise ConfigError("no ratios given: write group=ratio pairs, e.g. layers.0.0.conv1=0.5")
    return ratios


def _check_ratio(name: str, ratio: float) -> None:
    if not 0.0 <= ratio < 1.0 or math.isnan(ratio):
        raise ConfigError(
            f"ratio {ratio:g} of {name} is outside [0, 1): it is the fraction of the group's "
            "channels to remove (0.5 removes half; at least one channel is always kept)"
        )


def resolve_ratios(
    groups: Sequence[ChannelGroup],
    *,
    ratios: Mapping[str, float] | None,
    uniform: float | None,
    residual: bool | None = None,
) -> dict[str, float]:
    """The ratio per group: ``ratios`` as given, or ``uniform`` for every group, residual ones
    included (block-internal groups only with ``residual=False``; on depthwise-separable and
    MobileNet-style networks the largest layers shrink only through residual groups). Exactly
    one of ``ratios`` and ``uniform`` must be given; ``residual=True`` goes with ``uniform``."""
    if (ratios is None) == (uniform is None):
        raise ConfigError(
            "give either per-group `ratios` (group=r,...) or one `uniform` ratio, "
            "not both or neither"
        )
    if residual and uniform is None:
        raise ConfigError(
            "the residual switch applies to a uniform ratio only: name residual groups "
            "(residual:...) in the per-group ratios instead"
        )
    names = [group.name for group in groups]
    if uniform is not None:
        _check_ratio("`uniform`", uniform)
        return {g.name: uniform for g in groups if residual is not False or not g.residual}
    assert ratios is not None
    for name in ratios:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise ConfigError(
                f"no channel group {name!r} in this network: {hint}valid groups are "
                f"{', '.join(names)}"
            )
    for name, ratio in ratios.items():
        _check_ratio(name, ratio)
    return dict(ratios)


def calibration_from_checkpoint(
    payload: Mapping[str, Any],
    source: Path,
    *,
    data_dir: str | Path | None = None,
    calibration: CalibrationConfig | None = None,
) -> list[Batch]:
    """The ``calibration`` batches (default: ``CalibrationConfig()``) of the data the checkpoint
    was trained on, as its metadata records it, drawn as a search with that seed draws them;
    ``CheckpointError`` if it records none."""
    recorded = (payload.get("metadata") or {}).get("data")
    if not isinstance(recorded, dict):
        raise CheckpointError(
            f"checkpoint {source} does not record its training data, which this criterion "
            "needs for calibration: choose a data-free criterion such as angle-next"
        )
    config = DataConfig.from_dict(recorded)
    data = load_dataset(
        config.name,
        data_dir=data_dir,
        val_fraction=config.val_fraction,
        seed=config.seed,
        max_train=config.max_train,
        augment=config.augment,
    )
    return calibration_batches(data, **(calibration or CalibrationConfig()).to_dict())


def prune_checkpoint(
    path: str | Path,
    out: str | Path,
    *,
    ratios: Mapping[str, float] | None = None,
    uniform: float | None = None,
    residual: bool | None = None,
    criterion: str = DEFAULT_CRITERION,
    seed: int = 0,
    calibration: Sequence[Batch] | None = None,
    data_dir: str | Path | None = None,
    model: ModelSource = None,
) -> PruneReport:
    """Prune the checkpoint at ``path`` and save the smaller network at ``out``.

    Give ``ratios`` (group -> fraction of its channels to remove, in [0, 1)) or ``uniform``
    (one fraction for every group, residual ones too unless ``residual=False``).
    ``criterion`` ranks channels (see ``autoprune.prune.CRITERIA``); ``seed`` drives
    ``random``; criteria that need data (``taylor``) use ``calibration`` batches, or else those a
    search with ``seed`` scores on, drawn from the dataset the checkpoint records (found in
    ``data_dir``).
    The saved checkpoint's metadata records the source, ratios and criterion, plus the
    source's own metadata (``source_metadata``, without its per-epoch history, which stays in
    the source); its training state is not carried over. ``model`` allows a user-defined
    architecture (see ``autoprune.models.load_checkpoint``).
    """
    source = Path(path)
    out = check_output(out, inputs={"the source checkpoint": source}, what="pruned checkpoint")
    CRITERIA.get(criterion)  # an unknown name raises with the known ones, before any work
    # Torch-Pruning's dependency graph traces with autograd: allow it even under no_grad
    with torch.enable_grad():
        return _prune_checkpoint(
            source,
            out,
            ratios=ratios,
            uniform=uniform,
            residual=residual,
            criterion=criterion,
            seed=seed,
            calibration=calibration,
            data_dir=data_dir,
            model=model,
        )


def _prune_checkpoint(
    source: Path,
    out: Path,
    *,
    ratios: Mapping[str, float] | None,
    uniform: float | None,
    residual: bool | None,
    criterion: str,
    seed: int,
    calibration: Sequence[Batch] | None,
    data_dir: str | Path | None,
    model: ModelSource,
) -> PruneReport:
    score = CRITERIA.get(criterion)
    loaded = load_checkpoint(source, model=model)
    model_config, previous, payload = loaded.config, loaded.kept_channels, loaded.payload
    network = loaded.model.eval()
    example = torch.zeros(1, *model_config.input_shape)
    groups = find_groups(network, example, residual=True)
    wanted = resolve_ratios(groups, ratios=ratios, uniform=uniform, residual=residual)
    if score.needs_data and calibration is None:
        # the batches a search with this seed scores on, so both prune alike
        calibration = calibration_from_checkpoint(
            payload, source, data_dir=data_dir, calibration=CalibrationConfig(seed=seed)
        )
    channels_before = {group.name: group.num_channels for group in groups}
    before = measure(network, model_config.input_shape)
    kept = prune_(
        network,
        wanted,
        criterion=criterion,
        example_input=example,
        calibration=calibration,
        seed=seed,
    )
    # residual groups pruned earlier but not named now keep their earlier count
    kept = {**previous, **kept}
    after = measure(network, model_config.input_shape)
    metadata = {
        "source": str(source),
        "ratios": dict(wanted),
        "criterion": criterion,
        "seed": seed,
        "source_metadata": {
            key: value for key, value in (payload.get("metadata") or {}).items() if key != "history"
        },
    }
    save_checkpoint(
        out,
        network,
        model_config,
        kept_channels=kept,
        metadata=metadata,
        preprocess=payload.get("preprocess"),  # pruning keeps the source's inputs
    )
    after_by_name = {layer.name: layer for layer in after.layers}
    return PruneReport(
        path=out,
        source=source,
        criterion=criterion,
        ratios=dict(wanted),
        kept_channels=kept,
        channels_before={name: channels_before[name] for name in kept},
        layers=[LayerChange.between(layer, after_by_name[layer.name]) for layer in before.layers],
        before=before,
        after=after,
        source_was_pruned=bool(previous),
        metadata=metadata,
    )
