"""What ``mqttproto pub``, ``sub`` and ``rr`` share: the mosquitto-style
connection options, MQTT 5 properties from ``-D``, ``-L`` URLs, connecting
with :class:`mqttproto.adapters.asyncio.Client`, and one-line errors with
mosquitto's exit statuses.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import ssl
import sys
import urllib.parse
from collections.abc import Callable, Coroutine
from typing import Any

import attrs

from ._cli_common import Parser, Subparsers
from .enums import ProtocolVersion, QoS, ReasonCode

__all__ = [
    "ClientSettings",
    "CommandError",
    "add_client_parser",
    "client_settings",
    "run_client_command",
]

_VERSIONS = {
    "31": ProtocolVersion.MQTT_3_1,
    "mqttv31": ProtocolVersion.MQTT_3_1,
    "311": ProtocolVersion.MQTT_3_1_1,
    "mqttv311": ProtocolVersion.MQTT_3_1_1,
    "5": ProtocolVersion.MQTT_5_0,
    "mqttv5": ProtocolVersion.MQTT_5_0,
}

#: mosquitto's texts for the MQTT 3.1/3.1.1 CONNACK return codes.
_V3_REFUSALS = {
    1: "Connection Refused: unacceptable protocol version.",
    2: "Connection Refused: identifier rejected.",
    3: "Connection Refused: broker unavailable.",
    4: "Connection Refused: bad user name or password.",
    5: "Connection Refused: not authorised.",
}

#: mosquitto's texts for MQTT 5 reason codes (mosquitto_reason_string).
_V5_REASONS = {
    0x80: "Unspecified error",
    0x81: "Malformed packet",
    0x82: "Protocol error",
    0x83: "Implementation specific error",
    0x84: "Unsupported protocol version",
    0x85: "Client identifier not valid",
    0x86: "Bad username or password",
    0x87: "Not authorized",
    0x88: "Server unavailable",
    0x89: "Server busy",
    0x8A: "Banned",
    0x8B: "Server shutting down",
    0x8C: "Bad authentication method",
    0x8D: "Keep alive timeout",
    0x8E: "Session taken over",
    0x90: "Topic name invalid",
    0x95: "Packet too large",
    0x97: "Quota exceeded",
    0x99: "Payload format invalid",
    0x9A: "Retain not supported",
    0x9B: "QoS not supported",
    0x9C: "Use another server",
    0x9D: "Server moved",
    0x9F: "Connection rate exceeded",
}

#: ``-D`` properties: command -> property name -> (keyword, value parser).
_INT = int


def _bool(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError("must be 0 or 1")
    return text == "1"


def _bytes(text: str) -> bytes:
    return text.encode()


_Property = tuple[str, Callable[[str], Any]]
_COMMON_MESSAGE: dict[str, _Property] = {
    "payload-format-indicator": ("payload_format_indicator", _INT),
    "message-expiry-interval": ("message_expiry_interval", _INT),
    "content-type": ("content_type", str),
    "response-topic": ("response_topic", str),
    "correlation-data": ("correlation_data", _bytes),
}
_PROPERTIES: dict[str, dict[str, _Property]] = {
    "connect": {
        "session-expiry-interval": ("session_expiry_interval", _INT),
        "receive-maximum": ("receive_maximum", _INT),
        "maximum-packet-size": ("maximum_packet_size", _INT),
        "topic-alias-maximum": ("topic_alias_maximum", _INT),
        "request-response-information": ("request_response_information", _bool),
        "request-problem-information": ("request_problem_information", _bool),
        "authentication-method": ("authentication_method", str),
        "authentication-data": ("authentication_data", _bytes),
    },
    "publish": {**_COMMON_MESSAGE, "topic-alias": ("topic_alias", _INT)},
    "subscribe": {"subscription-identifier": ("subscription_identifier", _INT)},
    "unsubscribe": {},
    "will": {**_COMMON_MESSAGE, "will-delay-interval": ("will_delay_interval", _INT)},
}


class CommandError(Exception):
    """Stop the command: print ``message`` (one line) and exit with ``status``."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


@attrs.frozen
class ClientSettings:
    """How to connect, resolved from the options."""

    host: str
    port: int | None
    transport: str
    websocket_path: str
    tls: ssl.SSLContext | None
    client_id: str
    version: ProtocolVersion
    username: str | None
    password: str | None
    keep_alive: int
    clean_start: bool
    will: Any
    connect_properties: dict[str, Any]
    #: -D publish / subscribe / unsubscribe properties, as keyword arguments.
    properties: dict[str, dict[str, Any]]
    topics: list[str]
    qos: QoS

    def client(self, **extra: Any) -> Any:
        from .adapters.asyncio import Client

        connect_properties = dict(self.connect_properties)
        session_expiry = connect_properties.pop("session_expiry_interval", None)
        return Client(
            self.host,
            self.port,
            client_id=self.client_id,
            version=self.version,
            username=self.username,
            password=self.password,
            tls=self.tls,
            transport=self.transport,  # type: ignore[arg-type]
            websocket_path=self.websocket_path,
            keep_alive=self.keep_alive,
            clean_start=self.clean_start,
            session_expiry_interval=session_expiry,
            will=self.will,
            connect_properties=connect_properties,
            **extra,
        )


def _version(text: str) -> ProtocolVersion:
    try:
        return _VERSIONS[text.lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(
            f"unknown protocol version {text!r} (31, 311 or 5)"
        ) from None


def _qos(text: str) -> QoS:
    if text not in ("0", "1", "2"):
        raise argparse.ArgumentTypeError(f"QoS must be 0, 1 or 2, not {text!r}")
    return QoS(int(text))


def _keep_alive(text: str) -> int:
    value = int(text)
    if not 5 <= value <= 65535 and value != 0:
        raise argparse.ArgumentTypeError("keepalive must be 0 or between 5 and 65535")
    return value


def add_client_parser(subparsers: Subparsers, name: str, *, help: str, description: str) -> Parser:
    """A subcommand parser with the options every client command has."""
    parser: Parser = subparsers.add_parser(name, help=help, description=description, add_help=False)
    parser.add_argument("--help", action="help", help="show this help and exit")
    conn = parser.add_argument_group("connection")
    conn.add_argument("-h", "--host", help="the broker's host (localhost)")
    conn.add_argument("-p", "--port", type=int, help="its port (1883; 8883 with TLS)")
    conn.add_argument("-L", "--url", help="mqtt(s)://[user[:password]@]host[:port]/topic")
    conn.add_argument("--unix", metavar="PATH", help="connect to a Unix socket")
    conn.add_argument("--ws", action="store_true", help="MQTT over WebSocket")
    conn.add_argument("--ws-path", default="/mqtt", help="the WebSocket path (/mqtt)")
    conn.add_argument("-i", "--id", dest="client_id", help="the client id (default: random)")
    conn.add_argument("-u", "--username")
    conn.add_argument("-P", "--pw", dest="password")
    conn.add_argument("-k", "--keepalive", type=_keep_alive, default=60, help="seconds (60)")
    conn.add_argument(
        "-V",
        "--protocol-version",
        dest="version",
        type=_version,
        help="31, 311 or 5 (default 311; 5 for rr)",
    )
    conn.add_argument(
        "-c",
        "--disable-clean-session",
        dest="clean",
        action="store_false",
        help="keep the session when disconnected",
    )
    conn.add_argument(
        "-x",
        dest="session_expiry",
        type=int,
        help="MQTT 5 session expiry interval in seconds (-D connect session-expiry-interval)",
    )
    conn.add_argument(
        "-D",
        "--property",
        dest="properties",
        action="append",
        nargs="+",
        default=[],
        metavar="ARG",
        help="an MQTT 5 property: COMMAND NAME VALUE (user-property takes KEY VALUE)",
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--cafile", help="CA certificates to trust (turns TLS on)")
    tls.add_argument("--capath", help="a directory of CA certificates (turns TLS on)")
    tls.add_argument("--cert", help="a client certificate (PEM)")
    tls.add_argument("--key", help="its private key")
    tls.add_argument("--insecure", action="store_true", help="do not check the server's host name")
    will = parser.add_argument_group("will")
    will.add_argument("--will-topic")
    will.add_argument("--will-payload")
    will.add_argument("--will-qos", type=_qos, default=QoS.AT_MOST_ONCE)
    will.add_argument("--will-retain", action="store_true")
    parser.add_argument("-t", "--topic", dest="topics", action="append", default=[])
    parser.add_argument("-q", "--qos", type=_qos, default=QoS.AT_MOST_ONCE)
    return parser


def _parse_properties(
    arguments: list[list[str]], version: ProtocolVersion
) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for words in arguments:
        if len(words) < 3:
            raise CommandError("Error: -D needs a command, a property and a value.")
        command, name, *values = words
        if command not in _PROPERTIES:
            raise CommandError(f"Error: Invalid command {command!r} given in -D.")
        into = found.setdefault(command, {})
        if name == "user-property":
            if len(values) != 2:
                raise CommandError("Error: -D ... user-property needs a key and a value.")
            into.setdefault("user_properties", []).append((values[0], values[1]))
            continue
        known = _PROPERTIES[command]
        if name not in known:
            raise CommandError(f"Error: Invalid property {name!r} for command {command!r}.")
        if len(values) != 1:
            raise CommandError(f"Error: -D {command} {name} needs one value.")
        keyword, parse = known[name]
        try:
            into[keyword] = parse(values[0])
        except ValueError as exc:
            raise CommandError(f"Error: Invalid value for {name}: {exc}.") from None
    if found and version != ProtocolVersion.MQTT_5_0:
        raise CommandError("Error: -D properties need MQTT 5 (-V 5).")
    for properties in found.values():
        if "user_properties" in properties:
            properties["user_properties"] = tuple(properties["user_properties"])
    return found


def _tls_context(args: argparse.Namespace, url_tls: bool) -> ssl.SSLContext | None:
    wanted = (
        url_tls
        or any(value is not None for value in (args.cafile, args.capath, args.cert))
        or args.insecure
    )
    if not wanted:
        return None
    if args.key is not None and args.cert is None:
        raise CommandError("Error: --key needs --cert.")
    try:
        context = ssl.create_default_context(cafile=args.cafile, capath=args.capath)
        if args.cert is not None:
            context.load_cert_chain(args.cert, args.key)
    except (OSError, ssl.SSLError) as exc:
        raise CommandError(f"Error: Problem setting TLS options: {exc}.") from None
    if args.insecure:
        context.check_hostname = False
    return context


def client_settings(
    args: argparse.Namespace, *, default_version: ProtocolVersion, prefix: str
) -> ClientSettings:
    """Resolve the options (``-L`` first, explicit flags win).

    :raises CommandError: conflicting or invalid options.
    """
    host, port, topics = args.host, args.port, list(args.topics)
    username, password = args.username, args.password
    url_tls = False
    if args.url is not None:
        url = urllib.parse.urlsplit(args.url)
        if url.scheme not in ("mqtt", "mqtts"):
            raise CommandError("Error: Unsupported URL scheme (mqtt:// or mqtts://).")
        url_tls = url.scheme == "mqtts"
        try:
            url_port = url.port
        except ValueError:
            raise CommandError("Error: Invalid port in URL.") from None
        host = host or url.hostname
        port = port if port is not None else url_port
        username = username or (urllib.parse.unquote(url.username) if url.username else None)
        password = password or (urllib.parse.unquote(url.password) if url.password else None)
        topic = urllib.parse.unquote(url.path[1:]) if url.path.startswith("/") else ""
        if topic:
            topics.insert(0, topic)
    version = args.version or default_version
    if password is not None and username is None and version != ProtocolVersion.MQTT_5_0:
        raise CommandError("Error: A password needs a username (-u) before MQTT 5.")
    tls = _tls_context(args, url_tls)
    arguments = list(args.properties)
    if args.session_expiry is not None:
        arguments.append(["connect", "session-expiry-interval", str(args.session_expiry)])
    properties = _parse_properties(arguments, version)
    will = None
    if args.will_topic is not None:
        from .packets import Will

        try:
            will = Will(
                args.will_topic,
                (args.will_payload or "").encode(),
                args.will_qos,
                args.will_retain,
                **properties.pop("will", {}),
            )
        except (TypeError, ValueError) as exc:
            raise CommandError(f"Error: Invalid will: {exc}.") from None
    elif args.will_payload is not None or args.will_retain:
        raise CommandError("Error: Will payload or retain given without a will topic.")
    transport = "tcp"
    if args.unix is not None:
        transport, host = "unix", args.unix
    elif args.ws:
        transport = "websocket"
    client_id = args.client_id
    if client_id is None:
        # Like mosquitto's "mosq-<random>": a 3.1 server needs an id.
        import secrets

        client_id = f"{prefix}-{secrets.token_hex(6)}"
    if port is None and transport != "websocket":
        port = 8883 if tls is not None else 1883
    return ClientSettings(
        host=host or "localhost",
        port=port,
        transport=transport,
        websocket_path=args.ws_path,
        tls=tls,
        client_id=client_id,
        version=version,
        username=username,
        password=password,
        keep_alive=args.keepalive,
        clean_start=args.clean,
        will=will,
        connect_properties=properties.pop("connect", {}),
        properties=properties,
        topics=topics,
        qos=args.qos,
    )


def describe_refusal(code: ReasonCode, version: ProtocolVersion) -> tuple[str, int]:
    """mosquitto's message and exit status for a refused CONNECT."""
    if version != ProtocolVersion.MQTT_5_0:
        return_code = code.to_connack_return_code()
        text = _V3_REFUSALS.get(return_code, f"Connection Refused: return code {return_code}.")
        return f"Connection error: {text}", return_code
    text = _V5_REASONS.get(int(code), code.name.replace("_", " ").capitalize())
    return f"Connection error: {text}", int(code)


def describe_connect_failure(exc: BaseException, settings: ClientSettings) -> CommandError:
    """A one-line error for a connection that did not come up."""
    from .adapters.asyncio import ConnectError

    where = settings.host if settings.transport == "unix" else f"{settings.host}:{settings.port}"
    if isinstance(exc, ConnectError) and exc.reason_code is not None:
        message, status = describe_refusal(ReasonCode(exc.reason_code), settings.version)
        return CommandError(message, status)
    if isinstance(exc, socket.gaierror):
        return CommandError(f"Error: Unable to connect to {where}: lookup error ({exc.strerror}).")
    if isinstance(exc, ssl.SSLError):
        return CommandError(f"Error: TLS error connecting to {where}: {exc.reason or exc}.")
    if isinstance(exc, TimeoutError):
        return CommandError(f"Error: Connecting to {where} timed out.")
    if isinstance(exc, OSError):
        # asyncio's "Connect call failed (...)": mosquitto prints the errno's
        # text alone ("Error: Connection refused").
        text = os.strerror(exc.errno) if exc.errno else str(exc)
        return CommandError(f"Error: {text}")
    return CommandError(f"Error: {exc}")


def reason_text(code: int) -> str:
    return _V5_REASONS.get(code, f"reason code 0x{code:02X}")


def run_client_command(main: Coroutine[Any, Any, int]) -> int:
    """Run a command's coroutine; SIGINT/SIGTERM end it cleanly with status 0."""

    async def guarded() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopped = []

        def stop() -> None:
            stopped.append(True)
            task.cancel()

        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop)
        try:
            return await main
        except asyncio.CancelledError:
            if stopped:
                return 0
            raise
        finally:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

    try:
        return asyncio.run(guarded())
    except CommandError as exc:
        print(exc, file=sys.stderr)
        return exc.status
