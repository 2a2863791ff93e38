"""``mqttproto pub``, ``sub`` and ``rr``: mosquitto_pub, mosquitto_sub and
mosquitto_rr on :class:`mqttproto.adapters.asyncio.Client`.

Output, messages on standard error and exit statuses follow mosquitto 2.0's
where a shell user would notice: ``sub`` prints the payload and a newline
(``-v``: the topic, a space, the payload; an empty payload is ``(null)`` with
``-v`` and nothing without it or with ``-N``; ``-N`` drops the newline); ``-W`` ends with
"Timed out" and status 27; a refused CONNECT exits with the CONNACK return
code (MQTT 3.1/3.1.1) or reason code (MQTT 5).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from ._cli_common import Subparsers, positive_int
from ._cli_mqtt import (
    ClientSettings,
    CommandError,
    add_client_parser,
    client_settings,
    describe_connect_failure,
    reason_text,
    run_client_command,
)
from .enums import ProtocolVersion
from .events import MessageReceived

__all__ = ["add_pub_parser", "add_rr_parser", "add_sub_parser"]

#: mosquitto's exit status for -W (MOSQ_ERR_TIMEOUT).
TIMED_OUT = 27


@contextlib.asynccontextmanager
async def _connected(settings: ClientSettings) -> AsyncIterator[Any]:
    """A connected client, disconnected at the end; failures as :class:`CommandError`."""
    from .adapters.asyncio import ClientError

    try:
        client = settings.client()
    except (TypeError, ValueError) as exc:
        raise CommandError(f"Error: {exc}") from None
    try:
        await client.connect()
    except (OSError, TimeoutError, ClientError) as exc:
        raise describe_connect_failure(exc, settings) from None
    try:
        yield client
    except ClientError as exc:
        code = getattr(exc, "reason_code", None)
        detail = f" ({reason_text(int(code))})" if code is not None else ""
        raise CommandError(f"Error: {exc}{detail}") from None
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


def _format(message: MessageReceived, *, verbose: bool, eol: bool) -> bytes:
    """mosquitto_sub's default output for one message."""
    payload = message.payload
    end = b"\n" if eol else b""
    if verbose:
        topic = message.topic.encode()
        if payload:
            return topic + b" " + payload + end
        # mosquitto prints "(null)" for an empty payload only with newlines.
        return topic + b" (null)\n" if eol else b""
    return payload + end if payload else b""


def _write(out: BinaryIO, data: bytes) -> None:
    if data:
        out.write(data)
        out.flush()


# -- pub ---------------------------------------------------------------------------


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


async def _lines(stream: BinaryIO) -> AsyncIterator[bytes]:
    """Lines of ``stream`` without their newline, read without blocking the loop."""
    for _ in iter(int, 1):  # until EOF
        line = await asyncio.to_thread(stream.readline)
        if not line:
            return
        yield line[:-1] if line.endswith(b"\n") else line


async def _pub(args: argparse.Namespace) -> int:
    settings = client_settings(args, default_version=ProtocolVersion.MQTT_3_1_1, prefix="pub")
    source = _message_source(args)
    if len(settings.topics) != 1:
        raise CommandError(
            "Error: Both topic and message must be supplied."
            if not settings.topics
            else "Error: Only one topic can be given."
        )
    payload = b""
    if source == "m":
        payload = args.message.encode()
    elif source == "f":
        try:
            with open(args.file, "rb") as file:
                payload = file.read()
        except OSError as exc:
            raise CommandError(
                f"Error: Unable to read file {args.file!r}: {exc.strerror}."
            ) from None
    elif source == "s":
        payload = sys.stdin.buffer.read()
    properties = settings.properties.get("publish", {})
    topic = settings.topics[0]
    async with _connected(settings) as client:
        if source == "l":
            async for line in _lines(sys.stdin.buffer):
                await client.publish(
                    topic, line, qos=settings.qos, retain=args.retain, **properties
                )
        else:
            await client.publish(topic, payload, qos=settings.qos, retain=args.retain, **properties)
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
    parser.set_defaults(handler=lambda args: run_client_command(_pub(args)))


# -- sub -------------------------------------------------------------------------


async def _sub(args: argparse.Namespace) -> int:
    from .adapters.asyncio import SubscribeError

    settings = client_settings(args, default_version=ProtocolVersion.MQTT_3_1_1, prefix="sub")
    if not settings.topics:
        raise CommandError("Error: You must specify a topic to subscribe to.")
    out = sys.stdout.buffer
    async with _connected(settings) as client:
        try:
            await client.subscribe(
                settings.topics, settings.qos, **settings.properties.get("subscribe", {})
            )
        except SubscribeError:
            raise CommandError("All subscription requests were denied.") from None
        count = 0
        try:
            async with asyncio.timeout(args.timeout):
                async for message in client.messages():
                    if args.no_retain and message.retain:
                        continue
                    _write(out, _format(message, verbose=args.verbose, eol=args.eol))
                    count += 1
                    if args.count is not None and count >= args.count:
                        return 0
        except TimeoutError:
            print("Timed out", file=sys.stderr)
            return TIMED_OUT
    return 0


def _add_output_options(parser: argparse.ArgumentParser) -> None:
    output = parser.add_argument_group("output")
    output.add_argument(
        "-v", "--verbose", action="store_true", help="print the topic before the payload"
    )
    output.add_argument(
        "-N", dest="eol", action="store_false", help="no newline after each payload"
    )
    output.add_argument(
        "-R", dest="no_retain", action="store_true", help="skip retained (stale) messages"
    )
    output.add_argument(
        "-W", dest="timeout", type=positive_int, help="stop after this many seconds (status 27)"
    )


def add_sub_parser(subparsers: Subparsers) -> None:
    parser = add_client_parser(
        subparsers,
        "sub",
        help="subscribe and print messages (like mosquitto_sub)",
        description="Subscribe to the -t filters and print what arrives, until -C messages, "
        "-W seconds, or SIGINT. Options as mosquitto_sub's.",
    )
    _add_output_options(parser)
    parser.add_argument("-C", dest="count", type=positive_int, help="exit after this many messages")
    parser.set_defaults(handler=lambda args: run_client_command(_sub(args)))


# -- rr --------------------------------------------------------------------------------


async def _rr(args: argparse.Namespace) -> int:
    settings = client_settings(args, default_version=ProtocolVersion.MQTT_5_0, prefix="rr")
    source = None
    with contextlib.suppress(CommandError):
        source = _message_source(args)
    if len(settings.topics) != 1 or source is None or args.response_topic is None:
        raise CommandError("Error: All of topic, message, and response topic must be supplied.")
    if source == "m":
        payload = args.message.encode()
    elif source == "s":
        payload = sys.stdin.buffer.read()
    elif source == "f":
        try:
            with open(args.file, "rb") as file:
                payload = file.read()
        except OSError as exc:
            raise CommandError(
                f"Error: Unable to read file {args.file!r}: {exc.strerror}."
            ) from None
    else:
        payload = b""
    properties = dict(settings.properties.get("publish", {}))
    if settings.version == ProtocolVersion.MQTT_5_0:
        properties["response_topic"] = args.response_topic
    out = sys.stdout.buffer
    async with _connected(settings) as client:
        try:
            async with asyncio.timeout(args.timeout):
                async with client.subscription(args.response_topic, settings.qos) as responses:
                    await client.publish(
                        settings.topics[0], payload, qos=settings.qos, **properties
                    )
                    async for message in responses:
                        if args.no_retain and message.retain:
                            continue
                        _write(out, _format(message, verbose=args.verbose, eol=args.eol))
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
    _add_output_options(parser)
    parser.set_defaults(handler=lambda args: run_client_command(_rr(args)))
