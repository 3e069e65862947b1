"""Dataset loaders, splitting, normalisation and batching; every file is made in tmp_path."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autoprune.data import (
    DATASETS,
    DataSplits,
    ImageArrays,
    ImageData,
    base,
    cifar10,
    default_data_dir,
    fashion_mnist,
    load_dataset,
)
from autoprune.errors import ConfigError, DatasetNotFoundError


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test may see the machine's datasets, caches or environment."""
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOPRUNE_DATA_DIR", raising=False)
    monkeypatch.delenv("AUTOPRUNE_DOWNLOAD", raising=False)
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "no-debian")


def raw_pixels(splits: DataSplits, x: torch.Tensor) -> torch.Tensor:
    """Undo the normalisation: back to the uint8 pixels the loader produced."""
    mean = torch.tensor(splits.mean).view(1, -1, 1, 1)
    std = torch.tensor(splits.std).view(1, -1, 1, 1)
    return ((x.double() * std + mean) * 255).round().to(torch.uint8)


# --- Fashion-MNIST IDX files -----------------------------------------------------------------


def write_idx(path: Path, array: np.ndarray, *, gz: bool = True) -> None:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(
        int(size).to_bytes(4, "big") for size in array.shape
    )
    data = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def unique_images(count: int, size: int, channels: int, seed: int) -> np.ndarray:
    """Random images whose first two pixels spell their index, so every one is distinct."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, channels, size, size), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(count) % 256
    images[:, 0, 0, 1] = np.arange(count) // 256
    return images


def make_fashion(directory: Path, *, gz: bool = True, n_train: int = 40, n_test: int = 10):
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    arrays = {
        "train-images-idx3-ubyte": unique_images(n_train, 28, 1, 0)[:, 0],
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": unique_images(n_test, 28, 1, 1)[:, 0],
        "t10k-labels-idx1-ubyte": np.arange(n_test) % 10,
    }
    for stem, array in arrays.items():
        write_idx(directory / f"{stem}{suffix}", array, gz=gz)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("subdir", ["", "fashion-mnist"])
def test_fashion_mnist_idx_round_trip(tmp_path: Path, gz: bool, subdir: str) -> None:
    arrays = make_fashion(tmp_path / "data" / subdir, gz=gz)
    splits = load_dataset("fashion-mnist", data_dir=tmp_path / "data", val_fraction=0.25)
    assert (splits.num_classes, splits.in_channels, splits.image_size) == (10, 1, 28)
    assert splits.flip and splits.crop_padding == 2
    assert splits.train_x.shape == (30, 1, 28, 28) and splits.val_x.shape == (10, 1, 28, 28)
    assert splits.test_x.dtype == torch.float32 and splits.test_y.dtype == torch.int64
    assert torch.equal(
        raw_pixels(splits, splits.test_x)[:, 0], torch.from_numpy(arrays["t10k-images-idx3-ubyte"])
    )
    assert splits.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    # train and val are disjoint and together are the whole training set, labels kept
    seen = torch.cat([raw_pixels(splits, splits.train_x), raw_pixels(splits, splits.val_x)])
    index = seen[:, 0, 0, 0].long() + 256 * seen[:, 0, 0, 1].long()
    assert sorted(index.tolist()) == list(range(40))
    assert torch.equal(torch.cat([splits.train_y, splits.val_y]), index % 10)
    assert torch.bincount(splits.val_y).tolist() == [1] * 10  # stratified


def test_fashion_mnist_debian_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fashion(tmp_path / "debian")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    assert load_dataset("fashion-mnist", val_fraction=0.0).train_x.shape[0] == 40


@pytest.mark.parametrize("given", ["missing", "empty"])
def test_a_given_data_dir_is_never_replaced_by_debian(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    make_fashion(tmp_path / "debian")
    monkeypatch.setattr(fashion_mnist, "DEBIAN_DIR", tmp_path / "debian")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path / given)
    message = str(info.value)
    assert str(tmp_path / given) in message and "\n" not in message
    assert ("does not exist" in message) == (given == "missing")


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: len(raw) // 2],  # truncated gzip stream
        lambda raw: gzip.compress(gzip.decompress(raw)[:-5]),  # too few data bytes
        lambda raw: gzip.compress(b"\x00\x00\x08\x01" + gzip.decompress(raw)[4:]),  # magic
    ],
)
def test_corrupt_idx_names_the_file(tmp_path: Path, damage) -> None:
    make_fashion(tmp_path)
    target = tmp_path / "train-images-idx3-ubyte.gz"
    target.write_bytes(damage(target.read_bytes()))
    with pytest.raises(DatasetNotFoundError, match=r"train-images-idx3-ubyte\.gz"):
        load_dataset("fashion-mnist", data_dir=tmp_path)


def test_missing_fashion_mnist_explains_the_fix(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("fashion-mnist", data_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert "nowhere" in message and "no-debian" in message and "\n" not in message
    assert "`data_dir`" in message and "apt-get install dataset-fashion-mnist" in message


# --- digits ----------------------------------------------------------------------------------


def test_digits_shapes_and_fixed_split() -> None:
    first = load_dataset("digits", seed=3, val_fraction=0.1)
    assert first.name == "digits" and first.classes == tuple("0123456789")
    assert (first.num_classes, first.in_channels, first.image_size) == (10, 1, 8)
    assert not first.flip and first.crop_padding == 1
    assert first.test_x.shape == (359, 1, 8, 8)  # a fixed stratified 20 % of 1,797
    assert first.train_x.shape[0] + first.val_x.shape[0] == 1797 - 359
    assert first.train_x.dtype == torch.float32 and first.train_y.dtype == torch.int64
    again = load_dataset("digits", seed=3, val_fraction=0.1)
    other = load_dataset("digits", seed=4, val_fraction=0.1)
    for split in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, split), getattr(again, split))
    assert not torch.equal(first.val_y, other.val_y) or not torch.equal(first.val_x, other.val_x)
    assert torch.equal(raw_pixels(first, first.test_x), raw_pixels(other, other.test_x))
    raw = DATASETS.get("digits")(None)
    assert raw.train_images.dtype == torch.uint8 and int(raw.train_images.max()) == 255


def test_stratified_split_is_disjoint_and_seeded() -> None:
    labels = torch.arange(103) % 7
    rest, part = base.stratified_split(labels, 0.2, torch.Generator().manual_seed(5))
    again, _ = base.stratified_split(labels, 0.2, torch.Generator().manual_seed(5))
    assert torch.equal(rest, again)
    assert sorted(torch.cat([rest, part]).tolist()) == list(range(103))
    assert torch.bincount(labels[part]).tolist() == [3] * 7


def test_max_train_and_bad_options() -> None:
    assert load_dataset("digits", max_train=50).train_x.shape[0] == 50
    with pytest.raises(ConfigError):
        load_dataset("digits", val_fraction=1.0)
    with pytest.raises(ConfigError, match="digits"):
        load_dataset("digitz")


def test_default_data_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert default_data_dir() is None
    monkeypatch.setenv("AUTOPRUNE_DATA_DIR", str(tmp_path))
    assert default_data_dir() == tmp_path
    make_fashion(tmp_path)
    assert load_dataset("fashion-mnist").test_x.shape[0] == 10


# --- CIFAR-10 --------------------------------------------------------------------------------

CLASS_NAMES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]


def make_pickles(directory: Path, per_batch: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The python batches in their true format (Python 2 byte keys); returns train arrays."""
    directory.mkdir(parents=True, exist_ok=True)
    images = unique_images(6 * per_batch, 32, 3, 2)
    labels = np.arange(6 * per_batch) % 10
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        part = slice(i * per_batch, (i + 1) * per_batch)
        batch = {b"data": images[part].reshape(per_batch, -1), b"labels": labels[part].tolist()}
        (directory / name).write_bytes(pickle.dumps(batch, protocol=2))
    meta = {b"label_names": [name.encode() for name in CLASS_NAMES]}
    (directory / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return images, labels


def make_tree(root: Path) -> dict[tuple[str, str, str], np.ndarray]:
    """A PNG image-folder tree with classes out of order; returns the pixels written."""
    from PIL import Image

    written = {}
    rng = np.random.default_rng(7)
    for split, count in (("train", 2), ("test", 1)):
        for label in ("frog", "cat", "ship"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i:04d}.png")
                written[(split, label, f"{i:04d}")] = pixels
    return written


def make_tarball(source: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(source, arcname=source.name)
    return archive


def test_cifar_pickle_batches(tmp_path: Path) -> None:
    images, labels = make_pickles(tmp_path / "cifar-10-batches-py")
    raw = cifar10.load_cifar10(tmp_path)
    assert raw.classes == tuple(CLASS_NAMES) and raw.flip and raw.crop_padding == 4
    assert torch.equal(raw.train_images, torch.from_numpy(images[:15]))
    assert torch.equal(raw.test_images, torch.from_numpy(images[15:]))
    assert raw.train_labels.tolist() == labels[:15].tolist()
    splits = load_dataset("cifar10", data_dir=tmp_path, val_fraction=0.0)
    assert splits.train_x.shape == (15, 3, 32, 32) and splits.in_channels == 3
    # normalisation statistics come from the training split: zero mean, unit std there
    assert splits.train_x.mean(dim=(0, 2, 3)).abs().max() < 1e-5
    assert (splits.train_x.std(dim=(0, 2, 3)) - 1).abs().max() < 1e-2


def test_cifar_image_folders_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    written = make_tree(tmp_path / "data" / "cifar10-png")  # nested one level
    raw = cifar10.load_cifar10(tmp_path / "data")
    assert raw.classes == ("cat", "frog", "ship")
    assert raw.train_labels.tolist() == [0, 0, 1, 1, 2, 2] and raw.test_labels.tolist() == [0, 1, 2]
    expected = np.stack(
        [written[("train", label, f"{i:04d}")] for label in raw.classes for i in (0, 1)]
    )
    assert torch.equal(raw.train_images, torch.from_numpy(expected.transpose(0, 3, 1, 2)))
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npz"))) == 1

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    decode = cifar10._decode_all
    monkeypatch.setattr(cifar10, "_decode_all", no_decoding)
    cached = cifar10.load_cifar10(tmp_path / "data")
    assert torch.equal(cached.train_images, raw.train_images) and cached.classes == raw.classes
    monkeypatch.setattr(cifar10, "_decode_all", decode)

    from_tar = make_tarball(tmp_path / "data" / "cifar10-png", tmp_path / "cifar10-png.tar.gz")
    for source in (from_tar, tmp_path):  # the file itself, or a folder holding it
        packed = cifar10.load_cifar10(source)
        assert torch.equal(packed.train_images, raw.train_images)
        assert torch.equal(packed.test_labels, raw.test_labels)


def test_cifar_pickle_tarball(tmp_path: Path) -> None:
    images, _ = make_pickles(tmp_path / "src" / "cifar-10-batches-py")
    archive = make_tarball(
        tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz"
    )
    raw = cifar10.load_cifar10(archive)
    assert torch.equal(raw.test_images, torch.from_numpy(images[15:]))


def test_cifar_missing_explains_layouts_and_download(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError) as info:
        load_dataset("cifar10", data_dir=tmp_path / "empty")
    message = str(info.value)
    assert "cifar-10-batches-py" in message and "train/<class>" in message
    assert "AUTOPRUNE_DOWNLOAD=1" in message and "\n" not in message


def test_cifar_download_from_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images, _ = make_pickles(tmp_path / "src" / "cifar-10-batches-py", per_batch=2)
    archive = make_tarball(
        tmp_path / "src" / "cifar-10-batches-py", tmp_path / "cifar-10-python.tar.gz"
    )
    url, md5 = archive.as_uri(), hashlib.md5(archive.read_bytes()).hexdigest()

    with pytest.raises(DatasetNotFoundError, match="md5"):
        cifar10.download_cifar10(tmp_path / "bad", url=url, md5="0" * 32)
    assert list((tmp_path / "bad").iterdir()) == []  # the corrupt download is not kept

    batches = cifar10.download_cifar10(tmp_path / "good", url=url, md5=md5)
    assert batches == tmp_path / "good" / "cifar-10-batches-py"
    assert torch.equal(
        cifar10.load_cifar10(tmp_path / "good").test_images, torch.from_numpy(images[10:])
    )

    # the loader downloads only when asked, here through the environment
    monkeypatch.setattr(cifar10, "CIFAR10_URL", url)
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", md5)
    with pytest.raises(DatasetNotFoundError):
        load_dataset("cifar10", data_dir=tmp_path / "auto")
    monkeypatch.setenv("AUTOPRUNE_DOWNLOAD", "1")
    splits = load_dataset("cifar10", data_dir=tmp_path / "auto", val_fraction=0.0)
    assert splits.train_x.shape == (10, 3, 32, 32)
    assert (tmp_path / "auto" / "cifar-10-batches-py" / "test_batch").is_file()


# --- batching and augmentation ---------------------------------------------------------------


def toy_splits(*, flip: bool, crop_padding: int, count: int = 64) -> DataSplits:
    """Samples whose label is their index, so a batch can be traced back to its sources."""
    x = torch.randn(count, 2, 6, 6, generator=torch.Generator().manual_seed(0))
    y = torch.arange(count)
    return DataSplits(
        name="toy", train_x=x, train_y=y, val_x=x[:5], val_y=y[:5], test_x=x, test_y=y,
        num_classes=count, in_channels=2, image_size=6, flip=flip, crop_padding=crop_padding,
    )  # fmt: skip


def test_eval_batches_are_the_data_in_order() -> None:
    splits = toy_splits(flip=True, crop_padding=2)
    batches = list(splits.batches("test", 10))
    assert [len(y) for _, y in batches] == [10] * 6 + [4]
    assert torch.equal(torch.cat([x for x, _ in batches]), splits.test_x)
    assert torch.equal(torch.cat([y for _, y in batches]), splits.test_y)
    assert [len(y) for _, y in splits.batches("val", 2)] == [2, 2, 1]
    with pytest.raises(ConfigError):
        next(splits.batches("holdout", 2))


def test_train_batches_flip_some_samples() -> None:
    splits = toy_splits(flip=True, crop_padding=0)
    generator = torch.Generator().manual_seed(1)
    batches = list(splits.batches("train", 16, train=True, generator=generator))
    labels = torch.cat([y for _, y in batches])
    assert sorted(labels.tolist()) == list(range(64)) and labels.tolist() != list(range(64))
    flipped = 0
    for x, y in batches:
        assert x.shape == (len(y), 2, 6, 6)
        for image, label in zip(x, y, strict=True):
            source = splits.train_x[label]
            is_flipped = torch.equal(image, source.flip(-1))
            assert is_flipped or torch.equal(image, source)
            flipped += is_flipped
    assert 0 < flipped < 64
    again = list(
        splits.batches("train", 16, train=True, generator=torch.Generator().manual_seed(1))
    )
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again, strict=True))


def test_train_batches_crop_shifts_content() -> None:
    padding = 2
    splits = toy_splits(flip=False, crop_padding=padding)
    generator = torch.Generator().manual_seed(2)
    shifted = 0
    for x, y in splits.batches("train", 64, train=True, generator=generator):
        assert x.shape == splits.train_x.shape
        for image, label in zip(x, y, strict=True):
            padded = F.pad(splits.train_x[label], (padding,) * 4)
            windows = [
                (top, left)
                for top in range(2 * padding + 1)
                for left in range(2 * padding + 1)
                if torch.equal(image, padded[:, top : top + 6, left : left + 6])
            ]
            assert windows, "every output must be a window of the zero-padded source"
            shifted += windows != [(padding, padding)]
    assert shifted > 32  # 24 of the 25 windows are shifts


def test_image_arrays_rejects_bad_loader_output() -> None:
    good = torch.zeros(2, 1, 4, 4, dtype=torch.uint8)
    labels = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        ImageArrays(good.float(), labels, good, labels, ("a",), False, 0)
    with pytest.raises(ValueError, match="labels"):
        ImageArrays(good, labels + 3, good, labels, ("a",), False, 0)


def test_num_examples_and_protocol() -> None:
    splits = toy_splits(flip=False, crop_padding=0, count=20)
    assert isinstance(splits, ImageData)
    assert [splits.num_examples(s) for s in ("train", "val", "test")] == [20, 5, 20]
    with pytest.raises(ConfigError):
        splits.num_examples("holdout")
