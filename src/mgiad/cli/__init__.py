"""Command line: ``mgiad <command>``, one module per command (see :mod:`.main`); run
``mgiad <command> --help`` for details."""
from .args import add_model_arguments, model_kwargs_from_args
from .main import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "add_model_arguments", "build_parser", "main", "model_kwargs_from_args"]
