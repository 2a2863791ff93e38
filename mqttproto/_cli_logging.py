"""The broker's log on the command line: ``-v`` (connections), ``-vv``
(and a packet trace), ``--log-file FILE`` instead of standard error, and
``--log-format json`` for one JSON object a line.

Everything goes through :mod:`logging`, one logger per area, all under
``mqttproto``: ``mqttproto.broker`` (connections: opened, accepted, closed by
whom and why; TLS handshake failures, with the peer and OpenSSL's reason),
``mqttproto.broker.packets`` (the ``-vv`` trace),
``mqttproto.broker.reload`` (SIGHUP), ``mqttproto.http`` (the HTTP
listener) and ``mqttproto.bridge`` (the bridges). An application embedding the broker routes them as it likes.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

__all__ = ["LOG_SETTINGS", "JsonFormatter", "add_logging_arguments", "broker_logging"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _format(value: object) -> str:
    if value not in ("text", "json"):
        raise TypeError('"text" or "json"')
    return str(value)


def _path(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise TypeError("a file name")
    return value


#: The logging settings, in the form of ``_cli_broker.SETTINGS``.
LOG_SETTINGS = {
    "log_file": (_path, None, True),
    "log_format": (_format, "text", False),
}


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (UTC, ISO 8601), ``level``,
    ``logger``, ``message``, and ``exception`` when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        document = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document)


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-file", metavar="FILE", help="write the log to FILE (appended) instead of stderr"
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        help="text (the default) or json: one JSON object a line",
    )


@contextlib.contextmanager
def broker_logging(
    verbosity: int, log_file: str | None = None, log_format: str = "text"
) -> Iterator[None]:
    """Log ``mqttproto`` while the broker runs: WARNING and above; INFO
    with ``-v``; DEBUG (the packet trace) with ``-vv``. The logger is
    restored afterwards (``main()`` runs in-process in tests).

    :raises OSError: ``log_file`` cannot be opened for appending.
    """
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    handler: logging.Handler
    if log_file is not None:
        handler = logging.FileHandler(log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(_TEXT_FORMAT)
    )
    logger = logging.getLogger("mqttproto")
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
