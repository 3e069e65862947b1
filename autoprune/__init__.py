"""autoprune: automatic pruning of quantized neural networks.

The public entry points: ``create_model`` builds a (quantized) network, ``load`` reads a
checkpoint back into a ready model; ``autoprune.search`` holds the search itself.
"""

from autoprune.models import create_model, load

__version__ = "0.1.0"
__all__ = ["__version__", "create_model", "load"]
