"""Streaming image folders and the Pillow transforms; every image is generated in tmp_path."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from autoprune.data import ImageData, ImageFolderData, load_dataset
from autoprune.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    eval_sample,
    load_crop,
    random_resized_crop_box,
)
from autoprune.errors import ConfigError, DatasetNotFoundError
from autoprune.preprocess import center_crop_box

CLASSES = ("zebra", "ant", "cat")  # written out of order: labels follow the sorted names


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may see the machine's datasets, caches or environment."""
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path / "cache"))
    for name in ("AUTOPRUNE_DATA_DIR", "AUTOPRUNE_IMAGENET_DIR"):
        monkeypatch.delenv(name, raising=False)


def solid_folder(root: Path, counts: dict[str, int], *, size: tuple[int, int] = (20, 14)) -> None:
    """Solid-colour PNGs whose red value is a unique id, so any eval view can be traced back.

    Ids are numbered over ``split, class, file`` in sorted order; green is the class index.
    """
    next_id = 0
    for split, per_class in counts.items():
        for label, name in enumerate(sorted(CLASSES)):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                colour = (next_id, 40 * label, 200)
                Image.new("RGB", size, colour).save(folder / f"{i:03d}.png")
                next_id += 1


def noise_folder(
    root: Path, per_class: int, *, size: tuple[int, int] = (40, 30), mode: str = "RGB"
) -> None:
    """Random-noise images, so crops and flips actually change the pixels."""
    rng = np.random.default_rng(0)
    channels = 3 if mode == "RGB" else 1
    for name in CLASSES:
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
            Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels).save(
                folder / f"{i:03d}.png"
            )


def raw(data: ImageFolderData, x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: pixel values scaled to [0, 1]."""
    mean = torch.tensor(data.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.std).view(1, -1, 1, 1)
    return x * std + mean


def eval_ids(data: ImageFolderData, split: str, batch_size: int = 7) -> list[int]:
    """The red-channel ids of a split's eval pass, in order (solid images stay solid)."""
    ids = []
    for x, _ in data.batches(split, batch_size):
        pixels = (raw(data, x) * 255).round()
        assert torch.equal(pixels.amin(dim=(2, 3)), pixels.amax(dim=(2, 3)))
        ids += pixels[:, 0, 0, 0].long().tolist()
    return ids


def open_folder(root: Path, **options) -> ImageFolderData:
    options.setdefault("workers", 0)
    data = load_dataset("imagefolder", data_dir=root, **options)
    assert isinstance(data, ImageFolderData) and isinstance(data, ImageData)
    return data


# --- layout --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("folders", "expected"),
    [
        # (train, val, test) sizes for 3 classes, val_fraction 0.25
        ({"train": 8, "val": 2, "test": 3}, (24, 6, 9)),  # both used as they are
        ({"train": 8, "test": 3}, (18, 6, 9)),  # val carved from train
        ({"train": 8, "val": 2}, (18, 6, 6)),  # ImageNet: val/ becomes test
        ({"train": 10}, (18, 6, 6)),  # fixed 20 % test, then val carved
    ],
)
def test_layouts_form_disjoint_splits(tmp_path: Path, folders: dict, expected: tuple) -> None:
    solid_folder(tmp_path, folders)
    data = open_folder(tmp_path, val_fraction=0.25, image_size=8)
    assert data.classes == ("ant", "cat", "zebra") and data.num_classes == 3
    assert (data.in_channels, data.image_size) == (3, 8)
    assert tuple(data.num_examples(s) for s in ("train", "val", "test")) == expected
    ids = {split: eval_ids(data, split) for split in ("train", "val", "test")}
    assert all(len(ids[s]) == n for s, n in zip(ids, expected, strict=True))
    everything = [i for split_ids in ids.values() for i in split_ids]
    assert len(set(everything)) == len(everything)  # no image in two splits
    # labels follow the sorted class folders (green channel = class index when written)
    for x, y in data.batches("test", 100):
        assert torch.equal((raw(data, x)[:, 1, 0, 0] * 255 / 40).round().long(), y)
    if "test" in folders:  # test/ is the last folder written: its ids come last
        assert min(ids["test"]) == sum(n * 3 for s, n in folders.items() if s != "test")
    elif "val" in folders:
        assert min(ids["test"]) == 8 * 3


def test_class_names_are_sorted_whatever_the_listing_order(tmp_path: Path) -> None:
    names = ["pear", "Zed", "apple", "fig", "kiwi", "date", "lime", "1st", "banana"]
    for value, name in enumerate(names):
        (tmp_path / "train" / name).mkdir(parents=True)
        Image.new("L", (6, 6), 20 * value).save(tmp_path / "train" / name / "a.png")
    data = open_folder(tmp_path, image_size=4, val_fraction=0.0)
    assert data.classes == tuple(sorted(names)) and data.in_channels == 1
    x, y = next(data.batches("train", 100))
    grey = (raw(data, x)[:, 0, 0, 0] * 255).round().long()
    assert [names[v // 20] for v in grey.tolist()] == [data.classes[i] for i in y.tolist()]
    assert y.tolist() == list(range(len(names)))


def test_val_split_moves_with_seed_test_does_not(tmp_path: Path) -> None:
    solid_folder(tmp_path, {"train": 10})
    first, again, other = (open_folder(tmp_path, seed=s, image_size=4) for s in (1, 1, 2))
    assert eval_ids(first, "val") == eval_ids(again, "val") != eval_ids(other, "val")
    assert eval_ids(first, "test") == eval_ids(other, "test")


def test_max_train_and_default_image_size(tmp_path: Path) -> None:
    solid_folder(tmp_path, {"train": 10, "val": 2}, size=(20, 14))
    data = open_folder(tmp_path, max_train=5)
    assert data.num_examples("train") == 5 and data.image_size == 14  # median shorter side


def test_identity_follows_content_not_location(tmp_path: Path) -> None:
    import shutil

    solid_folder(tmp_path / "a", {"train": 10, "val": 1})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first, moved = open_folder(tmp_path / "a"), open_folder(tmp_path / "b")
    assert first.identity == moved.identity and len(first.identity) == 16
    assert open_folder(tmp_path / "a", seed=1).identity != first.identity  # another val split
    (tmp_path / "b" / "train" / "cat" / "000.png").unlink()
    assert open_folder(tmp_path / "b").identity != first.identity


def test_grey_images_give_one_channel(tmp_path: Path) -> None:
    noise_folder(tmp_path, 2, mode="L")
    data = open_folder(tmp_path, image_size=12, val_fraction=0.0)
    assert data.in_channels == 1
    x, _ = next(data.batches("train", 4, train=True))
    assert x.shape == (4, 1, 12, 12)


def test_imagenet_roots_and_default_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    solid_folder(tmp_path / "data" / "imagenet", {"train": 2, "val": 1})
    assert load_dataset("imagenet", data_dir=tmp_path / "data").image_size == 224
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagenet", data_dir=tmp_path / "elsewhere")
    assert "AUTOPRUNE_IMAGENET_DIR" in str(info.value) and "\n" not in str(info.value)
    monkeypatch.setenv("AUTOPRUNE_IMAGENET_DIR", str(tmp_path / "data" / "imagenet"))
    data = load_dataset("imagenet", image_size=16, workers=0)
    assert (data.num_classes, data.image_size, data.num_examples("test")) == (3, 16, 3)


def test_a_given_imagenet_dir_is_never_replaced_by_the_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    solid_folder(tmp_path / "imagenet", {"train": 2, "val": 1})
    monkeypatch.setenv("AUTOPRUNE_IMAGENET_DIR", str(tmp_path / "imagenet"))
    with pytest.raises(DatasetNotFoundError, match="elsewhere"):
        load_dataset("imagenet", data_dir=tmp_path / "elsewhere")


# --- transforms ----------------------------------------------------------------------------


def test_random_resized_crop_box_obeys_scale_and_ratio() -> None:
    rng = random.Random(0)
    areas = []
    for _ in range(500):
        width, height = rng.randint(100, 400), rng.randint(100, 400)
        left, top, right, bottom = random_resized_crop_box(width, height, rng)
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        w, h = right - left, bottom - top
        areas.append(w * h / (width * height))
        # sides of >= 24 px: rounding moves the ratio by at most ~2 %, the area by ~4 %
        assert 0.08 * 0.96 <= areas[-1] <= 1.0
        assert 0.75 * 0.97 <= w / h <= 4 / 3 * 1.03
    assert min(areas) < 0.15 and max(areas) > 0.9  # the whole scale range is used
    # a 100:1 strip never fits a sampled box: the largest centred 4:3 box is the fallback
    assert random_resized_crop_box(1000, 10, random.Random(0)) == (493, 0, 506, 10)


def test_center_crop_matches_resize_then_crop(tmp_path: Path) -> None:
    assert center_crop_box(320, 256) == pytest.approx((48, 16, 272, 240))
    rows, cols = np.mgrid[0:90, 0:120]
    pixels = np.stack([rows * 2, cols * 2, rows + cols], axis=-1).astype(np.uint8)
    image = Image.fromarray(pixels)
    size = 56
    short = round(size * 256 / 224)  # 64: resize 120x90 -> 85x64, then crop the middle 56
    resized = image.resize((round(120 * short / 90), short), Image.Resampling.BILINEAR)
    left, top = (resized.width - size) // 2, (resized.height - size) // 2
    reference = np.asarray(resized.crop((left, top, left + size, top + size)), dtype=np.int16)
    image.save(tmp_path / "gradient.png")
    ours = load_crop(tmp_path / "gradient.png", "RGB", size, center_crop_box)
    assert ours.shape == (size, size, 3)
    assert np.abs(ours.astype(np.int16) - reference).mean() < 2.0


def test_jpeg_reduced_decoding_matches_full_decoding(tmp_path: Path) -> None:
    rows, cols = np.mgrid[0:480, 0:640]
    pixels = np.stack([rows // 2, cols // 3, (rows + cols) // 5], axis=-1).astype(np.uint8)
    path = tmp_path / "big.jpg"
    Image.fromarray(pixels).save(path, quality=95)
    fast = eval_sample(path, "RGB", 32)  # decoded at 1/8 scale, then resized
    with Image.open(path) as image:
        box = center_crop_box(*image.size)
        full = np.asarray(image.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR, box=box))
    assert fast.shape == (32, 32, 3)
    assert np.abs(fast.astype(np.int16) - full.astype(np.int16)).mean() < 3.0


# --- batches -------------------------------------------------------------------------------


def test_train_batches_shapes_ranges_and_augmentation(tmp_path: Path) -> None:
    noise_folder(tmp_path, 8)
    data = open_folder(tmp_path, image_size=16, val_fraction=0.0)
    seen: list[int] = []
    for x, y in data.batches("train", 5, train=True, generator=torch.Generator().manual_seed(0)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (len(y), 3, 16, 16) and x.is_contiguous()
        pixels = raw(data, x)
        assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
        seen += y.tolist()
    assert sorted(seen) == sorted(data._files["train"].labels.tolist())  # each sample once
    # augmentation differs between passes, the eval view does not
    first = next(data.batches("train", 24, train=True, generator=torch.Generator().manual_seed(1)))
    second = next(data.batches("train", 24, train=True, generator=torch.Generator().manual_seed(2)))
    assert not torch.equal(first[0], second[0])
    evals = [torch.cat([x for x, _ in data.batches("train", 10)]) for _ in range(2)]
    assert torch.equal(evals[0], evals[1])
    # imagefolder normalises with its training split's own statistics (all of its few images
    # are sampled): the evaluation views of train/ come out with zero mean and unit std
    assert data.mean != IMAGENET_MEAN and data.std != IMAGENET_STD
    per_channel = evals[0].transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3), atol=1e-3)
    assert torch.allclose(per_channel.std(1), torch.ones(3), atol=1e-2)


def test_a_seed_gives_the_same_batches_with_any_worker_count(tmp_path: Path) -> None:
    noise_folder(tmp_path, 6)
    inline = open_folder(tmp_path, image_size=12, workers=0)
    pooled = open_folder(tmp_path, image_size=12, workers=2)

    def passes(data: ImageFolderData) -> list[tuple[torch.Tensor, torch.Tensor]]:
        generator = torch.Generator().manual_seed(7)
        train = list(data.batches("train", 4, train=True, generator=generator))
        return train + list(data.batches("val", 3)) + list(data.batches("test", 5))

    state = torch.get_rng_state()
    first, second = passes(inline), passes(pooled)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is left alone
    assert len(first) == len(second)
    for (xa, ya), (xb, yb) in zip(first, second, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    again = passes(pooled)  # the persistent workers serve a second round identically
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    pooled.close()


def test_nested_and_abandoned_passes(tmp_path: Path) -> None:
    solid_folder(tmp_path, {"train": 6, "test": 2})
    data = open_folder(tmp_path, image_size=4, val_fraction=0.0, workers=1)
    expected = eval_ids(data, "test")
    outer = data.batches("train", 4, train=True, generator=torch.Generator().manual_seed(0))
    labels = next(outer)[1].tolist()
    assert eval_ids(data, "test") == expected  # a second pass while the first is open
    labels += [label for _, batch in outer for label in batch.tolist()]
    assert sorted(labels) == [0] * 6 + [1] * 6 + [2] * 6
    next(data.batches("train", 4, train=True))  # abandoned after one batch
    assert eval_ids(data, "test") == expected
    data.close()


# --- errors --------------------------------------------------------------------------------


def one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_root_and_missing_train(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagefolder", data_dir=tmp_path / "nowhere")
    assert "nowhere" in one_line(info) and "does not exist" in str(info.value)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagefolder")
    assert "`data_dir`" in one_line(info)
    (tmp_path / "val" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagefolder", data_dir=tmp_path)
    assert "no train/ folder" in one_line(info)


def test_empty_class_loose_images_and_unknown_classes(tmp_path: Path) -> None:
    solid_folder(tmp_path, {"train": 2})
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "train" / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagefolder", data_dir=tmp_path)
    assert "empty" in one_line(info) and "holds no images" in str(info.value)
    (tmp_path / "train" / "empty" / "notes.txt").unlink()
    (tmp_path / "train" / "empty").rmdir()

    (tmp_path / "val" / "dog").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(tmp_path / "val" / "dog" / "0.png")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagefolder", data_dir=tmp_path)
    assert "'dog'" in one_line(info) and "train/ lacks" in str(info.value)

    flat = tmp_path / "flat" / "train"
    flat.mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(flat / "0.png")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagefolder", data_dir=tmp_path / "flat")
    assert "no class folders" in one_line(info) and "1 images lie directly" in str(info.value)


@pytest.mark.parametrize("workers", [0, 1])
def test_corrupt_image_names_the_file(tmp_path: Path, workers: int) -> None:
    solid_folder(tmp_path, {"train": 3, "test": 1})
    (tmp_path / "train" / "cat" / "002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    data = open_folder(tmp_path, image_size=4, val_fraction=0.0, workers=workers)
    with pytest.raises(DatasetNotFoundError) as info:
        for _ in data.batches("train", 4):
            pass
    assert "002.png" in one_line(info) and "delete or replace" in str(info.value)
    assert len(eval_ids(data, "test")) == 3  # the loader still works afterwards


def test_corrupt_probe_image(tmp_path: Path) -> None:
    solid_folder(tmp_path, {"train": 1})
    (tmp_path / "train" / "ant" / "000.png").write_bytes(b"garbage")
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("imagefolder", data_dir=tmp_path)
    assert "000.png" in one_line(info)


def test_options_for_in_memory_datasets() -> None:
    digits = load_dataset("digits", workers=3, image_size=8)  # workers ignored, size matches
    assert digits.image_size == 8 and digits.num_examples("test") == 359
    with pytest.raises(ConfigError, match="drop `image_size`"):
        load_dataset("digits", image_size=16)
    with pytest.raises(ConfigError):
        load_dataset("digits", workers=-1)


def test_bad_split_and_batch_size(tmp_path: Path) -> None:
    solid_folder(tmp_path, {"train": 2})
    data = open_folder(tmp_path, image_size=4)
    with pytest.raises(ConfigError):
        data.num_examples("holdout")
    with pytest.raises(ConfigError):
        next(data.batches("train", 0))
    assert math.isclose(sum(data.num_examples(s) for s in ("train", "val", "test")), 6)


def test_data_config_keys_follow_folder_content(tmp_path: Path) -> None:
    """Two different folders used as `imagefolder` must not share a baseline cache or study."""
    from autoprune.config import DataConfig, config_key

    solid_folder(tmp_path / "a", {"train": 10, "val": 1})
    solid_folder(tmp_path / "b", {"train": 9, "val": 1})
    a = DataConfig.of(open_folder(tmp_path / "a"), "imagefolder")
    b = DataConfig.of(open_folder(tmp_path / "b"), "imagefolder")
    assert a.content and config_key(a) != config_key(b)
    # in-memory datasets keep the cache keys they always had
    assert "content" not in DataConfig("digits").key_dict()
