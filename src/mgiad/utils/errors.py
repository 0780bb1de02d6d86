"""Errors that the command line reports in one line (they are ``ValueError``s too)."""

__all__ = ["MissingDependencyError"]


class MissingDependencyError(ImportError, ValueError):
    """An optional package is needed for this operation; the message names the pip command.

    Also a ``ValueError`` so that the command line reports it in one line, without a traceback.
    """
