"""CIFAR-10 from any of the usual layouts, decoded once and cached.

Accepted under ``data_dir`` (or one folder level below it, or ``data_dir`` itself):

* the python pickle batches ``cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}``;
* an image-folder tree ``train/<class>/*.png|jpg`` and ``test/<class>/*``;
* a ``.tar.gz`` of either layout (a file whose name contains "cifar", or ``data_dir`` itself).

Archives are read as a stream rather than unpacked: the members are decoded straight from
the tarball, which is several times faster than writing 60,000 small files to disk first.
Decoded image folders and archives are cached as ``.npz`` under the cache directory, keyed
by the source path, size and modification time, so only the first load pays for decoding.
Nothing is downloaded unless asked: ``AUTOPRUNE_DOWNLOAD=1`` or ``download=True``.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import os
import pickle
import shutil
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from autoprune.data.base import ImageArrays, default_cache_dir, register_dataset
from autoprune.errors import DatasetNotFoundError

logger = logging.getLogger(__name__)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
DOWNLOAD_ENV = "AUTOPRUNE_DOWNLOAD"
PICKLE_DIR = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
IMAGE_SIZE = 32
CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CACHE_VERSION = 1  # bump when the cached layout changes, so stale caches are ignored

ImageSource = bytes | Path
ImageEntry = tuple[str, str, str, ImageSource]
"""``(split, class name, file name, encoded bytes or path)`` of one image in a tree."""


def _arrays(
    train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray], classes: tuple
) -> ImageArrays:
    return ImageArrays(
        train_images=torch.from_numpy(np.ascontiguousarray(train[0])),
        train_labels=torch.from_numpy(train[1].astype(np.int64)),
        test_images=torch.from_numpy(np.ascontiguousarray(test[0])),
        test_labels=torch.from_numpy(test[1].astype(np.int64)),
        classes=tuple(str(name) for name in classes),
        flip=True,
        crop_padding=4,
    )


# --- python pickle batches -------------------------------------------------------------------


def _field(batch: dict, name: str) -> object:
    """A batch's entry, whether it was pickled with str keys or (Python 2) byte keys."""
    for key in (name, name.encode()):
        if key in batch:
            return batch[key]
    raise KeyError(name)


# The only callables a CIFAR batch pickle refers to: numpy's array and dtype reconstruction
# (and ``_codecs.encode``, which Python 3 uses for bytes at protocol 2). Anything else in a
# file (os.system, builtins.eval, ...) is refused before it can run.
_ARRAY_RECONSTRUCT = np.zeros(1).__reduce__()[0]
_ARRAY_FROM_BUFFER = np.zeros(1).__reduce_ex__(5)[0]  # protocol 5's array rebuilder
_ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): _ARRAY_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _ARRAY_RECONSTRUCT,
    ("numpy.core.numeric", "_frombuffer"): _ARRAY_FROM_BUFFER,
    ("numpy._core.numeric", "_frombuffer"): _ARRAY_FROM_BUFFER,
    ("_codecs", "encode"): codecs.encode,
}


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles plain data (dicts, lists, bytes, strings, numbers) and numpy arrays only."""

    def find_class(self, module: str, name: str) -> object:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"refused {module}.{name}: not part of a CIFAR batch")
        return allowed


def _unpickle(data: bytes, source: str) -> dict:
    """A batch file's dictionary, read by a restricted unpickler: a crafted file runs no code."""
    try:
        batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure means the same thing to the user
        raise DatasetNotFoundError(
            f"cifar10 batch {source} is unreadable ({exc}): replace it with the official file"
        ) from exc
    if not isinstance(batch, dict):
        raise DatasetNotFoundError(f"cifar10 batch {source} is not a CIFAR batch dictionary")
    return batch


def _batch_arrays(data: bytes, source: str) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(data, source)
    try:
        pixels = np.asarray(_field(batch, "data"), dtype=np.uint8)
        labels = np.asarray(_field(batch, "labels"), dtype=np.int64)
    except KeyError as exc:
        raise DatasetNotFoundError(f"cifar10 batch {source} has no {exc} entry") from exc
    if pixels.ndim != 2 or pixels.shape[1] != 3 * IMAGE_SIZE * IMAGE_SIZE:
        raise DatasetNotFoundError(f"cifar10 batch {source} holds data of shape {pixels.shape}")
    if labels.shape != pixels.shape[:1]:
        raise DatasetNotFoundError(f"cifar10 batch {source}: label and image counts differ")
    return pixels.reshape(-1, 3, IMAGE_SIZE, IMAGE_SIZE), labels


def _from_batches(read: Callable[[str], bytes | None], where: str) -> ImageArrays:
    """Assemble the arrays from the batch files; ``read(name)`` gives bytes or None if absent."""
    blobs = {name: read(name) for name in (*TRAIN_BATCHES, TEST_BATCH)}
    missing = [name for name, blob in blobs.items() if blob is None]
    if missing:
        raise DatasetNotFoundError(f"cifar10 batches in {where} are incomplete: missing {missing}")
    parts = [_batch_arrays(blobs[name], f"{where}/{name}") for name in TRAIN_BATCHES]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = _batch_arrays(blobs[TEST_BATCH], f"{where}/{TEST_BATCH}")
    classes: tuple = CLASSES
    meta = read(META)
    if meta is not None:
        names = _field(_unpickle(meta, f"{where}/{META}"), "label_names")
        classes = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)
    return _arrays(train, test, classes)


def _pickle_dir(directory: Path) -> Path | None:
    for candidate in (directory / PICKLE_DIR, directory):
        if (candidate / TRAIN_BATCHES[0]).is_file() or (candidate / TEST_BATCH).is_file():
            return candidate
    return None


def _load_pickle_dir(directory: Path) -> ImageArrays:
    def read(name: str) -> bytes | None:
        path = directory / name
        return path.read_bytes() if path.is_file() else None

    logger.info("cifar10: reading pickle batches from %s", directory)
    return _from_batches(read, str(directory))


# --- image folders ---------------------------------------------------------------------------


def _decode_all(entries: list[ImageEntry]) -> np.ndarray:
    """Decode every image to ``N x 32 x 32 x 3`` uint8 in threads (Pillow releases the GIL)."""
    from PIL import Image  # lazy: only image folders need Pillow

    out = np.empty((len(entries), IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.uint8)

    def decode_range(start: int, stop: int) -> None:
        for i in range(start, stop):
            split, label, name, source = entries[i]
            where = f"{split}/{label}/{name}"
            try:
                data = source.read_bytes() if isinstance(source, Path) else source
                with Image.open(io.BytesIO(data)) as image:
                    pixels = np.asarray(image.convert("RGB"))
            except (OSError, ValueError) as exc:
                raise DatasetNotFoundError(
                    f"cifar10 image {where} cannot be decoded: {exc}"
                ) from exc
            if pixels.shape != out.shape[1:]:
                raise DatasetNotFoundError(
                    f"cifar10 image {where} is {pixels.shape[1]}x{pixels.shape[0]}, expected 32x32"
                )
            out[i] = pixels

    step = 2048
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        jobs = [
            pool.submit(decode_range, start, min(start + step, len(entries)))
            for start in range(0, len(entries), step)
        ]
        for job in jobs:
            job.result()
    return out


def _from_images(entries: list[ImageEntry], where: str) -> ImageArrays:
    """Labels from the sorted class folder names of the training split."""
    train = sorted((e for e in entries if e[0] == "train"), key=lambda e: (e[1], e[2]))
    test = sorted((e for e in entries if e[0] == "test"), key=lambda e: (e[1], e[2]))
    if not train or not test:
        raise DatasetNotFoundError(
            f"cifar10 image folders in {where} need images in both train/<class>/ and test/<class>/"
        )
    classes = tuple(sorted({e[1] for e in train}))
    unknown = sorted({e[1] for e in test} - set(classes))
    if unknown:
        raise DatasetNotFoundError(f"cifar10 test classes {unknown} in {where} are not in train/")
    index = {name: i for i, name in enumerate(classes)}
    logger.info("cifar10: decoding %d images from %s (cached afterwards)", len(entries), where)
    arrays = []
    for split in (train, test):
        images = _decode_all(split).transpose(0, 3, 1, 2)
        arrays.append((images, np.array([index[e[1]] for e in split], dtype=np.int64)))
    return _arrays(arrays[0], arrays[1], classes)


def _is_image(name: str) -> bool:
    return not name.startswith(".") and PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES


def _image_tree(directory: Path) -> bool:
    return (directory / "train").is_dir() and (directory / "test").is_dir()


def _walk_tree(directory: Path) -> tuple[list[ImageEntry], str]:
    """The image files under train/ and test/, and a fingerprint of their sizes and times."""
    entries: list[ImageEntry] = []
    total, newest = 0, 0
    for split in ("train", "test"):
        for class_dir in os.scandir(directory / split):
            if not class_dir.is_dir() or class_dir.name.startswith("."):
                continue
            for item in os.scandir(class_dir.path):
                if item.is_file() and _is_image(item.name):
                    stat = item.stat()
                    total += stat.st_size
                    newest = max(newest, stat.st_mtime_ns)
                    entries.append((split, class_dir.name, item.name, Path(item.path)))
    return entries, f"{len(entries)}-{total}-{newest}"


def _load_image_tree(directory: Path) -> ImageArrays:
    entries, fingerprint = _walk_tree(directory)
    return _cached(directory, fingerprint, lambda: _from_images(entries, str(directory)))


# --- archives --------------------------------------------------------------------------------


def _is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _scan_archive(path: Path) -> ImageArrays:
    """Read either layout straight out of a tarball, without unpacking it to disk."""
    batches: dict[str, bytes] = {}
    images: list[ImageEntry] = []
    wanted = {*TRAIN_BATCHES, TEST_BATCH, META}
    logger.info("cifar10: reading archive %s", path)
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                parts = PurePosixPath(member.name).parts
                is_image = len(parts) >= 3 and parts[-3] in ("train", "test")
                if parts[-1] in wanted or (is_image and _is_image(parts[-1])):
                    stream = tar.extractfile(member)
                    data = stream.read() if stream is not None else b""
                    if parts[-1] in wanted:
                        batches[parts[-1]] = data
                    else:
                        images.append((parts[-3], parts[-2], parts[-1], data))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetNotFoundError(f"cifar10 archive {path} is unreadable ({exc})") from exc
    if TEST_BATCH in batches or TRAIN_BATCHES[0] in batches:
        return _from_batches(batches.get, str(path))
    if images:
        return _from_images(images, str(path))
    raise DatasetNotFoundError(
        f"cifar10 archive {path} holds neither {PICKLE_DIR}/ batches nor train/<class>/ images"
    )


def _load_archive(path: Path) -> ImageArrays:
    stat = path.stat()
    return _cached(path, f"{stat.st_size}-{stat.st_mtime_ns}", lambda: _scan_archive(path))


# --- decoded cache ---------------------------------------------------------------------------


def _cache_file(source: Path, fingerprint: str) -> Path:
    key = f"{CACHE_VERSION}|{source.resolve()}|{fingerprint}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return default_cache_dir() / "decoded" / f"cifar10-{source.name}-{digest}.npz"


def _cached(source: Path, fingerprint: str, build: Callable[[], ImageArrays]) -> ImageArrays:
    """Arrays from the ``.npz`` cache for this exact source version, else built and cached."""
    path = _cache_file(source, fingerprint)
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = _arrays(
                    (npz["train_images"], npz["train_labels"]),
                    (npz["test_images"], npz["test_labels"]),
                    tuple(npz["classes"].tolist()),
                )
            logger.info("cifar10: loaded decoded cache %s", path)
            return arrays
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            logger.warning("cifar10: ignoring unreadable cache %s (%s)", path, exc)
    arrays = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")
        with open(partial, "wb") as handle:
            np.savez(
                handle,
                train_images=arrays.train_images.numpy(),
                train_labels=arrays.train_labels.numpy(),
                test_images=arrays.test_images.numpy(),
                test_labels=arrays.test_labels.numpy(),
                classes=np.array(arrays.classes),
            )
        os.replace(partial, path)  # atomic: a concurrent reader never sees half a file
        logger.info("cifar10: cached decoded arrays in %s", path)
    except OSError as exc:
        logger.warning("cifar10: could not write cache %s (%s)", path, exc)
    return arrays


# --- download --------------------------------------------------------------------------------


def _safe_members(tar: tarfile.TarFile, root: Path) -> Iterator[tarfile.TarInfo]:
    """Only plain files and folders that stay inside ``root`` (for Pythons without filters)."""
    base = root.resolve()
    for member in tar:
        target = (base / member.name).resolve()
        if (member.isfile() or member.isdir()) and target.is_relative_to(base):
            yield member


def _extract(archive: Path, root: Path) -> None:
    with tarfile.open(archive, "r:*") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, filter="data")
        else:  # pragma: no cover - Python releases before the extraction filters
            tar.extractall(root, members=_safe_members(tar, root))


def download_cifar10(root: Path, url: str = CIFAR10_URL, md5: str = CIFAR10_MD5) -> Path:
    """Download the python tarball into ``root``, check its md5, unpack it; return the batches.

    Does nothing when ``root`` already holds the batches. The tarball is removed once
    unpacked; a download with the wrong checksum is deleted and reported.
    """
    root = Path(root)
    target = root / PICKLE_DIR
    if (target / TEST_BATCH).is_file():
        return target
    root.mkdir(parents=True, exist_ok=True)
    archive = root / (PurePosixPath(urllib.parse.urlparse(url).path).name or "cifar-10.tar.gz")
    partial = archive.with_name(f"{archive.name}.part")
    digest = hashlib.md5(usedforsecurity=False)
    logger.info("cifar10: downloading %s into %s", url, root)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, "wb") as out:
            while chunk := response.read(1 << 20):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        partial.unlink(missing_ok=True)
        raise DatasetNotFoundError(f"could not download cifar10 from {url}: {exc}") from exc
    if digest.hexdigest() != md5.lower():
        partial.unlink(missing_ok=True)
        raise DatasetNotFoundError(
            f"cifar10 download from {url} has md5 {digest.hexdigest()}, expected {md5}: "
            "the file is corrupt or not the CIFAR-10 archive; try again"
        )
    os.replace(partial, archive)
    try:
        _extract(archive, root)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetNotFoundError(f"cifar10 archive {archive} cannot be unpacked: {exc}") from exc
    finally:
        archive.unlink(missing_ok=True)
    if not (target / TEST_BATCH).is_file():
        shutil.rmtree(target, ignore_errors=True)
        raise DatasetNotFoundError(f"cifar10 archive from {url} holds no {PICKLE_DIR}/{TEST_BATCH}")
    return target


# --- the loader ------------------------------------------------------------------------------


def find_cifar10(root: Path) -> ImageArrays | None:
    """Load from the first layout found at ``root`` (see the module docstring), else None."""
    if root.is_file():
        return _load_archive(root) if _is_archive(root) else None
    if not root.is_dir():
        return None
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    for candidate in (root, *subdirs):
        batches = _pickle_dir(candidate)
        if batches is not None:
            return _load_pickle_dir(batches)
        if _image_tree(candidate):
            return _load_image_tree(candidate)
    archives = sorted(p for p in root.iterdir() if _is_archive(p) and "cifar" in p.name.lower())
    return _load_archive(archives[0]) if archives else None


def _download_requested() -> bool:
    return os.environ.get(DOWNLOAD_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


@register_dataset("cifar10")
def load_cifar10(data_dir: Path | None = None, *, download: bool | None = None) -> ImageArrays:
    """50,000 training and 10,000 test 32x32 colour images in 10 classes.

    Without ``data_dir`` the cache directory's ``cifar10/`` folder is searched (where
    downloads go). ``download=None`` defers to ``$AUTOPRUNE_DOWNLOAD``.
    """
    root = data_dir if data_dir is not None else default_cache_dir() / "cifar10"
    arrays = find_cifar10(root)
    if arrays is not None:
        return arrays
    if download is None:
        download = _download_requested()
    if download:
        into = root if not root.is_file() else default_cache_dir() / "cifar10"
        return _load_pickle_dir(download_cifar10(into, url=CIFAR10_URL, md5=CIFAR10_MD5))
    raise DatasetNotFoundError(
        f"cifar10 not found in {root}: pass `data_dir` pointing at a folder with "
        f"{PICKLE_DIR}/ (the python batches), or with train/<class>/*.png|jpg and "
        "test/<class>/* image folders, or at a .tar.gz of either; "
        f"or set {DOWNLOAD_ENV}=1 to download it (about 170 MB) from {CIFAR10_URL}"
    )
