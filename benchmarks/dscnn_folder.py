"""tiny_dscnn on a small grey image folder: new data defaults against the old ImageNet recipe.

What it measures, on a folder built from real images (Fashion-MNIST, IDX gzip files under
``--source``, each image downsampled to ``--size`` px and written as PNG into
``train/<class>/`` and ``test/<class>/`` of a temporary folder):

* baseline test accuracy of ``tiny_dscnn`` (``--bits``) trained ``--epochs`` epochs (seed 0)
  with the new ``imagefolder`` defaults (``light`` augmentation: padded random crop, no flips
  for grey images; evaluation without centre crop; mean/std of the training split) against
  the old ones (random resized crop down to 8 % and flips; 87.5 % centre crop at evaluation;
  ImageNet statistics), same splits, epochs and seed;
* the accuracy of the reloaded checkpoint (``autoprune.load(..., with_preprocess=True)``)
  on the raw test PNGs, through its ``preprocess``: it should equal the pipeline's;
* the share of the quantized size the default search space controls
  (``autoprune.prune.shares``);
* one short joint search from the new baseline (``--trials`` trials, ``--finetune-steps``
  steps each) and its Pareto front.

Writes ``benchmarks/results/dscnn_folder.md`` (``--out``). About 5-10 minutes on 2 shared
CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import autoprune
from autoprune.config import DataConfig, ModelConfig, TrainConfig
from autoprune.data import ImageData, load_dataset
from autoprune.data.folder import ImageFolderData, Recipe
from autoprune.data.transforms import EVAL_RESIZE_RATIO, normalisation
from autoprune.device import tune_cpu_allocator
from autoprune.search import trials_frame
from autoprune.search.coverage import describe_groups
from autoprune.search.objective import FinetuneConfig
from autoprune.search.session import SearchRequest, SearchSession
from autoprune.train import train_checkpoint

CLASSES = (
    "tshirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "boot",
)


def read_idx(path: Path) -> np.ndarray:
    """The array of an IDX file (uint8 images ``N x H x W`` or labels ``N``)."""
    with gzip.open(path) as handle:
        data = handle.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def build_folder(source: Path, root: Path, size: int, per_class: dict[str, int]) -> None:
    """Write the first ``per_class[split]`` images of each class as ``size`` px PNGs."""
    files = {"train": "train", "test": "t10k"}
    for split, stem in files.items():
        images = read_idx(source / f"{stem}-images-idx3-ubyte.gz")
        labels = read_idx(source / f"{stem}-labels-idx1-ubyte.gz")
        for label, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True)
            chosen = np.flatnonzero(labels == label)[: per_class[split]]
            for index in chosen:
                small = Image.fromarray(images[index]).resize((size, size), Image.Resampling.BOX)
                small.save(folder / f"{index:05d}.png")


def train(name: str, data: ImageData, out: Path, epochs: int, bits: int) -> float:
    model_config = ModelConfig.for_data("tiny_dscnn", bits, data)
    started = time.perf_counter()
    result = train_checkpoint(
        out,
        model_config,
        DataConfig.of(data, "imagefolder"),
        TrainConfig(epochs=epochs, seed=0),
        data,
        device=torch.device("cpu"),
        resume="restart",
    )
    print(f"{name}: test {result.test_accuracy:.4f} in {time.perf_counter() - started:.0f} s")
    return result.test_accuracy


def raw_accuracy(checkpoint: Path, root: Path) -> float:
    """Accuracy of the reloaded checkpoint on the raw test PNGs through its preprocess."""
    model, preprocess = autoprune.load(checkpoint, with_preprocess=True)
    correct = total = 0
    for label, name in enumerate(preprocess.classes):
        paths = sorted((root / "test" / name).glob("*.png"))
        images = [Image.open(path) for path in paths]
        with torch.no_grad():
            predicted = model(preprocess(images)).argmax(1)
        correct += int((predicted == label).sum())
        total += len(paths)
    return correct / total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path("/usr/share/datasets/fashion-mnist"))
    parser.add_argument("--size", type=int, default=20)
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--bits", type=int, default=2)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--finetune-steps", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dscnn_folder.md"))
    args = parser.parse_args()
    tune_cpu_allocator()  # as the autoprune command does: glibc keeps activation buffers
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        root = work / "fmnist20"
        per_class = {"train": args.train_per_class, "test": args.test_per_class}
        build_folder(args.source, root, args.size, per_class)
        new = load_dataset("imagefolder", data_dir=root, workers=0)
        old = ImageFolderData(
            name="imagefolder",
            root=new.root,
            classes=new.classes,
            splits=new._files,
            mode=new._samples.mode,
            image_size=new.image_size,
            device=torch.device("cpu"),
            workers=0,
            recipe=Recipe("imagenet", 1 / EVAL_RESIZE_RATIO),
            stats=normalisation(new.in_channels),
        )
        new_ckpt, old_ckpt = work / "new.pt", work / "old.pt"
        new_acc = train("new defaults", new, new_ckpt, args.epochs, args.bits)
        old_acc = train("old defaults", old, old_ckpt, args.epochs, args.bits)
        raw = raw_accuracy(new_ckpt, root)
        groups = describe_groups(new_ckpt)
        request = SearchRequest(
            checkpoint=str(new_ckpt),  # dataset, folder and size come from the checkpoint
            trials=args.trials,
            finetune=FinetuneConfig(steps=args.finetune_steps),
            storage=str(work / "study.db"),
            device="cpu",
            workers=0,
        )
        session = SearchSession(request)
        started = time.perf_counter()
        session.run()
        search_seconds = time.perf_counter() - started
        front = trials_frame(session.study)
        all_trials = trials_frame(session.study, pareto_only=False)

    lines = [
        "# tiny_dscnn on a small grey image folder (Fashion-MNIST at 20x20 PNG)",
        "",
        f"Command: `python benchmarks/dscnn_folder.py --epochs {args.epochs} --trials "
        f"{args.trials} --finetune-steps {args.finetune_steps} --train-per-class "
        f"{args.train_per_class} --test-per-class {args.test_per_class} --size {args.size}` "
        "(2 CPU threads, seed 0).",
        f"Data: the first {args.train_per_class} training and {args.test_per_class} test "
        f"images per class of Fashion-MNIST, box-downsampled to {args.size}x{args.size}, "
        "written as grey PNGs into train/<class>/ and test/<class>/; imagefolder carves a "
        "seeded 10 % of train/ as validation.",
        "",
        f"## Baseline, tiny_dscnn W{args.bits}A{args.bits}, {args.epochs} epochs",
        "",
        "| recipe | augmentation | evaluation view | normalisation | test acc |",
        "|---|---|---|---|---|",
        f"| new defaults | light (pad {new.recipe.padding}, random crop, no flip) | "
        f"whole image | training split mean/std {new.mean[0]:.3f}/{new.std[0]:.3f} | "
        f"{100 * new_acc:.1f} % |",
        "| old defaults | imagenet (random resized crop 8-100 %, flip) | 87.5 % centre crop | "
        f"ImageNet grey {old.mean[0]:.3f}/{old.std[0]:.3f} | {100 * old_acc:.1f} % |",
        "",
        f"Reloaded with `autoprune.load(path, with_preprocess=True)` and fed the raw test PNGs "
        f"through `preprocess`: {100 * raw:.1f} % (the pipeline measured {100 * new_acc:.1f} %).",
        "",
        "## Groups and the default search space",
        "",
        "| group | kind | channels | % of quantized size | searched |",
        "|---|---|---|---|---|",
        *(
            f"| {g.name} | {'residual' if g.residual else 'block'} | {g.channels} | "
            f"{100 * g.share:.1f} | {'yes' if g.name in groups.searched else 'no'} |"
            for g in groups.groups
        ),
        "",
        f"The default search space ({len(groups.searched)} groups) controls "
        f"{100 * groups.searched_share:.1f} % of the quantized size "
        f"({groups.size_bits / 8 / 1024:.1f} KiB).",
        "",
        f"## Short search: {args.trials} trials, {args.finetune_steps} fine-tuning steps each "
        f"({search_seconds:.0f} s)",
        "",
        "Pareto front (validation accuracy; ratios in % per group, order: "
        f"{', '.join(front.attrs['groups'])}):",
        "",
        "| trial | val acc | size % of quantized | ratios % |",
        "|---|---|---|---|",
        *(
            f"| {row.trial} | {100 * row.val_accuracy:.1f} % | "
            f"{row.size_pct_of_quantized:.1f} | {row.ratios} |"
            for row in front.itertuples()
        ),
        "",
        f"All {len(all_trials)} complete trials: "
        + ", ".join(
            f"#{row.trial} {100 * row.val_accuracy:.1f} % at {row.size_pct_of_quantized:.0f} %"
            for row in all_trials.itertuples()
        ),
        "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
