"""What a checkpoint holds: architecture and exact per-layer cost, pruning, recorded results.

``describe_checkpoint`` is what ``autoprune inspect`` shows; ``CheckpointReport.to_dict`` is
its JSON form (JSON types only).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from autoprune.config import ModelConfig, TrainConfig
from autoprune.errors import CheckpointError
from autoprune.metrics import ModelCost, measure
from autoprune.models import ModelSource, build_model, load_checkpoint
from autoprune.prune import find_groups
from autoprune.quant import layer_bits
from autoprune.train.run import EpochRecord

# metadata keys the report shows in their own fields; anything else is listed as it is
_KNOWN_METADATA = ("train", "history", "val_accuracy", "test_accuracy", "seconds")


@dataclass(frozen=True)
class CheckpointReport:
    path: Path
    model: ModelConfig
    cost: ModelCost
    kept_channels: dict[str, int]  # per pruned group: channels kept
    original_channels: dict[str, int]  # per pruned group: channels of the unpruned model
    val_accuracy: float | None
    test_accuracy: float | None
    train_config: TrainConfig | None  # None: not a trained baseline (e.g. an export)
    history: tuple[EpochRecord, ...]
    epochs_done: int | None  # None: no training section
    training_complete: bool | None
    seconds: float | None  # recorded training time
    other_metadata: dict[str, Any]
    layer_bits: dict[str, int] = field(default_factory=dict)  # layers at another width

    @property
    def quant_label(self) -> str:
        """``w2a2``; a mixed-precision network: ``w2a2, 3 layers at other widths``."""
        label = self.model.spec.label
        count = len(self.layer_bits)
        if count:
            label += f", {count} layer{'s' if count > 1 else ''} at other widths"
        return label

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model": self.model.to_dict(),
            "quant": self.quant_label,
            "layer_bits": dict(self.layer_bits),
            "layers": [asdict(layer) for layer in self.cost.layers],
            "totals": {
                "params": self.cost.params,
                "size_bits": self.cost.size_bits,
                "size_mb": self.cost.size_mb,
                "macs": self.cost.macs,
                "bops": self.cost.bops,
            },
            "kept_channels": {
                name: {"kept": kept, "of": self.original_channels.get(name)}
                for name, kept in self.kept_channels.items()
            },
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "train_config": asdict(self.train_config) if self.train_config else None,
            "history": [record.to_dict() for record in self.history],
            "epochs_done": self.epochs_done,
            "training_complete": self.training_complete,
            "seconds": self.seconds,
            "metadata": self.other_metadata,
        }


def _optional_float(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def describe_checkpoint(path: str | Path, *, model: ModelSource = None) -> CheckpointReport:
    """Read ``path`` (``CheckpointError`` if unusable) and measure the model it holds.

    ``model`` allows a user-defined architecture (see ``autoprune.models.load_checkpoint``).
    """
    path = Path(path)
    loaded = load_checkpoint(path, model=model)
    model_config, kept, metadata = loaded.config, loaded.kept_channels, loaded.metadata
    original: dict[str, int] = {}
    if kept:
        example = torch.zeros(1, *model_config.input_shape)
        groups = find_groups(build_model(model_config), example, residual=True)
        original = {g.name: g.num_channels for g in groups if g.name in kept}
    training = loaded.payload.get("training")
    try:
        train_config = TrainConfig.from_dict(metadata["train"]) if "train" in metadata else None
        history = tuple(EpochRecord.from_dict(r) for r in metadata.get("history", []))
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(
            f"checkpoint {path} has unreadable training metadata ({error}): re-create it"
        ) from error
    return CheckpointReport(
        path=path,
        model=model_config,
        cost=measure(loaded.model, model_config.input_shape),
        kept_channels=kept,
        original_channels=original,
        val_accuracy=_optional_float(metadata.get("val_accuracy")),
        test_accuracy=_optional_float(metadata.get("test_accuracy")),
        train_config=train_config,
        history=history,
        epochs_done=int(training["epochs_done"]) if isinstance(training, dict) else None,
        training_complete=bool(training["complete"]) if isinstance(training, dict) else None,
        seconds=_optional_float(metadata.get("seconds")),
        other_metadata={k: v for k, v in metadata.items() if k not in _KNOWN_METADATA},
        layer_bits=layer_bits(loaded.model, model_config.spec),
    )
