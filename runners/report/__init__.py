"""Read-only views over the state store: status and failure lists."""
