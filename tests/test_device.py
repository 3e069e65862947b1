"""Device choice and the CPU runtime settings training applies."""

from __future__ import annotations

import os
import platform

import pytest
import torch

from autoprune import device


def test_training_memory_format_is_nchw_everywhere() -> None:
    # channels-last on the CPU corrupted the heap while pruned networks were fine-tuned
    assert device.training_memory_format(torch.device("cpu")) == torch.contiguous_format
    assert device.training_memory_format(torch.device("cuda")) == torch.contiguous_format


def test_to_memory_format_only_touches_image_batches() -> None:
    batch = torch.randn(2, 3, 4, 4)
    moved = device.to_memory_format(batch, torch.channels_last)
    assert moved.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(moved, batch)
    flat = torch.randn(2, 5)
    assert device.to_memory_format(flat, torch.channels_last) is flat


def test_allocator_tuning_respects_opt_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOPRUNE_TUNE_MALLOC", "0")
    assert device._apply_allocator_tuning() is False
    monkeypatch.delenv("AUTOPRUNE_TUNE_MALLOC")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "2")  # the user tuned glibc: leave it alone
    assert device._apply_allocator_tuning() is False


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's mallopt only")
def test_allocator_tuning_applies_on_glibc(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in [key for key in os.environ if key.startswith("MALLOC_")]:
        monkeypatch.delenv(key)
    monkeypatch.delenv("AUTOPRUNE_TUNE_MALLOC", raising=False)
    assert device._apply_allocator_tuning() is True
