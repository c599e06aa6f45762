"""Migration runners: plan, state store, connectors and the copy engine.

Never imports Textual or ``cockpit`` (enforced by the import-linter contract in pyproject.toml).
"""
