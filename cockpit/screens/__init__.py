"""One screen per view; each refreshes itself from the latest snapshot while it is visible."""
