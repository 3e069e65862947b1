"""The ``autoprune`` command line (installed as the ``autoprune_cli`` package)."""
