"""Throughput (images/s) of the streaming image-folder loader for several worker counts.

What it measures: wall-clock time of whole passes of ``ImageFolderData.batches`` over the
training split -- decoding with Pillow, the crop/resize/flip, collation, and normalisation in
the main process -- with no model. ``train`` passes use the augmentation (random resized
crop + flip), ``eval`` passes the resize + centre crop.

How it runs: ``--per-class`` images of each class of ``DATA_DIR/train`` are linked into a
temporary image folder (so any image folder, e.g. the extracted CIFAR-10 JPEGs, can be
subset). One dataset per worker count is opened and warmed up by one untimed pass (which
also starts its persistent workers). Then each of ``--repeats`` rounds times one pass of
every configuration in turn, so slow phases of a shared machine hit all of them alike.

How to read it: ``median`` images/s over the rounds (``min``/``max`` show the spread).
Compare rows of the same run only; the CPU count and load average are printed with them.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from autoprune.data import ImageFolderData, load_dataset


def link_subset(source: Path, target: Path, per_class: int) -> int:
    """Symlink the first ``per_class`` images (sorted) of each ``source/train`` class."""
    count = 0
    for class_dir in sorted(p for p in (source / "train").iterdir() if p.is_dir()):
        out = target / "train" / class_dir.name
        out.mkdir(parents=True)
        for image in sorted(class_dir.iterdir())[:per_class]:
            (out / image.name).symlink_to(image.resolve())
            count += 1
    return count


def one_pass(data: ImageFolderData, train: bool, batch_size: int, seed: int) -> float:
    """Images per second of one full pass over the training split."""
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    seen = 0
    for images, _ in data.batches("train", batch_size, train=train, generator=generator):
        seen += images.shape[0]
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="image folder with train/<class>/ images")
    parser.add_argument("--per-class", type=int, default=500)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)  # the main process normalises; leave the cores to the workers

    with tempfile.TemporaryDirectory() as folder:
        count = link_subset(args.data_dir, Path(folder), args.per_class)
        datasets = {
            workers: load_dataset(
                "imagefolder",
                data_dir=folder,
                val_fraction=0.0,
                workers=workers,
                image_size=args.image_size,
            )
            for workers in args.workers
        }
        modes = {"train": True, "eval": False}
        rates: dict[tuple[str, int], list[float]] = {}
        for data in datasets.values():  # warm-up: start workers, fill the page cache
            for train in modes.values():
                one_pass(data, train, args.batch_size, seed=0)
        for round_index in range(args.repeats):
            for mode, train in modes.items():
                for workers, data in datasets.items():
                    rate = one_pass(data, train, args.batch_size, seed=round_index + 1)
                    rates.setdefault((mode, workers), []).append(rate)
        for data in datasets.values():
            assert isinstance(data, ImageFolderData)
            data.close()

    print(
        f"{count} images of {args.data_dir} at {args.image_size}x{args.image_size}, batch "
        f"{args.batch_size}, {os.cpu_count()} CPUs, load average "
        f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )
    print(f"{'mode':6} {'workers':>7} {'median':>8} {'min':>8} {'max':>8}  images/s")
    for (mode, workers), values in rates.items():
        print(
            f"{mode:6} {workers:7d} {statistics.median(values):8.0f} {min(values):8.0f} "
            f"{max(values):8.0f}"
        )


if __name__ == "__main__":
    main()
