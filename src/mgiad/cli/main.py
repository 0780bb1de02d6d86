"""``mgiad <command>``: the parser and the error handling of every command.

One way to register a command: a module ``mgiad.cli.<name>`` with ``HELP`` (its line in ``mgiad
--help``), ``DESCRIPTION``, ``add_arguments(parser)`` and ``run(args) -> int``, named in
:data:`COMMANDS` (in the order of ``mgiad --help``, with whether it trains or runs models: those
tune malloc first).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

# command -> whether it trains or runs models (mgiad.utils.malloc.tune_malloc first)
COMMANDS = {"count": False, "train": True, "eval": True, "reproduce": True, "report": False,
            "export": False, "predict": True, "bench": True}


def _command(name: str):
    return importlib.import_module(f"{__package__}.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mgiad", description="MGiaD: multigrid in all dimensions. Models of the paper "
        "(mgiad, mgnet, mgic, resnet18, resnet20), their weight and FLOP counts, training and "
        "evaluation.")
    from ..version import __version__
    parser.add_argument("--version", action="version", version=f"mgiad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="command")
    for name in COMMANDS:
        command = _command(name)
        p = sub.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(p)
        p.set_defaults(func=command.run)
    return parser


def _is_user_error(exc: Exception) -> bool:
    """Bad input, diverged runs and the file system's refusals are reported in one paragraph;
    anything else is a bug: traceback."""
    trainer = sys.modules.get("mgiad.training.trainer")
    return isinstance(exc, (ValueError, OSError)) or (
        trainer is not None and isinstance(exc, trainer.TrainingDiverged))


def _describe_error(exc: Exception) -> str:
    """One paragraph for the user; OS errors say which file and what to do."""
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError) and exc.errno:
        import errno
        where = f" {exc.filename}" if exc.filename else ""
        advice = {errno.ENOSPC: "no space left on the device: free some space and run the same "
                                "command again (files already written are intact: every write "
                                "goes to a temporary file first)",
                  errno.EDQUOT: "disk quota exceeded: free some space and run the command again",
                  errno.EACCES: "permission denied: choose a folder you can write to (--out)",
                  errno.EPERM: "operation not permitted: choose a folder you can write to",
                  errno.EROFS: "the file system is read-only: choose another folder (--out)",
                  errno.EISDIR: "a folder is where a file was expected",
                  errno.ENOTDIR: "a file is where a folder was expected"}.get(exc.errno)
        if advice:
            return f"cannot use{where}: {advice}"
    return str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if COMMANDS[args.command]:
        from ..utils.malloc import tune_malloc
        tune_malloc()  # reuse freed feature maps instead of page-faulting them in every step
    try:
        return args.func(args) or 0
    except BrokenPipeError:  # the reader went away (`mgiad ... | head`): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 141
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        print(f"mgiad {args.command}: error: {_describe_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mgiad {args.command}: interrupted", file=sys.stderr)
        return 130
