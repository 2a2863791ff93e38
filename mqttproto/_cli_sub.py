"""``mqttproto sub``: mosquitto_sub on :class:`mqttproto.adapters.asyncio.Client`,
and the message output that ``rr`` shares with it.

Output follows mosquitto_sub 2.0: the payload and a newline; ``-v``: the
topic, a space, the payload (an empty payload is ``(null)`` with ``-v`` and
nothing without it or with ``-N``); ``-N`` drops the newline; ``-F`` a format
(:mod:`._cli_format`). ``-W`` ends with "Timed out" and status 27.

When the connection to the broker is lost, ``sub`` says so on standard error
and connects again every second, as mosquitto_sub does (it subscribes again
on each connection; with ``-c`` the broker's session resumes and what it
queued meanwhile arrives). Only the first connection must succeed: a broker
that is down at the start is an error, as it is for mosquitto_sub.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any, BinaryIO

from ._cli_common import Subparsers, positive_int
from ._cli_errors import CONN_LOST, TIMED_OUT, CommandError
from ._cli_format import check_format, format_message
from ._cli_mqtt import (
    ClientSettings,
    add_client_parser,
    client_settings,
    connected,
    describe_lost,
)
from ._cli_packets import check_filter, check_subscribe
from ._cli_run import run_client_command
from .enums import ProtocolVersion
from .events import MessageReceived
from .topics import topic_matches

__all__ = ["MessagePrinter", "add_output_options", "add_sub_parser"]

#: mosquitto_sub's pause between attempts to reconnect (libmosquitto's
#: reconnect_delay, 1 s, without back-off).
RECONNECT_DELAY = 1.0


def _default_output(message: MessageReceived, *, verbose: bool, eol: bool) -> bytes:
    """mosquitto_sub's output without -F."""
    payload = message.payload
    end = b"\n" if eol else b""
    if verbose:
        topic = message.topic.encode()
        if payload:
            return topic + b" " + payload + end
        # mosquitto prints "(null)" for an empty payload only with newlines.
        return topic + b" (null)\n" if eol else b""
    return payload + end if payload else b""


class MessagePrinter:
    """Print one message as ``-F``, ``-v`` and ``-N`` say, to ``out``."""

    def __init__(self, args: argparse.Namespace, out: BinaryIO) -> None:
        self._format = None if args.format is None else check_format(args.format)
        self._verbose = args.verbose
        self._eol = args.eol
        self._out = out

    def __call__(self, message: MessageReceived) -> None:
        if self._format is not None:
            data = format_message(self._format, message, eol=self._eol)
        else:
            data = _default_output(message, verbose=self._verbose, eol=self._eol)
        if data:
            self._out.write(data)
            self._out.flush()


def add_output_options(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument_group("output")
    output.add_argument(
        "-v", "--verbose", action="store_true", help="print the topic before the payload"
    )
    output.add_argument(
        "-F", dest="format", metavar="FORMAT", help="output format (see the documentation)"
    )
    output.add_argument(
        "-N", dest="eol", action="store_false", help="no newline after each message"
    )
    output.add_argument(
        "-R", dest="no_retain", action="store_true", help="skip retained (stale) messages"
    )
    output.add_argument(
        "-W", dest="timeout", type=positive_int, help="stop after this many seconds (status 27)"
    )


class _Subscriber:
    """What lasts across connections: the count, the deadline, the output."""

    def __init__(self, args: argparse.Namespace, settings: ClientSettings) -> None:
        self.args = args
        self.settings = settings
        self.print = MessagePrinter(args, sys.stdout.buffer)
        self.count = 0

    def wanted(self, message: MessageReceived) -> bool:
        if self.args.no_retain and message.retain:
            return False
        return not any(topic_matches(f, message.topic) for f in self.args.filter_out)

    async def session(self, client: Any) -> int:
        """Subscribe on a new connection and print until done; the exit status."""
        from .adapters.asyncio import SubscribeError

        settings = self.settings
        try:
            await client.subscribe(
                settings.topics, settings.qos, **settings.properties.get("subscribe", {})
            )
        except SubscribeError:
            raise CommandError("All subscription requests were denied.") from None
        if self.args.exit_after_subscribe:
            return 0
        async for message in client.messages():
            if not self.wanted(message):
                continue
            self.print(message)
            self.count += 1
            if self.args.count is not None and self.count >= self.args.count:
                return 0
        # The iterator ends only when the client disconnects, which this
        # command does last: the connection went away under it.
        raise CommandError(f"Error: {describe_lost(None)}", CONN_LOST)

    async def run(self) -> int:
        ever_connected = False
        timeout = asyncio.timeout(None)
        async with timeout:
            for _ in iter(int, 1):  # until a session ends the command
                inside = False
                try:
                    async with connected(self.settings, announce_subacks=True) as client:
                        inside = True
                        if not ever_connected:
                            ever_connected = True
                            if self.args.timeout is not None:
                                loop = asyncio.get_running_loop()
                                timeout.reschedule(loop.time() + self.args.timeout)
                        return await self.session(client)
                except CommandError as exc:
                    lost = inside and exc.status == CONN_LOST
                    if not ever_connected or exc.refused or (inside and not lost):
                        raise
                    if lost:
                        print(f"{exc} Reconnecting.", file=sys.stderr, flush=True)
                await asyncio.sleep(RECONNECT_DELAY)
        raise AssertionError("unreachable")  # pragma: no cover


async def _sub(args: argparse.Namespace) -> int:
    settings = client_settings(args, default_version=ProtocolVersion.MQTT_3_1_1, prefix="sub")
    for topic_filter in settings.topics:
        check_filter(topic_filter)
    for topic_filter in args.filter_out:
        check_filter(topic_filter, "filter")
    if not settings.topics:
        raise CommandError("Error: You must specify a topic to subscribe to.")
    if args.format is not None:
        check_format(args.format)
    check_subscribe(
        settings.topics, settings.qos, settings.version, settings.properties.get("subscribe", {})
    )
    subscriber = _Subscriber(args, settings)
    try:
        return await subscriber.run()
    except TimeoutError:
        print("Timed out", file=sys.stderr)
        return TIMED_OUT


def add_sub_parser(subparsers: Subparsers) -> None:
    parser = add_client_parser(
        subparsers,
        "sub",
        help="subscribe and print messages (like mosquitto_sub)",
        description="Subscribe to the -t filters and print what arrives, until -C messages, "
        "-W seconds, or SIGINT; reconnect when the connection is lost. Options as "
        "mosquitto_sub's.",
    )
    add_output_options(parser)
    parser.add_argument("-C", dest="count", type=positive_int, help="exit after this many messages")
    parser.add_argument(
        "-E",
        dest="exit_after_subscribe",
        action="store_true",
        help="exit once the subscriptions are acknowledged",
    )
    parser.add_argument(
        "-T",
        "--filter-out",
        dest="filter_out",
        action="append",
        default=[],
        metavar="FILTER",
        help="do not print messages whose topic matches this filter (repeatable)",
    )
    parser.set_defaults(handler=lambda args: run_client_command(_sub(args)))
