"""Device choice (CUDA when present, else CPU; always overridable by name) and CPU runtime
tuning for training."""

from __future__ import annotations

import ctypes
import os
import platform

import torch

from autoprune.errors import ConfigError


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks ``cuda`` if available, else ``cpu``; any torch device string is accepted."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ConfigError(f"unknown device {name!r}: use auto, cpu, cuda or cuda:N") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} requested but CUDA is not available: pass `device='cpu'`"
        )
    return device


def training_memory_format(device: torch.device) -> torch.memory_format:
    """The layout conv nets run in on ``device``: contiguous NCHW everywhere.

    Channels-last trained ResNet-20 1.4x faster on the CPU (``benchmarks/train_throughput.py``,
    its memory-format option), but oneDNN's channels-last path corrupts the heap while a
    *pruned* network is fine-tuned (torch 2.13 CPU: "corrupted double-linked list" with one
    thread, run-to-run differences with two; ``tests/train/test_determinism.py``), so a
    trial could not be rebuilt to the accuracy the search measured. Correct first: NCHW until
    a torch release fixes it."""
    del device  # one layout for every device, until a measurement says otherwise
    return torch.contiguous_format


def to_memory_format(images: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """``images`` in ``memory_format`` when they are a 4-D batch; anything else unchanged."""
    return images.contiguous(memory_format=memory_format) if images.dim() == 4 else images


# glibc's mallopt parameters (malloc.h) and the largest mmap threshold it accepts on 64-bit
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MAX_MMAP_THRESHOLD = 32 * 1024 * 1024
_KEEP_FREED_BYTES = 1024 * 1024 * 1024
_allocator_tuned: bool | None = None


def tune_cpu_allocator() -> bool:
    """Make glibc keep freed activation buffers for reuse instead of returning them to the OS.

    By default glibc serves blocks of a few MB (a batch's activations) with ``mmap`` and unmaps
    them on free, so every training step faults its activations in afresh, page by page. That
    cost grows with the number of tensors a step allocates, so fake quantization (one more
    tensor per quantized layer) paid it several times over: ResNet-20 W2A2 took 36,000 minor
    page faults per step against 8,500 for float (measured; the allocator option of
    ``benchmarks/train_throughput.py`` shows the effect on throughput). Raising the mmap
    threshold to its maximum and the trim threshold to 1 GiB brings both to almost none; the
    price is that the process keeps its peak heap.

    Process-wide and done once, so the library never calls it by itself: programs that train
    (the ``autoprune`` command, the benchmarks) call it at start. Skipped where the allocator
    is not glibc's, where the user tuned it (``MALLOC_*`` variables) or set
    ``AUTOPRUNE_TUNE_MALLOC=0``. Under a preloaded jemalloc/tcmalloc it only configures the
    unused glibc heap, which is harmless. Returns whether the tuning is in effect.
    """
    global _allocator_tuned
    if _allocator_tuned is None:
        _allocator_tuned = _apply_allocator_tuning()
    return _allocator_tuned


def _apply_allocator_tuning() -> bool:
    if os.environ.get("AUTOPRUNE_TUNE_MALLOC", "1") == "0":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(key.startswith("MALLOC_") for key in os.environ):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(
        mallopt(_M_MMAP_THRESHOLD, _MAX_MMAP_THRESHOLD)
        and mallopt(_M_TRIM_THRESHOLD, _KEEP_FREED_BYTES)
    )
