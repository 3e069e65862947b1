"""Self-contained checkpoints: the preprocessing stored by every writer, ``autoprune.load(...,
with_preprocess=True)`` on raw images against the training pipeline, older files, ONNX metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import autoprune
from autoprune.checkpoint import read_checkpoint, save_checkpoint
from autoprune.config import DataConfig, ModelConfig, TrainConfig
from autoprune.data import ImageData, load_dataset
from autoprune.data.digits import load_digits
from autoprune.errors import CheckpointError
from autoprune.export import prune_checkpoint
from autoprune.models import build_model
from autoprune.preprocess import Preprocess
from autoprune.quant import QuantSpec
from autoprune.train import train_checkpoint


def _train(tmp_path: Path, data: ImageData, name: str = "tiny_dscnn") -> Path:
    out = tmp_path / "model.pt"
    model_config = ModelConfig.for_data(name, QuantSpec.from_bits(2), data)
    train_checkpoint(
        out,
        model_config,
        DataConfig.of(data, data.name),
        TrainConfig(epochs=1, batch_size=64),
        data,
        device=torch.device("cpu"),
    )
    return out


def _predict(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1)


def test_in_memory_checkpoint_predicts_alike_on_raw_images(tmp_path: Path) -> None:
    data = load_dataset("digits", max_train=128)
    path = _train(tmp_path, data)
    model, preprocess = autoprune.load(path, with_preprocess=True)
    assert preprocess.classes == data.classes and preprocess.image_size == 8
    raw = load_digits().test_images  # uint8 N x 1 x 8 x 8, as the loader gave them
    batch = preprocess(raw)
    assert torch.equal(batch, data.test_x)  # the very tensors the pipeline evaluated
    assert torch.equal(_predict(model, batch), _predict(model, data.test_x))
    # other layouts of the same pixels: H x W x C arrays, float tensors in [0, 1], PIL images
    hwc = raw[:5].permute(0, 2, 3, 1).numpy()
    assert torch.equal(preprocess(hwc), data.test_x[:5])
    assert torch.allclose(preprocess(raw[:5].float() / 255), data.test_x[:5], atol=1e-5)
    pil = [Image.fromarray(image[:, :, 0]) for image in hwc]
    assert torch.equal(preprocess(pil), data.test_x[:5])


def grey_folder(root: Path, side: int, per_class: int = 6) -> None:
    rng = np.random.default_rng(0)
    for label, name in enumerate(("dark", "light")):
        for split, count in (("train", per_class), ("test", 3)):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                base = 60 + 120 * label
                pixels = rng.integers(base - 50, base + 50, (side, side), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folder_checkpoint_predicts_alike_on_raw_pngs(tmp_path: Path) -> None:
    grey_folder(tmp_path / "images", side=18)
    data = load_dataset("imagefolder", data_dir=tmp_path / "images", workers=0, image_size=12)
    path = _train(tmp_path, data)
    model, preprocess = autoprune.load(path, with_preprocess=True)
    assert (preprocess.image_size, preprocess.in_channels) == (12, 1)
    assert preprocess.crop_fraction == 1.0  # small images: resized, never cropped
    pipeline = torch.cat([x for x, _ in data.batches("test", 100)])
    files = sorted((tmp_path / "images" / "test").glob("*/*.png"))
    raw = preprocess([Image.open(f) for f in files])  # 18 px PNGs, resized as in training
    assert torch.equal(raw, pipeline)
    assert torch.equal(_predict(model, raw), _predict(model, pipeline))


def test_large_colour_images_use_the_centre_crop_at_inference_too(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for name in ("a", "b"):
        folder = tmp_path / "train" / name
        folder.mkdir(parents=True)
        for i in range(3):
            # smooth images (as photos are): resampling details move pixels only a little
            rows, cols = np.mgrid[0:90, 0:100]
            phase = rng.uniform(0, 6, 3)
            pixels = 127 + 100 * np.sin(rows[..., None] / 9 + cols[..., None] / 13 + phase)
            Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.png")
    data = load_dataset("imagefolder", data_dir=tmp_path, workers=0, image_size=72)
    preprocess = data.preprocessing
    assert preprocess.crop_fraction == pytest.approx(0.875)
    pipeline = torch.cat([x for x, _ in data.batches("train", 100)])
    files = [tmp_path / p.decode() for p in data._files["train"].paths]
    images = [np.asarray(Image.open(f)) for f in files]
    assert torch.equal(preprocess(images), pipeline)  # uint8 H x W x C arrays, 100 x 90 px
    # floats in [0, 1] (a C x H x W batch) are resized the same way
    floats = torch.stack([torch.tensor(a).permute(2, 0, 1) for a in images]).float() / 255
    assert torch.equal(preprocess(floats), pipeline)


def test_every_writer_stores_the_preprocessing(tmp_path: Path) -> None:
    data = load_dataset("digits", max_train=128)
    path = _train(tmp_path, data)
    stored = read_checkpoint(path)["preprocess"]
    assert Preprocess.from_dict(stored) == data.preprocessing
    pruned = prune_checkpoint(path, tmp_path / "pruned.pt", uniform=0.5).path
    assert read_checkpoint(pruned)["preprocess"] == stored  # pruning keeps its source's
    _, preprocess = autoprune.load(pruned, with_preprocess=True)
    assert preprocess == data.preprocessing


def test_a_checkpoint_without_the_section_loads_but_names_what_is_missing(
    tmp_path: Path,
) -> None:
    config = ModelConfig("tiny_dscnn", QuantSpec.from_bits(2).to_dict(), 10, 1, 8)
    path = save_checkpoint(tmp_path / "old.pt", build_model(config), config)
    assert isinstance(autoprune.load(path), torch.nn.Module)
    with pytest.raises(CheckpointError, match="records no preprocessing") as info:
        autoprune.load(path, with_preprocess=True)
    assert "\n" not in str(info.value) and "mean/std" in str(info.value)


def test_preprocess_refuses_what_it_cannot_read() -> None:
    preprocess = Preprocess(8, 1, 1.0, (0.5,), (0.25,))
    with pytest.raises(autoprune.errors.ConfigError, match="channel axis"):
        preprocess(torch.zeros(2, 8, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="lacks mean, std"):
        Preprocess.from_dict({"image_size": 8, "in_channels": 1, "crop_fraction": 1.0})
    # colour input to a grey model: converted with Pillow's weights on either path
    rgb = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    assert torch.allclose(preprocess(rgb), preprocess(rgb.float() / 255), atol=0.05)


@pytest.mark.slow
def test_onnx_export_records_the_preprocessing(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    from autoprune.export import export_checkpoint_onnx

    data = load_dataset("digits", max_train=128)
    path = _train(tmp_path, data)
    export_checkpoint_onnx(path, tmp_path / "model.onnx", samples=4)
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "model.onnx")).metadata_props}
    assert Preprocess.from_dict(json.loads(props["autoprune.preprocess"])) == (data.preprocessing)
    assert props["autoprune.mean"] == f"{data.mean[0]:.6g}"
    assert json.loads(props["autoprune.classes"]) == list(data.classes)
