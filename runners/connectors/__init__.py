"""Source extractors and target importers, one module per protocol."""
