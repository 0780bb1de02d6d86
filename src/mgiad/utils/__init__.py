"""Helpers every other part may use: atomic files and JSON, checkpoints, counting, malloc tuning."""
