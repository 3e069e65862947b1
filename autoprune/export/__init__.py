"""Leaving the training world: pruned checkpoints, folded inference copies, ONNX files."""

from autoprune.export.inference import (
    ACTIVATION_FORMS,
    BinarySign,
    FoldedConv2d,
    FoldedLinear,
    SignedGridRound,
    UnitGridRound,
    fold_quantizers,
    plain_activation,
)
from autoprune.export.onnx import (
    OnnxCheck,
    export_checkpoint_onnx,
    export_onnx,
    require_onnx,
    run_onnx,
    verify_onnx,
)
from autoprune.export.pruning import (
    DEFAULT_CRITERION,
    LayerChange,
    PruneReport,
    parse_ratios,
    prune_checkpoint,
    resolve_ratios,
)

__all__ = [
    "ACTIVATION_FORMS",
    "DEFAULT_CRITERION",
    "BinarySign",
    "FoldedConv2d",
    "FoldedLinear",
    "LayerChange",
    "OnnxCheck",
    "PruneReport",
    "SignedGridRound",
    "UnitGridRound",
    "export_checkpoint_onnx",
    "export_onnx",
    "fold_quantizers",
    "parse_ratios",
    "plain_activation",
    "prune_checkpoint",
    "require_onnx",
    "resolve_ratios",
    "run_onnx",
    "verify_onnx",
]
