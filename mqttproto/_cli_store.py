"""The CLI's durable store: ``broker --persist FILE [--sync MODE]`` and
``mqttproto backup SOURCE DESTINATION``.

A store file that cannot be used (not SQLite, another application's
database, a newer schema, a missing or read-only directory) is one line on
standard error naming the file, and exit status 1; the file is left as it was.
"""

from __future__ import annotations

import argparse
import sys

from ._cli_common import Subparsers
from .store import SQLiteStore, StoreError

__all__ = ["SYNC_MODES", "add_backup_parser", "add_store_arguments", "open_store", "sync_mode"]

SYNC_MODES = ("normal", "full", "off")


def sync_mode(value: object) -> str:
    """A TOML ``sync`` value, checked."""
    if not isinstance(value, str) or value not in SYNC_MODES:
        raise TypeError("one of " + ", ".join(f'"{mode}"' for mode in SYNC_MODES))
    return value


def add_store_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("durability")
    group.add_argument(
        "--persist",
        metavar="FILE",
        help="keep sessions, queued and retained messages in this SQLite file (created "
        "when missing); a QoS 1/2 message is acknowledged once it is in the file",
    )
    group.add_argument(
        "--sync",
        choices=SYNC_MODES,
        help="what a commit survives: normal (a crash of the broker; the default), "
        "full (a power loss too), off (a crash of the broker, not of the machine)",
    )


def open_store(settings: argparse.Namespace) -> SQLiteStore | None:
    """The store the settings ask for (None: in memory only).

    :raises StoreError: the file cannot be used; the message names it.
    """
    if settings.persist is None:
        return None
    return SQLiteStore(settings.persist, sync=settings.sync or "normal")


def command_backup(args: argparse.Namespace) -> int:
    """``backup``: copy a store with SQLite's online backup API (exit 1 on failure)."""
    from ._store_sqlite import backup

    try:
        backup(args.source, args.destination)
    except StoreError as exc:
        print(f"mqttproto backup: {exc}", file=sys.stderr)
        return 1
    return 0


def add_backup_parser(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "backup",
        help="copy a broker's --persist file, safely while the broker runs",
        description="Copy the committed state of a store file (SQLite's online backup API: "
        "consistent while a broker writes it).",
    )
    parser.add_argument("source", help="the broker's --persist file")
    parser.add_argument("destination", help="the copy to write (replaced if it exists)")
    parser.set_defaults(handler=command_backup)
