"""The error of every user-facing data problem (a leaf: every data module may raise it)."""

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A user-facing data problem (missing files, bad checksum, corrupt file, bad argument)."""
