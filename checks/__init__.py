"""Readiness checks (see issue: readiness checker). Never imports Textual or cockpit."""
