"""CIFAR-10's python batches are pickles: a crafted one must never run code."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from autoprune.data import cifar10
from autoprune.errors import DatasetNotFoundError


def make_pickles(folder: Path) -> None:
    """Five training batches and a test batch of two images each, as the real files are."""
    folder.mkdir(parents=True)
    pixels = np.zeros((2, 3072), dtype=np.uint8)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": pixels, b"labels": [0, 1]}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))


class _Payload:
    """Unpickling this writes a marker file, as a malicious batch would run a command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.write_text, (self.marker, "code ran"))


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_every_protocol_of_the_real_format_loads(tmp_path: Path, protocol: int) -> None:
    pixels = np.arange(2 * 3072, dtype=np.uint8).reshape(2, 3072) % 251
    batch = {b"batch_label": b"x", b"labels": [3, 7], b"data": pixels, b"filenames": [b"a.png"]}
    images, labels = cifar10._batch_arrays(pickle.dumps(batch, protocol=protocol), "batch")
    assert labels.tolist() == [3, 7] and np.array_equal(images.reshape(2, -1), pixels)


@pytest.mark.parametrize("entry", [b"data", b"labels", b"extra"])
def test_a_payload_in_a_batch_is_refused_before_it_runs(tmp_path: Path, entry: bytes) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    make_pickles(folder)
    marker = tmp_path / "ran.marker"
    batch = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")
    batch[entry] = _Payload(marker)
    (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetNotFoundError, match=r"refused .*replace it with the official"):
        cifar10.load_cifar10(tmp_path)
    assert not marker.exists()


def test_a_payload_as_the_whole_meta_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    make_pickles(folder)
    marker = tmp_path / "ran.marker"
    (folder / "batches.meta").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(DatasetNotFoundError, match="unreadable"):
        cifar10.load_cifar10(tmp_path)
    assert not marker.exists()
