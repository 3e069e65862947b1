"""``autoprune train`` end to end on a generated image folder (streaming dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from autoprune.checkpoint import read_checkpoint
from autoprune_cli.main import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AUTOPRUNE_CACHE", str(tmp_path / "cache"))
    for name in ("AUTOPRUNE_DATA_DIR", "AUTOPRUNE_IMAGENET_DIR"):
        monkeypatch.delenv(name, raising=False)


def image_folder(root: Path, per_class: int) -> None:
    """Three classes told apart by colour, 20x24 JPEGs in train/ and PNGs in val/."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(("blue", "green", "red")):
        for split, count, suffix in (("train", per_class, "jpg"), ("val", 2, "png")):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 60, (24, 20, 3), dtype=np.uint8)
                pixels[..., 2 - label] += 150
                Image.fromarray(pixels).save(folder / f"{i}.{suffix}")


def test_train_on_an_image_folder(tmp_path: Path) -> None:
    image_folder(tmp_path / "images", per_class=12)
    out = tmp_path / "tiny.pt"
    common = ["--dataset", "imagefolder", "--data-dir", str(tmp_path / "images")]
    result = runner.invoke(
        app,
        [
            "train", "--out", str(out), *common, "--image-size", "16", "--workers", "1",
            "--model", "tiny_cnn", "--bits", "2", "--epochs", "1", "--batch-size", "8",
            "--device", "cpu",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.is_file()
    model = read_checkpoint(out)["model"]
    assert (model["num_classes"], model["in_channels"], model["image_size"]) == (3, 3, 16)

    missing = runner.invoke(
        app, ["train", "--out", str(out), "--dataset", "imagefolder", "--data-dir", "/nowhere"]
    )
    assert missing.exit_code != 0 and "does not exist" in str(missing.exception)
