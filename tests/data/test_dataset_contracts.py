"""Contract of every registered dataset whose data is available offline: loaded with a small
``max_train`` it has the declared classes, channels and image side, labels in range, images of
that shape, a split fixed by the seed (and moved by another seed), and no training image that
also serves for validation.

digits always runs; fashion-mnist where Debian's package is installed (slow); cifar10 from
``../shared/data/cifar10-jpg.tar.gz`` where present (slow: 60,000 JPEGs); imagefolder and
imagenet on a small folder of distinct images made here. A newly registered dataset fails
``test_every_dataset_has_a_contract`` until its line is added below.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoprune.data import DATASETS, DataSplits, ImageData, load_dataset

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
CIFAR_TARBALL = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpg.tar.gz"
FOLDER_CLASSES, FOLDER_IMAGES, FOLDER_SIDE = 3, 12, 12


def _image_folder(root: Path, splits: tuple[str, ...]) -> Path:
    """Distinct random RGB images, ``FOLDER_IMAGES`` per class, in ``root/<split>/<class>/``."""
    rng = np.random.default_rng(0)
    for split in splits:
        for label in range(FOLDER_CLASSES):
            folder = root / split / f"class{label}"
            folder.mkdir(parents=True)
            for index in range(FOLDER_IMAGES):
                pixels = rng.integers(0, 256, (FOLDER_SIDE, FOLDER_SIDE, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{index}.png")
    return root


@dataclass(frozen=True)
class Contract:
    """``data_dir(tmp_path)`` gives the folder to load (None: the dataset's default) or skips;
    ``max_train`` caps the training split."""

    num_classes: int
    in_channels: int
    image_size: int
    data_dir: Callable[[Path], Path | None]
    max_train: int = 48
    slow: bool = False


def _needs(path: Path) -> Callable[[Path], Path | None]:
    def data_dir(tmp_path: Path) -> Path | None:
        if not path.exists():
            pytest.skip(f"{path} is not on this machine")
        return path

    return data_dir


CONTRACTS = {
    "digits": Contract(10, 1, 8, lambda tmp: None),
    "fashion-mnist": Contract(10, 1, 28, _needs(FASHION_DIR), slow=True),  # 60,000 images
    "cifar10": Contract(10, 3, 32, _needs(CIFAR_TARBALL), slow=True),
    "imagefolder": Contract(
        FOLDER_CLASSES,
        3,
        FOLDER_SIDE,
        lambda tmp: _image_folder(tmp / "folder", ("train",)),
        max_train=None,  # type: ignore[arg-type]
    ),
    "imagenet": Contract(
        FOLDER_CLASSES,
        3,
        224,
        lambda tmp: _image_folder(tmp / "imagenet", ("train", "val")),
        max_train=None,  # type: ignore[arg-type]
    ),
}


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOPRUNE_DATA_DIR", raising=False)
    monkeypatch.delenv("AUTOPRUNE_DOWNLOAD", raising=False)


def test_every_dataset_has_a_contract() -> None:
    assert set(CONTRACTS) == set(DATASETS.names())


def _load(name: str, data_dir: Path | None, seed: int) -> ImageData:
    contract = CONTRACTS[name]
    return load_dataset(
        name,
        data_dir=data_dir,
        seed=seed,
        max_train=contract.max_train,
        val_fraction=0.25,
        workers=0,
    )


def _split(data: ImageData, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = list(data.batches(split, 64))
    return torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])


def _digest(image: torch.Tensor) -> str:
    return hashlib.sha256(image.contiguous().numpy().tobytes()).hexdigest()


def _raw(data: DataSplits, x: torch.Tensor) -> torch.Tensor:
    """The uint8 pixels behind normalised images (as the loader returned them)."""
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return ((x.double() * std + mean) * 255).round().to(torch.uint8)


def _params() -> list[object]:
    return [
        pytest.param(name, marks=[pytest.mark.slow] if contract.slow else [])
        for name, contract in CONTRACTS.items()
    ]


@pytest.mark.parametrize("name", _params())
def test_dataset_contract(name: str, tmp_path: Path) -> None:
    contract = CONTRACTS[name]
    data_dir = contract.data_dir(tmp_path)
    data = _load(name, data_dir, seed=0)
    shape = (contract.in_channels, contract.image_size, contract.image_size)
    assert (data.num_classes, data.in_channels, data.image_size) == (
        contract.num_classes,
        *shape[:2],
    )
    assert len(data.classes) == contract.num_classes
    if contract.max_train is not None:
        assert data.num_examples("train") == contract.max_train
    splits = {split: _split(data, split) for split in ("train", "val", "test")}
    for split, (x, y) in splits.items():
        assert len(x) == len(y) == data.num_examples(split) > 0, split
        assert tuple(x.shape[1:]) == shape and x.dtype == torch.float32, split
        assert y.dtype == torch.int64 and int(y.min()) >= 0 and int(y.max()) < data.num_classes

    again = _load(name, data_dir, seed=0)
    for split in ("train", "val", "test"):
        x, y = _split(again, split)
        assert torch.equal(x, splits[split][0]) and torch.equal(y, splits[split][1]), split
    other_val = _split(_load(name, data_dir, seed=1), "val")[0]
    assert not torch.equal(other_val, splits["val"][0]), "the seed does not move the split"

    if isinstance(data, DataSplits):  # a real dataset may hold identical images: count them
        source = DATASETS.get(name)(data_dir)
        held = Counter(_digest(image) for image in source.train_images)
        used = Counter(_digest(image) for image in _raw(data, splits["train"][0]))
        used.update(_digest(image) for image in _raw(data, splits["val"][0]))
        assert all(count <= held[key] for key, count in used.items()), "an image serves twice"
    else:  # the folder's images are distinct
        train = {_digest(image) for image in splits["train"][0]}
        assert not train & {_digest(image) for image in splits["val"][0]}
