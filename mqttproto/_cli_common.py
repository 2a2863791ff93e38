"""What the command modules of :mod:`mqttproto.cli` share: the parser class,
argument types and logging to standard error while a command runs."""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import Iterator
from typing import NoReturn, TypeAlias

__all__ = [
    "Parser",
    "Subparsers",
    "UsageError",
    "logging_to_stderr",
    "positive_float",
    "positive_int",
]


class UsageError(Exception):
    """A command line argparse rejected; its message is already formatted."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become exit status 1, not 2.

    argparse exits the process from inside parse_args(); raising instead lets
    :func:`mqttproto.cli.main` return a status, so it can be called in-process
    by tests.
    """

    def error(self, message: str) -> NoReturn:
        if self._subparsers is not None:
            # No or an unknown command: the usage line lists the commands.
            raise UsageError(f"{self.format_usage()}{self.prog}: error: {message}")
        # A command's options: one line, as a shell user wants it.
        raise UsageError(f"{self.prog}: error: {message} (see '{self.prog} --help')")


#: What ``add_subparsers()`` returns (a string: not subscriptable at run time).
Subparsers: TypeAlias = "argparse._SubParsersAction[Parser]"


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {value}")
    return value


@contextlib.contextmanager
def logging_to_stderr(verbosity: int, name: str = "mqttproto") -> Iterator[None]:
    """Log ``name`` (and below) to standard error while the command runs.

    0: warnings and errors; 1: INFO; 2 or more: DEBUG. The logger is restored
    afterwards, so that ``main()`` can be called in-process (tests) without
    leaving a handler behind.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(name)
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
