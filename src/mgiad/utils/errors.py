"""Errors that the command line reports in one line (they are ``ValueError``s too)."""

__all__ = ["MissingDependencyError", "install_hint"]


class MissingDependencyError(ImportError, ValueError):
    """An optional package is needed for this operation; the message names the pip command.

    Also a ``ValueError`` so that the command line reports it in one line, without a traceback.
    """


def install_hint(extra: str, *packages: str) -> str:
    """How to install an optional dependency, as README says: from a clone, the extra
    (``pip install -c constraints.txt -e ".[plot]"``), else the packages themselves; the
    constraints file keeps torch at the tested version."""
    return (f"from a clone: `pip install -c constraints.txt -e \".[{extra}]\"`; "
            f"else `pip install -c constraints.txt {' '.join(packages)}`")
