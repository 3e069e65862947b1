"""YAML search spaces, one per model; installed as the ``autoprune_search_spaces`` package."""
