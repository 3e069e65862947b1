"""ONNX export of a (pruned) quantized network with standard operators, and its verification.

``export_onnx`` folds the quantizers (``fold_quantizers``: ``Q(w)`` computed once and stored as
constant weights, activation quantizers as Clip/Mul/Round/Div or Sign/Add/Sign) and exports
the folded copy with ``torch.onnx.export(dynamo=True)``: the ``torch.export``-based exporter,
the default since torch 2.9 and the supported one (the TorchScript exporter,
``dynamo=False``, warns that it will be removed). It needs the ``onnx`` and ``onnxscript``
packages. The graph takes ``images`` (any batch size) and returns ``logits``; the exporter's
optimiser folds BatchNorm into the preceding convs.

The normalisation is not baked into the graph: ``images`` are the normalised batch, as for
the PyTorch model. A checkpoint's preprocessing is recorded in the model's ``metadata_props``
(``export_checkpoint_onnx``): ``autoprune.preprocess`` (JSON of
``autoprune.preprocess.Preprocess.to_dict``: input size, channels, crop fraction, mean, std,
class names), and for quick reading ``autoprune.mean``, ``autoprune.std`` (comma-separated,
per channel, of pixels scaled to [0, 1]: feed ``(x / 255 - mean) / std``),
``autoprune.classes`` (JSON list, the order of the logits) and ``autoprune.input_size``.

``verify_onnx`` runs the file with ONNX Runtime and compares it with the PyTorch model on the
same inputs. Float networks agree to float rounding. Quantized networks agree exactly except
where a pre-activation lies within float rounding of a quantization threshold: ONNX Runtime
accumulates convolutions in another order and uses BatchNorm folded into the weights, so such
a value can round to the neighbouring level, which shifts that sample's logits by a visible
amount. The check therefore reports, besides the largest difference, the share of samples
whose logits all agree within tolerance and the share with the same predicted class, and
passes when enough samples agree (``min_matching``); a wrong export (a missing quantizer, a
wrong sign convention, another rounding rule) disagrees on nearly every sample.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from autoprune.errors import ConfigError
from autoprune.export.inference import fold_quantizers
from autoprune.models import ModelSource, load_checkpoint
from autoprune.models.loading import LoadedCheckpoint

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
INSTALL_HINT = "pip install 'autoprune[onnx]'"


def require(module: str, purpose: str) -> None:
    """Import ``module`` or raise a one-line ``ConfigError`` naming the extra to install."""
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise ConfigError(
            f"{purpose} needs the {module} package, which is not installed: {INSTALL_HINT}"
        ) from error


def require_onnx() -> None:
    """Fail early, before any long work, when the ``[onnx]`` extra is not installed."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        require(module, "ONNX export")


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's progress lines, optional-dependency notes and deprecations."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    input_shape: Sequence[int],
    *,
    opset: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model`` (quantizers folded, see the module doc) as one ONNX file at ``path``.

    ``metadata`` is stored as the model's ``metadata_props`` (string keys and values).

    ``input_shape`` is one sample's ``(C, H, W)``; the batch dimension stays dynamic.
    ``opset`` defaults to the exporter's recommended version. Raises ``ConfigError`` (with
    the install command) when ``onnx`` or ``onnxscript`` is missing.
    """
    require("onnx", "ONNX export")
    require("onnxscript", "ONNX export")
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folded = fold_quantizers(model).cpu().float()
    # batch 2, not 1: torch.export specialises a size-1 dimension instead of keeping it dynamic
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch")
    with _quiet_exporter():
        program = torch.onnx.export(
            folded,
            (example,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            verbose=False,
        )
    if program is None:  # only the TorchScript exporter returns nothing
        raise RuntimeError("torch.onnx.export returned no program")
    partial = path.with_name(path.name + ".partial")
    try:
        program.save(partial, external_data=False)  # one self-contained file
        if metadata:
            proto = onnx.load(str(partial))
            for key, value in metadata.items():
                entry = proto.metadata_props.add()
                entry.key, entry.value = str(key), str(value)
            onnx.save(proto, str(partial))
        onnx.checker.check_model(str(partial), full_check=True)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


@dataclass(frozen=True)
class OnnxCheck:
    """How an ONNX file's outputs compare with PyTorch's on the same ``samples`` inputs.

    A sample *matches* when every logit satisfies ``|onnx - torch| <= atol + rtol * |torch|``.
    """

    samples: int
    max_abs_diff: float
    mean_abs_diff: float
    matching_fraction: float
    argmax_agreement: float
    atol: float
    rtol: float
    min_matching: float

    @property
    def ok(self) -> bool:
        return self.matching_fraction >= self.min_matching

    def summary(self) -> str:
        return (
            f"ONNX Runtime vs PyTorch on {self.samples} inputs: "
            f"{100 * self.matching_fraction:.1f} % within {self.atol:g} + {self.rtol:g}|x|, "
            f"same class on {100 * self.argmax_agreement:.1f} %, max |diff| "
            f"{self.max_abs_diff:.3g}, mean |diff| {self.mean_abs_diff:.3g}"
        )


def run_onnx(path: str | Path, inputs: torch.Tensor, *, threads: int = 1) -> np.ndarray:
    """The ``logits`` ONNX Runtime computes from ``inputs`` (CPU, ``threads`` intra-op)."""
    require("onnxruntime", "running an ONNX file")
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {INPUT_NAME: inputs.detach().cpu().float().numpy()}
    return session.run([OUTPUT_NAME], feed)[0]


def verify_onnx(
    path: str | Path,
    model: nn.Module,
    example: torch.Tensor,
    *,
    atol: float = 1e-4,
    rtol: float = 1e-4,
    min_matching: float = 0.9,
    threads: int = 1,
) -> OnnxCheck:
    """Compare the ONNX file at ``path`` with ``model`` (eval mode) on the batch ``example``.

    Use enough samples (e.g. 64 random or real inputs) for the shares to mean something.
    ``min_matching`` is the share of samples that must match (see ``OnnxCheck``); the default
    leaves room for the rare threshold flips of quantized networks (module doc).
    """
    if example.dim() < 2 or example.shape[0] < 1:
        raise ValueError(f"example must be a batch (N x C x H x W), got {tuple(example.shape)}")
    parameter = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            expected = model(example.to(parameter.device, parameter.dtype)).float().cpu().numpy()
    finally:
        model.train(was_training)
    actual = run_onnx(path, example, threads=threads)
    if actual.shape != expected.shape:
        raise ValueError(f"ONNX output shape {actual.shape} != PyTorch's {expected.shape}")
    difference = np.abs(actual - expected)
    within = difference <= atol + rtol * np.abs(expected)
    samples = expected.shape[0]
    return OnnxCheck(
        samples=samples,
        max_abs_diff=float(difference.max()),
        mean_abs_diff=float(difference.mean()),
        matching_fraction=float(within.reshape(samples, -1).all(axis=1).mean()),
        argmax_agreement=float((actual.argmax(axis=1) == expected.argmax(axis=1)).mean()),
        atol=atol,
        rtol=rtol,
        min_matching=min_matching,
    )


def preprocess_metadata(loaded: LoadedCheckpoint) -> dict[str, str]:
    """The ``metadata_props`` recording a checkpoint's preprocessing (none for older files)."""
    if loaded.preprocess is None:
        return {}
    preprocess = loaded.preprocessing()
    return {
        "autoprune.preprocess": json.dumps(preprocess.to_dict()),
        "autoprune.mean": ",".join(f"{v:.6g}" for v in preprocess.mean),
        "autoprune.std": ",".join(f"{v:.6g}" for v in preprocess.std),
        "autoprune.classes": json.dumps(list(preprocess.classes)),
        "autoprune.input_size": str(preprocess.image_size),
    }


def export_checkpoint_onnx(
    checkpoint: str | Path,
    path: str | Path,
    *,
    samples: int = 64,
    seed: int = 0,
    model: ModelSource = None,
) -> OnnxCheck:
    """Export the network of an autoprune checkpoint to ``path`` and verify it on ``samples``
    standard-normal inputs (the scale of normalised images) drawn with ``seed``.

    ``model`` allows a user-defined architecture (see ``autoprune.models.load_checkpoint``).
    """
    require_onnx()
    loaded = load_checkpoint(checkpoint, model=model)
    model_config, model = loaded.config, loaded.model.eval()
    export_onnx(model, path, model_config.input_shape, metadata=preprocess_metadata(loaded))
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(samples, *model_config.input_shape, generator=generator)
    return verify_onnx(path, model, inputs)
