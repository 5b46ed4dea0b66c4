"""Rendering IBC's config.ini and the Gateway's jts.ini, and writing them atomically."""
