"""Training augmentation chosen by the data and overridable; the evaluation view of small images;
image-folder statistics; the cache keys of default data configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoprune.config import DataConfig
from autoprune.data import load_dataset
from autoprune.data.folder import ImageFolderData
from autoprune.data.transforms import IMAGENET_MEAN, light_sample
from autoprune.errors import ConfigError


def noise_folder(root: Path, side: int, mode: str, per_class: int = 4) -> None:
    rng = np.random.default_rng(0)
    channels = 1 if mode == "L" else 3
    for name in ("a", "b"):
        for split, count in (("train", per_class), ("test", 2)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (side, side, channels), dtype=np.uint8)
                Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels).save(
                    folder / f"{i}.png"
                )


def open_folder(root: Path, **options) -> ImageFolderData:
    data = load_dataset("imagefolder", data_dir=root, workers=0, val_fraction=0.25, **options)
    assert isinstance(data, ImageFolderData)
    return data


@pytest.mark.parametrize(
    ("side", "mode", "augment", "expected"),
    [
        # small grey images (digits, text): light, no flips, no centre crop
        (20, "L", None, ("light", False, 1.0)),
        # small colour images: light with flips
        (20, "RGB", None, ("light", True, 1.0)),
        # large images: the ImageNet recipe and its 87.5 % centre crop
        (80, "RGB", None, ("imagenet", True, 0.875)),
        # asked for: imagenet on small images still evaluates without a crop
        (20, "L", "imagenet", ("imagenet", False, 1.0)),
        (80, "RGB", "light", ("light", True, 1.0)),
        (80, "RGB", "none", ("none", True, 1.0)),
    ],
)
def test_image_folder_recipe_follows_the_images(
    tmp_path: Path, side: int, mode: str, augment: str | None, expected: tuple
) -> None:
    noise_folder(tmp_path, side, mode)
    data = open_folder(tmp_path, augment=augment)
    recipe = data.recipe
    assert (recipe.augment, recipe.flip, round(recipe.crop_fraction, 3)) == expected
    assert data.augmentation == expected[0]
    assert data.preprocessing.crop_fraction == recipe.crop_fraction


def test_image_folder_statistics_come_from_its_training_split(tmp_path: Path) -> None:
    # bright training images, dark test images: the statistics must follow train/ only
    for split, value in (("train", 220), ("test", 10)):
        for name in ("a", "b"):
            folder = tmp_path / split / name
            folder.mkdir(parents=True)
            for i in range(3):
                Image.new("L", (16, 16), value + i).save(folder / f"{i}.png")
    data = open_folder(tmp_path)
    assert data.mean[0] == pytest.approx(221 / 255, abs=2 / 255)
    assert data.mean != IMAGENET_MEAN[:1]


def test_none_trains_on_the_evaluation_view_and_light_differs(tmp_path: Path) -> None:
    noise_folder(tmp_path, 16, "RGB")

    def first_train(data: ImageFolderData) -> torch.Tensor:
        return next(data.batches("train", 8, train=True, generator=torch.Generator()))[0]

    plain = open_folder(tmp_path, augment="none")
    order = torch.randperm(plain.num_examples("train"), generator=torch.Generator())
    evals = torch.cat([x for x, _ in plain.batches("train", 100)])
    assert torch.equal(first_train(plain), evals[order[:8]])
    light = open_folder(tmp_path, augment="light")
    assert not torch.equal(first_train(light), evals[order[:8]])


def test_light_sample_pads_with_the_fill_and_shifts(tmp_path: Path) -> None:
    Image.new("L", (10, 10), 255).save(tmp_path / "white.png")
    views = [
        light_sample(tmp_path / "white.png", "L", 10, seed, padding=3, flip=False, fill=(7,))
        for seed in range(20)
    ]
    assert all(view.shape == (10, 10, 1) for view in views)
    values = {int(v) for view in views for v in np.unique(view)}
    assert values <= {7, 255} and 7 in values  # shifted windows show the fill, nothing else
    assert len({view.tobytes() for view in views}) > 1


def test_in_memory_datasets_take_none_or_light() -> None:
    light = load_dataset("digits")
    assert light.augmentation == "light" and not light.flip  # digits are never mirrored
    none = load_dataset("digits", augment="none")
    x = light.train_x[:16]
    assert torch.equal(none.augment(x, torch.Generator().manual_seed(0)), x)
    assert not torch.equal(light.augment(x, torch.Generator().manual_seed(0)), x)
    with pytest.raises(ConfigError, match="image folders"):
        load_dataset("digits", augment="imagenet")
    with pytest.raises(ConfigError, match="none, light, imagenet"):
        load_dataset("digits", augment="strong")


def test_data_config_keys_of_default_settings_are_unchanged(tmp_path: Path) -> None:
    digits = DataConfig.of(load_dataset("digits"), "digits")
    keyed = {"name": "digits", "val_fraction": 0.1, "seed": 0, "max_train": None}
    assert digits.key_dict() == keyed  # the cache key of existing baselines
    assert digits.to_dict() == {**keyed, "content": None, "augment": None}  # every field
    plain = DataConfig.of(load_dataset("digits", augment="none"), "digits")
    assert plain.to_dict()["augment"] == "none"
    assert DataConfig.from_dict(plain.to_dict()) == plain
    noise_folder(tmp_path, 16, "L")
    folder = DataConfig.of(open_folder(tmp_path), "imagefolder")
    assert folder.augment == "light" and folder.content is not None
