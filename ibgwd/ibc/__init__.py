"""IBC: its command server."""
