"""Model zoo: every architecture registers itself in ``MODELS`` when its module is imported."""

from autoprune.models import resnet, tiny  # noqa: F401  (registration side effect)
from autoprune.models.registry import MODELS, create_model, register_model

__all__ = ["MODELS", "create_model", "register_model"]
