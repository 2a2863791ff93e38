"""``mqttproto pub`` and ``rr``: mosquitto_pub and mosquitto_rr on
:class:`mqttproto.adapters.asyncio.Client` (``sub`` is in :mod:`._cli_sub`).

Messages on standard error and exit statuses follow mosquitto 2.0's (see
:mod:`._cli_errors`): a refused CONNECT exits with the CONNACK return code
(MQTT 3.1/3.1.1) or reason code (MQTT 5), ``-W`` with "Timed out" and 27.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import BinaryIO

from ._cli_common import Subparsers
from ._cli_errors import TIMED_OUT, CommandError
from ._cli_format import check_format
from ._cli_mqtt import (
    add_client_parser,
    client_settings,
    connected,
    publish,
)
from ._cli_packets import check_filter, check_publish, check_topic
from ._cli_run import run_client_command
from ._cli_sub import MessagePrinter, add_output_options, add_sub_parser
from .enums import ProtocolVersion

__all__ = ["add_pub_parser", "add_rr_parser", "add_sub_parser"]


def _message_source(args: argparse.Namespace) -> str:
    given = [
        name
        for name, present in (
            ("m", args.message is not None),
            ("f", args.file is not None),
            ("l", args.stdin_line),
            ("s", args.stdin_file),
            ("n", args.null_message),
        )
        if present
    ]
    if len(given) > 1:
        raise CommandError("Error: Only one type of message can be sent at once.")
    if not given:
        raise CommandError("Error: Both topic and message must be supplied.")
    return given[0]


def _payload(args: argparse.Namespace, source: str) -> bytes:
    """The message of -m, -f, -s or -n (-l reads as it goes)."""
    if source == "m":
        return os_encode(args.message)
    if source == "f":
        try:
            with open(args.file, "rb") as file:
                return file.read()
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise CommandError(f"Error: Unable to read file '{args.file}': {reason}.") from None
    if source == "s":
        return sys.stdin.buffer.read()
    return b""


def os_encode(text: str) -> bytes:
    """A command-line argument's bytes, as the shell passed them."""
    return text.encode("utf-8", "surrogateescape")


async def _lines(stream: BinaryIO) -> AsyncIterator[bytes]:
    """Lines of ``stream`` without their newline, read without blocking the loop."""
    for _ in iter(int, 1):  # until EOF
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        yield line[:-1] if line.endswith(b"\n") else line


# -- pub ---------------------------------------------------------------------------


async def _pub(args: argparse.Namespace) -> int:
    settings = client_settings(args, default_version=ProtocolVersion.MQTT_3_1_1, prefix="pub")
    for topic in settings.topics:
        check_topic(topic)
    source = _message_source(args)
    if len(settings.topics) != 1:
        raise CommandError(
            "Error: Both topic and message must be supplied."
            if not settings.topics
            else "Error: Only one topic can be given."
        )
    if args.repeat < 1:
        raise CommandError("Error: --repeat argument must be >0.")
    if not args.repeat_delay >= 0:
        raise CommandError("Error: --repeat-delay argument must be >=0.0.")
    topic = settings.topics[0]
    properties = settings.properties.get("publish", {})
    check_publish(topic, settings.qos, args.retain, settings.version, properties)
    payload = _payload(args, source)
    async with connected(settings) as client:
        if source == "l":
            async for line in _lines(sys.stdin.buffer):
                await publish(client, topic, line, settings.qos, args.retain, properties)
            return 0
        for sent in range(args.repeat):
            if sent:
                await asyncio.sleep(args.repeat_delay)
            await publish(client, topic, payload, settings.qos, args.retain, properties)
    return 0


def add_pub_parser(subparsers: Subparsers) -> None:
    parser = add_client_parser(
        subparsers,
        "pub",
        help="publish a message (like mosquitto_pub)",
        description="Publish one message, a file, standard input, or one message per line "
        "of standard input, then disconnect. Options as mosquitto_pub's.",
    )
    message = parser.add_argument_group("message")
    message.add_argument("-m", "--message", help="the payload")
    message.add_argument("-f", "--file", help="send this file as the payload")
    message.add_argument(
        "-l", "--stdin-line", action="store_true", help="one message per line of standard input"
    )
    message.add_argument(
        "-s", "--stdin-file", action="store_true", help="standard input is the payload"
    )
    message.add_argument(
        "-n", "--null-message", action="store_true", help="an empty (zero-length) payload"
    )
    message.add_argument("-r", "--retain", action="store_true", help="retain the message")
    message.add_argument(
        "--repeat",
        type=_count,
        default=1,
        metavar="COUNT",
        help="publish the message COUNT times (not with -l)",
    )
    message.add_argument(
        "--repeat-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait this long after each message is complete before the next (--repeat)",
    )
    parser.set_defaults(handler=lambda args: run_client_command(_pub(args)))


def _count(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


# -- rr --------------------------------------------------------------------------------


async def _rr(args: argparse.Namespace) -> int:
    settings = client_settings(args, default_version=ProtocolVersion.MQTT_5_0, prefix="rr")
    for topic in settings.topics:
        check_topic(topic)
    if args.response_topic is not None:
        check_topic(args.response_topic, "response")
    source = None
    with contextlib.suppress(CommandError):
        source = _message_source(args)
    if len(settings.topics) != 1 or source is None or args.response_topic is None:
        raise CommandError("Error: All of topic, message, and response topic must be supplied.")
    if args.format is not None:
        check_format(args.format)
    properties = dict(settings.properties.get("publish", {}))
    if settings.version == ProtocolVersion.MQTT_5_0:
        properties["response_topic"] = args.response_topic
    check_publish(settings.topics[0], settings.qos, False, settings.version, properties)
    check_filter(args.response_topic)
    payload = _payload(args, source)
    show = MessagePrinter(args, sys.stdout.buffer)
    try:
        async with (
            connected(settings) as client,
            asyncio.timeout(args.timeout),
            client.subscription(args.response_topic, settings.qos) as responses,
        ):
            await publish(client, settings.topics[0], payload, settings.qos, False, properties)
            async for message in responses:
                if args.no_retain and message.retain:
                    continue
                show(message)
                return 0
    except TimeoutError:
        print("Timed out", file=sys.stderr)
        return TIMED_OUT
    return 0


def add_rr_parser(subparsers: Subparsers) -> None:
    parser = add_client_parser(
        subparsers,
        "rr",
        help="publish a request and print the response (like mosquitto_rr)",
        description="Subscribe to -e, publish the message to -t with -e as its MQTT 5 "
        "Response Topic, print the first response and exit. Options as mosquitto_rr's.",
    )
    message = parser.add_argument_group("message")
    message.add_argument("-m", "--message", help="the request payload")
    message.add_argument("-f", "--file", help="send this file as the payload")
    message.add_argument("-s", "--stdin-file", action="store_true", help="standard input")
    message.add_argument("-n", "--null-message", action="store_true", help="an empty payload")
    parser.set_defaults(stdin_line=False)
    parser.add_argument("-e", dest="response_topic", help="the response topic to wait on")
    add_output_options(parser)
    parser.set_defaults(handler=lambda args: run_client_command(_rr(args)))
