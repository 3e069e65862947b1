"""Exact cost metrics: size in bits and MB, parameters, MACs, BOPs, per layer."""

from autoprune.metrics.cost import BITS_PER_MB, LayerCost, ModelCost, measure

__all__ = ["BITS_PER_MB", "LayerCost", "ModelCost", "measure"]
