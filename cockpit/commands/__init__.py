"""Command implementations behind ``cockpit.cli`` that need more than a few lines."""
