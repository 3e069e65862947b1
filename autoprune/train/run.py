"""A recorded, resumable training run: ``train_checkpoint`` behind ``autoprune train``.

After every epoch the checkpoint at ``path`` is rewritten (atomically) with the weights, the
per-epoch history and, in its ``training`` section, everything else the run needs to continue:
optimizer state, step counter, the data-order generator and the RNG states. Calling again with
the same configs continues after the last saved epoch and ends with exactly the weights of an
uninterrupted run; a different config is refused rather than mixed into the run. The last
epoch replaces the resume state by the final results (test accuracy), which keeps the file
the size of the weights alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from autoprune.checkpoint import load_state_strictly, read_checkpoint, save_checkpoint
from autoprune.config import DataConfig, ModelConfig, TrainConfig
from autoprune.data import ImageData
from autoprune.errors import CheckpointError, ConfigError
from autoprune.metrics import measure
from autoprune.models import build_model, load_pretrained_
from autoprune.paths import check_output
from autoprune.preprocess import preprocess_of
from autoprune.train.loops import Progress, Trainer, evaluate, resolve_precision, steps_per_epoch

ResumeMode = Literal["auto", "require", "restart"]
RESUME_MODES: tuple[str, ...] = ("auto", "require", "restart")


@dataclass(frozen=True)
class EpochRecord:
    """One finished epoch. ``seconds`` covers its training steps and its validation pass."""

    epoch: int  # 1-based
    train_loss: float  # mean cross-entropy per training example over the epoch
    val_accuracy: float
    seconds: float
    lr: float  # learning rate of the epoch's last step

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EpochRecord:
        return cls(
            epoch=int(data["epoch"]),
            train_loss=float(data["train_loss"]),
            val_accuracy=float(data["val_accuracy"]),
            seconds=float(data["seconds"]),
            lr=float(data.get("lr", float("nan"))),
        )


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during ``train_checkpoint``; ``path`` holds ``epochs_saved`` complete epochs."""

    def __init__(self, path: Path, epochs_saved: int, epochs: int) -> None:
        super().__init__(f"{path} holds {epochs_saved} of {epochs} epochs")
        self.path = path
        self.epochs_saved = epochs_saved
        self.epochs = epochs


@dataclass(frozen=True)
class TrainedCheckpoint:
    path: Path
    val_accuracy: float
    test_accuracy: float
    size_bits: int
    bops: int
    seconds: float  # training time summed over epochs, across interrupted sessions
    params: int = 0
    macs: int = 0
    history: tuple[EpochRecord, ...] = field(default_factory=tuple)
    epochs_resumed: int = 0  # epochs already in the checkpoint when this call started
    wall_seconds: float = 0.0  # this call, from start to final save
    precision: str = "float32"


def make_trainer(
    model: nn.Module, data: ImageData, config: TrainConfig, device: torch.device
) -> Trainer:
    """The ``Trainer`` that carries out ``config`` for ``model`` (already on ``device``)."""
    per_epoch = steps_per_epoch(data, config.batch_size)
    return Trainer(
        model,
        data,
        total_steps=config.epochs * per_epoch,
        batch_size=config.batch_size,
        lr=config.lr,
        optimizer=config.optimizer,
        weight_decay=config.weight_decay,
        schedule=config.schedule,
        warmup_steps=round(config.warmup_epochs * per_epoch),
        seed=config.seed,
        precision=resolve_precision(config.amp, device),
    )


def _precision_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _flatten(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _differences(label: str, saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``label.key saved -> wanted`` for each differing (nested) key."""
    saved, wanted = _flatten(saved, f"{label}."), _flatten(wanted, f"{label}.")
    return [
        f"{key} {saved.get(key)} -> {wanted.get(key)}"
        for key in {**saved, **wanted}
        if saved.get(key) != wanted.get(key)
    ]


def _normalised(model_config: ModelConfig) -> dict[str, Any]:
    """The model config with its quantization spelled out in full, for comparisons."""
    return replace(model_config, quant=model_config.spec.to_dict()).to_dict()


def _resumable(
    path: Path, model_config: ModelConfig, data_config: DataConfig, train_config: TrainConfig
) -> dict[str, Any]:
    """The payload at ``path`` if it is this run's checkpoint; else a one-line refusal."""
    fix = "pass `resume='restart'` to start over, or choose another `path`"
    try:
        payload = read_checkpoint(path)
    except CheckpointError as error:
        if "newer" in str(error):  # written by a newer autoprune: upgrading is the fix
            raise
        raise CheckpointError(
            f"{path} exists but is corrupt or not an autoprune checkpoint: {fix}"
        ) from error
    training = payload.get("training")
    metadata = payload.get("metadata") or {}
    if not isinstance(training, dict) or "train" not in metadata or payload.get("kept_channels"):
        raise CheckpointError(f"{path} holds no resumable training run: {fix}")
    try:
        saved_model = _normalised(ModelConfig.from_dict(payload["model"]))
        saved_train = asdict(TrainConfig.from_dict(metadata["train"]))
        saved_data = DataConfig.from_dict(metadata.get("data", {})).to_dict()
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path} has an unreadable config ({error}): {fix}") from error
    differences = (
        _differences("model", saved_model, _normalised(model_config))
        + _differences("data", saved_data, data_config.to_dict())
        + _differences("train", saved_train, asdict(train_config))
    )
    if differences:
        raise ConfigError(
            f"{path} holds a training run with another configuration "
            f"({'; '.join(differences[:3])}): rerun with its options to resume, {fix}"
        )
    return payload


def train_checkpoint(
    path: str | Path,
    model_config: ModelConfig,
    data_config: DataConfig,
    train_config: TrainConfig,
    data: ImageData,
    *,
    device: torch.device,
    progress: Progress | None = None,
    on_epoch: Callable[[EpochRecord], None] | None = None,
    resume: ResumeMode = "auto",
    pretrained: str | Path | None = None,
) -> TrainedCheckpoint:
    """Train ``model_config`` on ``data``, saving a resumable checkpoint at ``path`` per epoch.

    ``resume``: ``auto`` continues the run saved at ``path`` if there is one (same configs
    required) and starts fresh otherwise; ``require`` insists on continuing; ``restart``
    ignores and overwrites whatever is at ``path``. Ctrl-C raises ``TrainingInterrupted``,
    with the last complete epoch saved. The final checkpoint loads with ``autoprune.load``.
    ``pretrained``: weights to start from instead of a random initialisation (float or
    quantized; see ``autoprune.models.load_pretrained_``), recorded in the metadata; a saved
    run continues only if it started from the same file.
    """
    started = time.perf_counter()
    path = check_output(path, inputs={"the pretrained weights": pretrained}, what="checkpoint")
    if resume not in RESUME_MODES:
        raise ConfigError(f"unknown resume mode {resume!r}: use one of {', '.join(RESUME_MODES)}")
    payload = None
    if resume != "restart" and path.exists():
        payload = _resumable(path, model_config, data_config, train_config)
    elif resume == "require":
        raise CheckpointError(
            f"nothing to resume: {path} does not exist; pass `resume='auto'` to start a new run"
        )
    pretrained_from = None if pretrained is None else str(Path(pretrained).resolve())
    saved_from = payload["metadata"].get("pretrained") if payload is not None else None
    if payload is not None and pretrained is not None and saved_from != pretrained_from:
        raise ConfigError(
            f"{path} holds a training run that did not start from {pretrained}: pass "
            "`resume='restart'` to start over from it, or choose another `path`"
        )

    torch.manual_seed(train_config.seed)
    model = build_model(model_config)
    history: list[EpochRecord] = []
    if payload is not None:
        load_state_strictly(model, payload["state_dict"], f"checkpoint {path}")
        history = [EpochRecord.from_dict(r) for r in payload["metadata"].get("history", [])]
        pretrained_from = saved_from
    elif pretrained is not None:
        load_pretrained_(model, pretrained)
    model = model.to(device)
    trainer = make_trainer(model, data, train_config, device)
    training = payload["training"] if payload is not None else {}
    if payload is not None and not training.get("complete"):
        try:
            trainer.load_state_dict(training["state"])
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            raise CheckpointError(
                f"{path} has an unusable training state ({type(error).__name__}): "
                "pass `resume='restart'` to start over, or choose another `path`"
            ) from error
    epochs_resumed = len(history)

    metadata: dict[str, Any] = {
        "data": data_config.to_dict(),
        "train": train_config.to_dict(),
        "precision": _precision_name(trainer.precision),
    }
    if getattr(data, "root", None) is not None:  # an image folder: `search --checkpoint` reuses it
        metadata["data_dir"] = str(Path(data.root).resolve())  # type: ignore[attr-defined]
    preprocess = preprocess_of(data)
    if pretrained_from is not None:
        metadata["pretrained"] = pretrained_from
    epochs = train_config.epochs
    saved_epochs = epochs_resumed
    try:
        for epoch in range(len(history) + 1, epochs + 1):
            epoch_started = time.perf_counter()
            loss = trainer.run_epoch(progress)
            val = evaluate(model, data, "val")
            record = EpochRecord(
                epoch=epoch,
                train_loss=loss,
                val_accuracy=val.accuracy,
                seconds=time.perf_counter() - epoch_started,
                lr=trainer.base_lr * trainer.schedule.factor(trainer.step - 1),
            )
            history.append(record)
            if epoch < epochs:  # the last epoch is saved below, with the final results
                _save(path, model, model_config, metadata, history, trainer, preprocess=preprocess)
                saved_epochs = epoch
            if on_epoch is not None:
                on_epoch(record)
        if training.get("complete"):
            test_accuracy = float(payload["metadata"]["test_accuracy"])  # type: ignore[index]
        else:
            test_accuracy = evaluate(model, data, "test").accuracy
            _save(path, model, model_config, metadata, history, None, test_accuracy, preprocess)
    except KeyboardInterrupt as interrupt:
        raise TrainingInterrupted(path, saved_epochs, epochs) from interrupt
    cost = measure(model, model_config.input_shape)
    return TrainedCheckpoint(
        path=path,
        val_accuracy=history[-1].val_accuracy,
        test_accuracy=test_accuracy,
        size_bits=cost.size_bits,
        bops=cost.bops,
        seconds=sum(r.seconds for r in history),
        params=cost.params,
        macs=cost.macs,
        history=tuple(history),
        epochs_resumed=epochs_resumed,
        wall_seconds=time.perf_counter() - started,
        precision=metadata["precision"],
    )


def _save(
    path: Path,
    model: nn.Module,
    model_config: ModelConfig,
    metadata: dict[str, Any],
    history: list[EpochRecord],
    trainer: Trainer | None,
    test_accuracy: float | None = None,
    preprocess: dict[str, Any] | None = None,
) -> None:
    """One atomic write: resumable while ``trainer`` is given, final (with test) otherwise."""
    metadata = {
        **metadata,
        "history": [r.to_dict() for r in history],
        "val_accuracy": history[-1].val_accuracy,
        "seconds": sum(r.seconds for r in history),
    }
    training: dict[str, Any] = {"epochs_done": len(history), "complete": trainer is None}
    if trainer is not None:
        training["state"] = trainer.state_dict()
    else:
        metadata["test_accuracy"] = test_accuracy
    save_checkpoint(
        path, model, model_config, metadata=metadata, training=training, preprocess=preprocess
    )
