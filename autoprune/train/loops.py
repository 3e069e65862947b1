"""Training, fine-tuning and evaluation loops over any ``ImageData``.

``Trainer`` owns one model's optimisation state (optimizer, learning-rate schedule, the CPU
generator that orders and augments batches, the loss scaler of float16 training) and can
export all of it as plain data, so an interrupted run continues with bit-identical results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from autoprune.config import AMP_CHOICES, TrainConfig
from autoprune.data import ImageData
from autoprune.device import to_memory_format, training_memory_format
from autoprune.errors import ConfigError
from autoprune.registry import Registry

Progress = Callable[[int, int], None]
"""``progress(done, total)``, called after each optimisation step."""

SGD_MOMENTUM = 0.9
STEP_DECAY = 0.1
STEP_MILESTONES = (0.5, 0.75)  # fractions of the post-warmup steps where ``step`` decays

OptimizerFactory = Callable[[list[nn.Parameter], float, float], torch.optim.Optimizer]
OPTIMIZERS: Registry[OptimizerFactory] = Registry("optimizer")
ScheduleFactor = Callable[[float], float]
SCHEDULES: Registry[ScheduleFactor] = Registry("learning-rate schedule")


def check_train_config(config: TrainConfig) -> None:
    """``UnknownNameError`` unless ``config``'s optimizer and schedule are registered: called
    before any data is loaded (``TrainConfig`` checks everything else when it is built)."""
    OPTIMIZERS.get(config.optimizer)
    SCHEDULES.get(config.schedule)


@OPTIMIZERS.register("adam")
def _adam(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params: list[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(
        params, lr=lr, momentum=SGD_MOMENTUM, nesterov=True, weight_decay=weight_decay
    )


@SCHEDULES.register("cosine")
def _cosine(progress: float) -> float:
    """``(1 + cos(pi p)) / 2``: from 1 at the start to 0 after the last step."""
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@SCHEDULES.register("step")
def _step(progress: float) -> float:
    """``0.1 ** n`` with ``n`` the milestones (50 %, 75 % of the steps) already reached."""
    return STEP_DECAY ** sum(progress >= milestone for milestone in STEP_MILESTONES)


@dataclass(frozen=True)
class LRSchedule:
    """The learning-rate multiplier of every optimisation step, as a pure function of it.

    A linear warmup of ``warmup_steps`` steps (``(t + 1) / W``), then ``schedule`` of the
    progress ``p = (t - W) / (T - W)`` through the remaining steps. Being a function of the
    step alone, its whole state is the step counter.
    """

    schedule: str
    total_steps: int
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        SCHEDULES.get(self.schedule)  # unknown names fail here, with suggestions
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise ConfigError(
                f"warmup of {self.warmup_steps} steps does not fit in {self.total_steps} "
                "training steps: lower `warmup_epochs`"
            )

    def factor(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        progress = (step - self.warmup_steps) / max(self.total_steps - self.warmup_steps, 1)
        return SCHEDULES.get(self.schedule)(min(progress, 1.0))


def resolve_precision(amp: str, device: torch.device) -> torch.dtype:
    """The autocast dtype of training steps: float32 means no autocast.

    On CUDA, bfloat16 where the GPU supports it (no loss scaling needed), else float16 with a
    ``GradScaler``. The CPU always trains in float32.
    """
    if amp not in AMP_CHOICES:
        raise ConfigError(f"unknown amp setting {amp!r}: choose one of {', '.join(AMP_CHOICES)}")
    if amp == "off" or (amp == "auto" and device.type != "cuda"):
        return torch.float32
    if device.type != "cuda":
        raise ConfigError("mixed precision needs a CUDA device: pass `amp='off'` on this device")
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def _device_of(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    loss: float


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageData, split: str, batch_size: int = 512) -> Evaluation:
    """Accuracy and mean cross-entropy of ``model`` on ``split`` ('train', 'val' or 'test').

    Always in float32, so an accuracy does not depend on whether training used autocast, and
    in the device's training memory format, so it does not depend on whether the model was
    just trained or just loaded.
    """
    return evaluate_batches(model, data.batches(split, batch_size))


def evaluate_batches(
    model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]
) -> Evaluation:
    """``evaluate`` on given batches (e.g. ``autoprune.data.validation_subset``); the model's
    training mode is restored afterwards, and no random number is drawn."""
    was_training = model.training
    model.eval()
    memory_format = training_memory_format(_device_of(model))
    correct, loss, count = 0, 0.0, 0
    with torch.no_grad():
        for images, labels in batches:
            logits = model(to_memory_format(images, memory_format))
            loss += F.cross_entropy(logits, labels, reduction="sum").item()
            correct += (logits.argmax(1) == labels).sum().item()
            count += labels.numel()
    model.train(was_training)
    return Evaluation(accuracy=correct / max(count, 1), loss=loss / max(count, 1))


def steps_per_epoch(data: ImageData, batch_size: int) -> int:
    return math.ceil(data.num_examples("train") / batch_size)


@dataclass(frozen=True)
class Distillation:
    """Knowledge distillation from a fixed teacher's logits (Hinton et al., 2015).

    The training loss becomes ``(1 - weight) * CE(s, y) + weight * T^2 * KL(p_t || p_s)`` with
    ``p = softmax(logits / T)``; ``T^2`` keeps the gradient scale independent of ``T``. For a
    pruned candidate the teacher is the unpruned quantized network: its soft targets carry
    what the pruned channels computed, which a few labelled batches cannot.
    """

    teacher: nn.Module
    weight: float = 1.0
    temperature: float = 4.0

    def loss(
        self, logits: torch.Tensor, images: torch.Tensor, labels: torch.Tensor
    ) -> torch.Tensor:
        with torch.no_grad():
            target = self.teacher(images)
        t = self.temperature
        soft = F.kl_div(
            F.log_softmax(logits.float() / t, dim=1),
            F.log_softmax(target.float() / t, dim=1),
            log_target=True,
            reduction="batchmean",
        )
        hard = F.cross_entropy(logits, labels) if self.weight < 1 else logits.new_zeros(())
        return (1 - self.weight) * hard + self.weight * t * t * soft


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, data: ImageData, *, batches: int, batch_size: int, seed: int = 0
) -> None:
    """Re-estimate every BatchNorm's running statistics on ``batches`` training batches.

    Pruning removes channels that fed the next layers, so the statistics those layers' norms
    hold describe a network that no longer exists; a cumulative average over a few batches
    (drawn and augmented as in training, as the originals were) costs forward passes only.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or batches <= 0:
        return
    momenta = [norm.momentum for norm in norms]
    was_training = model.training
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative moving average: every batch counts the same
    model.train()
    memory_format = training_memory_format(_device_of(model))
    generator = torch.Generator().manual_seed(seed)
    stream = data.batches("train", batch_size, train=True, generator=generator)
    for _, (images, _labels) in zip(range(batches), stream, strict=False):
        model(to_memory_format(images, memory_format))
    for norm, momentum in zip(norms, momenta, strict=True):
        norm.momentum = momentum
    model.train(was_training)


class Trainer:
    """Optimises ``model`` on the training split of ``data`` for ``total_steps`` steps.

    The model is trained in place. Fake quantizers run inside autocast as they are: weight
    quantizers see the float32 master weights, activation quantizers the autocast dtype; the
    quantized levels (+-1, k / (2^k - 1)) then enter the convolution in that dtype.

    The model and its batches are put in the device's ``training_memory_format``. The CPU
    allocator is left as it is: a program that trains (the CLI, the benchmarks) asks for
    ``autoprune.device.tune_cpu_allocator`` itself, since it changes the whole process.
    """

    def __init__(
        self,
        model: nn.Module,
        data: ImageData,
        *,
        total_steps: int,
        batch_size: int,
        lr: float,
        optimizer: str = "adam",
        weight_decay: float = 0.0,
        schedule: str = "cosine",
        warmup_steps: int = 0,
        seed: int = 0,
        precision: torch.dtype = torch.float32,
        distillation: Distillation | None = None,
    ) -> None:
        self.model = model
        self.distillation = distillation
        self.data = data
        self.device = _device_of(model)
        self.memory_format = training_memory_format(self.device)
        model.to(memory_format=self.memory_format)  # before the optimizer sees the parameters
        self.batch_size = batch_size
        self.base_lr = lr
        self.schedule = LRSchedule(schedule, total_steps, warmup_steps)
        self.optimizer = OPTIMIZERS.get(optimizer)(list(model.parameters()), lr, weight_decay)
        # a CPU generator on every device: the data module draws its random numbers on the CPU,
        # which also makes a seed mean the same batches on CPU and CUDA
        self.generator = torch.Generator().manual_seed(seed)
        self.precision = precision
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == torch.float16 else None
        self.step = 0

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    @property
    def lr(self) -> float:
        """The learning rate of the next step."""
        return self.base_lr * self.schedule.factor(self.step)

    def _train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        lr = self.lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images = to_memory_format(images, self.memory_format)
        with torch.autocast(
            self.device.type, dtype=self.precision, enabled=self.precision != torch.float32
        ):
            logits = self.model(images)
            if self.distillation is None:
                loss = F.cross_entropy(logits, labels)
            else:
                loss = self.distillation.loss(logits, images, labels)
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.step += 1
        return loss.detach()

    def run(self, steps: int, progress: Progress | None = None) -> list[torch.Tensor]:
        """Up to ``steps`` more steps (never past ``total_steps``), reshuffling at each pass.

        Returns each step's mean batch loss as a 0-d tensor on the device: reading them all at
        the end saves a device synchronisation per step.
        """
        self.model.train()
        if self.distillation is not None:
            self.distillation.teacher.eval()
            self.distillation.teacher.to(memory_format=self.memory_format)
        stop = min(self.step + steps, self.total_steps)
        losses: list[torch.Tensor] = []
        while self.step < stop:
            before = self.step
            batches = self.data.batches(
                "train", self.batch_size, train=True, generator=self.generator
            )
            for images, labels in batches:
                losses.append(self._train_step(images, labels))
                if progress is not None:
                    progress(self.step, self.total_steps)
                if self.step >= stop:
                    break
            if self.step == before:
                raise ConfigError("the training split is empty: check the dataset and `max_train`")
        return losses

    def run_epoch(self, progress: Progress | None = None) -> float:
        """One full pass over the training split; returns its mean loss per example."""
        losses, sizes = [], []
        self.model.train()
        batches = self.data.batches("train", self.batch_size, train=True, generator=self.generator)
        for images, labels in batches:
            losses.append(self._train_step(images, labels))
            sizes.append(labels.numel())
            if progress is not None:
                progress(self.step, self.total_steps)
        if not losses:
            return float("nan")
        weights = torch.tensor(sizes, dtype=torch.float32, device=losses[0].device)
        return float((torch.stack(losses).float() * weights).sum() / weights.sum())

    def state_dict(self) -> dict[str, Any]:
        """Everything but the model needed to continue exactly, as plain data and tensors."""
        state: dict[str, Any] = {
            "step": self.step,
            "optimizer": self.optimizer.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.device.type == "cuda" and "cuda_rng" in state:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)


def _tail_mean(losses: list[torch.Tensor]) -> float:
    """Mean loss of the last 10 % of steps (at least one)."""
    if not losses:
        return float("nan")
    tail = losses[-max(1, len(losses) // 10) :]
    return float(torch.stack(tail).float().mean())


def train(
    model: nn.Module,
    data: ImageData,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float = 0.0,
    seed: int = 0,
    optimizer: str = "adam",
    schedule: str = "cosine",
    warmup_epochs: float = 0.0,
    amp: str = "off",
    progress: Progress | None = None,
) -> float:
    """Train ``epochs`` full passes; returns the mean loss of the last 10 % of steps.

    Without checkpoints: ``train_checkpoint`` is the resumable, recorded version.
    """
    per_epoch = steps_per_epoch(data, batch_size)
    trainer = Trainer(
        model,
        data,
        total_steps=epochs * per_epoch,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        weight_decay=weight_decay,
        schedule=schedule,
        warmup_steps=round(warmup_epochs * per_epoch),
        seed=seed,
        precision=resolve_precision(amp, _device_of(model)),
    )
    return _tail_mean(trainer.run(trainer.total_steps, progress))


def finetune(
    model: nn.Module,
    data: ImageData,
    *,
    steps: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    amp: str = "off",
    warmup_steps: int = 0,
    distillation: Distillation | None = None,
    progress: Progress | None = None,
) -> float:
    """A short fixed budget of ``steps`` Adam steps, a linear warmup of ``warmup_steps`` then
    cosine decay (a pruned candidate's recovery), optionally distilled from a teacher; returns
    the mean loss of the last 10 % of steps."""
    if steps <= 0:
        return float("nan")
    trainer = Trainer(
        model,
        data,
        total_steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup_steps=min(warmup_steps, steps),
        seed=seed,
        precision=resolve_precision(amp, _device_of(model)),
        distillation=distillation,
    )
    return _tail_mean(trainer.run(steps, progress))
