"""Model zoo: every architecture registers itself in ``MODELS`` when its module is imported.

``create_model`` also builds your own network from ``"package.module:factory"``
(``autoprune.models.external``); ``load_pretrained_`` starts a model from saved weights.
"""

from autoprune.models import (  # noqa: F401  (registration)
    mobilenet,
    resnet,
    resnet_imagenet,
    tiny,
    vgg,
)
from autoprune.models.external import create_external_model, load_factory
from autoprune.models.loading import (
    LoadedCheckpoint,
    ModelSource,
    allow_source,
    build_model,
    load,
    load_checkpoint,
)
from autoprune.models.pretrained import load_pretrained_, read_state_dict
from autoprune.models.registry import MODELS, create_model, register_model

__all__ = [
    "MODELS",
    "LoadedCheckpoint",
    "ModelSource",
    "allow_source",
    "build_model",
    "create_external_model",
    "create_model",
    "load",
    "load_checkpoint",
    "load_factory",
    "load_pretrained_",
    "read_state_dict",
    "register_model",
]
