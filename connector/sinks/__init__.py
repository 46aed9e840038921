"""Destinations of meter events (``api``: Amberflo /ingest)."""
