"""What ``mqttproto pub``, ``sub`` and ``rr`` share: the mosquitto-style
connection options, ``-L`` URLs, resolving them into :class:`ClientSettings`
(every fault a one-line :class:`CommandError` before anything connects), a
connected :class:`mqttproto.adapters.asyncio.Client` whose failures become
one-line errors too, and running a command's coroutine.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import ssl
import sys
import urllib.parse
from collections.abc import AsyncIterator
from typing import Any

import attrs

from ._cli_common import Parser, Subparsers
from ._cli_errors import (
    CONN_LOST,
    OVERSIZE_PACKET,
    QOS_NOT_SUPPORTED,
    RETAIN_NOT_SUPPORTED,
    CommandError,
    describe_connect_failure,
    describe_v5_reason,
)
from ._cli_packets import check_connect, make_will, parse_properties
from ._cli_tls import tls_context
from .enums import ProtocolVersion, QoS, ReasonCode

__all__ = [
    "ClientSettings",
    "CommandError",
    "add_client_parser",
    "client_settings",
    "connected",
    "describe_lost",
    "publish",
]

_VERSIONS = {
    "31": ProtocolVersion.MQTT_3_1,
    "mqttv31": ProtocolVersion.MQTT_3_1,
    "311": ProtocolVersion.MQTT_3_1_1,
    "mqttv311": ProtocolVersion.MQTT_3_1_1,
    "5": ProtocolVersion.MQTT_5_0,
    "mqttv5": ProtocolVersion.MQTT_5_0,
}

#: The Session Expiry Interval that never expires (mosquitto's -1 or ∞ for -x).
NEVER_EXPIRES = 0xFFFFFFFF


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
    #: -d: print every packet sent and received.
    debug: bool = False

    def client(self) -> Any:
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
        )


# -- argument types: each says what is wrong, not "invalid _type value" ----------


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
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 5 <= value <= 65535 and value != 0:
        raise argparse.ArgumentTypeError(
            f"keepalive must be 0 or between 5 and 65535, not {text!r}"
        )
    return value


def _session_expiry(text: str) -> int:
    """mosquitto's -x: seconds, or -1, 4294967295 or ∞ for never."""
    if text in ("-1", "∞"):
        return NEVER_EXPIRES
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"session-expiry-interval not a number: {text!r}"
        ) from None
    if not 0 <= value <= NEVER_EXPIRES:
        raise argparse.ArgumentTypeError(f"session-expiry-interval out of range: {text}")
    return value


def _port(text: str, where: str = "") -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise CommandError(f"Error: Invalid port given{where}: {text}")
    return value


def add_client_parser(subparsers: Subparsers, name: str, *, help: str, description: str) -> Parser:
    """A subcommand parser with the options every client command has."""
    parser: Parser = subparsers.add_parser(name, help=help, description=description, add_help=False)
    parser.add_argument("--help", action="help", help="show this help and exit")
    conn = parser.add_argument_group("connection")
    conn.add_argument("-h", "--host", help="the broker's host (localhost)")
    conn.add_argument("-p", "--port", help="its port, 1 to 65535 (1883; 8883 with TLS)")
    conn.add_argument("-L", "--url", help="mqtt(s)://[user[:password]@]host[:port]/topic")
    conn.add_argument("--unix", metavar="PATH", help="connect to a Unix socket")
    conn.add_argument("--ws", action="store_true", help="MQTT over WebSocket (needs wsproto)")
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
        help="keep the session when disconnected (needs -i)",
    )
    conn.add_argument(
        "-x",
        dest="session_expiry",
        type=_session_expiry,
        help="MQTT 5 session expiry interval in seconds; -1 or ∞: never "
        "(default: never with -c, else 0)",
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
    conn.add_argument(
        "-d", "--debug", action="store_true", help="print the packets sent and received"
    )
    tls = parser.add_argument_group("TLS")
    tls.add_argument("--cafile", help="CA certificates to trust (turns TLS on)")
    tls.add_argument("--capath", help="a directory of CA certificates (turns TLS on)")
    tls.add_argument("--cert", help="a client certificate (PEM; needs --key)")
    tls.add_argument("--key", help="its private key (PEM; needs --cert)")
    tls.add_argument("--insecure", action="store_true", help="do not check the server's host name")
    will = parser.add_argument_group("will")
    will.add_argument("--will-topic")
    will.add_argument("--will-payload")
    will.add_argument("--will-qos", type=_qos, default=QoS.AT_MOST_ONCE)
    will.add_argument("--will-retain", action="store_true")
    parser.add_argument("-t", "--topic", dest="topics", action="append", default=[])
    parser.add_argument("-q", "--qos", type=_qos, default=QoS.AT_MOST_ONCE)
    return parser


def _require_wsproto() -> None:
    try:
        import wsproto  # noqa: F401
    except ImportError:
        raise CommandError(
            "Error: --ws needs the wsproto package, which is not installed: "
            "pip install 'mqttproto[websocket]'"
        ) from None


def _from_url(
    args: argparse.Namespace,
) -> tuple[str | None, int | None, str | None, str | None, str | None, bool]:
    """host, port, username, password, topic and TLS from ``-L``."""
    url = urllib.parse.urlsplit(args.url)
    if url.scheme not in ("mqtt", "mqtts"):
        raise CommandError("Error: Unsupported URL scheme (mqtt:// or mqtts://).")
    port = None
    if ":" in url.netloc.rsplit("@", 1)[-1].rsplit("]", 1)[-1]:
        port = _port(url.netloc.rsplit(":", 1)[1], " in -L URL")
    username = urllib.parse.unquote(url.username) if url.username else None
    password = urllib.parse.unquote(url.password) if url.password else None
    topic = urllib.parse.unquote(url.path[1:]) if url.path.startswith("/") else ""
    return url.hostname, port, username, password, topic or None, url.scheme == "mqtts"


def client_settings(
    args: argparse.Namespace, *, default_version: ProtocolVersion, prefix: str
) -> ClientSettings:
    """Resolve the options (``-L`` first, explicit flags win).

    :raises CommandError: conflicting or invalid options.
    """
    host, topics = args.host, list(args.topics)
    port = None if args.port is None else _port(args.port)
    username, password = args.username, args.password
    url_tls = False
    if args.url is not None:
        url_host, url_port, url_user, url_password, url_topic, url_tls = _from_url(args)
        host = host or url_host
        port = port if port is not None else url_port
        username = username or url_user
        password = password or url_password
        if url_topic:
            topics.insert(0, url_topic)
    version = args.version or default_version
    if password is not None and username is None and version != ProtocolVersion.MQTT_5_0:
        raise CommandError("Error: A password needs a username (-u) before MQTT 5.")
    if args.unix is not None and (args.ws or args.url is not None or args.host is not None):
        raise CommandError("Error: --unix cannot be combined with --ws, -L or -h.")
    if args.ws:
        _require_wsproto()
    session_expiry = args.session_expiry
    if version == ProtocolVersion.MQTT_5_0:
        if session_expiry is None and not args.clean:
            # mosquitto: -c alone keeps an MQTT 5 session for ever.
            session_expiry = NEVER_EXPIRES
        if session_expiry == NEVER_EXPIRES and args.client_id is None:
            # A random id could never be used again: the session would be lost.
            raise CommandError(
                "Error: You must provide a client id if you are using an infinite session "
                "expiry interval."
            )
    elif session_expiry is not None:
        raise CommandError("Error: -x (session expiry interval) needs MQTT 5 (-V 5).")
    elif not args.clean and args.client_id is None:
        raise CommandError("Error: You must provide a client id if you are using the -c option.")
    tls = tls_context(args, url_tls)
    arguments = list(args.properties)
    if session_expiry is not None:
        arguments.append(["connect", "session-expiry-interval", str(session_expiry)])
    properties = parse_properties(arguments, version)
    will = None
    if args.will_topic is not None:
        will = make_will(
            args.will_topic,
            args.will_payload,
            args.will_qos,
            args.will_retain,
            properties.pop("will", {}),
        )
    elif args.will_payload is not None:
        raise CommandError("Error: Will payload given, but no will topic given.")
    elif args.will_retain:
        raise CommandError("Error: Will retain given, but no will topic given.")
    transport = "tcp"
    if args.unix is not None:
        transport, host = "unix", args.unix
    elif args.ws:
        transport = "websocket"
    client_id = args.client_id
    if client_id is None:
        # Like mosquitto's "mosq-<random>": a 3.1 server needs an id.
        client_id = f"{prefix}-{secrets.token_hex(6)}"
    if port is None and transport != "websocket":
        port = 8883 if tls is not None else 1883
    connect_properties = properties.pop("connect", {})
    check_connect(
        version=version,
        client_id=client_id,
        clean_start=args.clean,
        keep_alive=args.keepalive,
        username=username,
        password=password,
        will=will,
        properties=connect_properties,
    )
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
        connect_properties=connect_properties,
        properties=properties,
        topics=topics,
        qos=args.qos,
        debug=args.debug,
    )


# -- a connected client --------------------------------------------------------------


def describe_lost(exc: BaseException | None) -> str:
    """Why the connection ended, in mosquitto's words where it has some."""
    code = getattr(exc, "reason_code", None)
    if code is None or int(code) in (ReasonCode.UNSPECIFIED_ERROR, 0):
        return "The connection was lost."
    return f"The connection was lost ({describe_v5_reason(int(code))})."


def _operation_failure(exc: BaseException) -> CommandError:
    """A failure of publish/subscribe on a connected client, as one line."""
    from .adapters.asyncio import ConnectionLostError, PublishError

    if isinstance(exc, ConnectionLostError):
        return CommandError(f"Error: {describe_lost(exc)}", CONN_LOST)
    code = getattr(exc, "reason_code", None)
    if isinstance(exc, PublishError) and code is not None:
        return CommandError(f"Error: Publish failed: {describe_v5_reason(int(code))}.")
    text = str(exc).rstrip(".") or type(exc).__name__
    return CommandError(f"Error: {text[0].upper()}{text[1:]}.")


@contextlib.asynccontextmanager
async def connected(
    settings: ClientSettings, *, announce_subacks: bool = False
) -> AsyncIterator[Any]:
    """A connected client, disconnected at the end; every failure a :class:`CommandError`."""
    from .adapters.asyncio import ClientError
    from .errors import MQTTError

    try:
        client = settings.client()
    except (TypeError, ValueError) as exc:
        raise CommandError(f"Error: {exc}") from None
    if settings.debug:
        from ._cli_debug import PacketTrace

        PacketTrace(client, sys.stdout.buffer, announce_subacks=announce_subacks)
    try:
        await client.connect()
    except (OSError, TimeoutError, ClientError, EOFError) as exc:
        raise describe_connect_failure(exc, settings) from None
    except (MQTTError, ValueError, TypeError) as exc:
        # The CONNECT was checked before; this would be a rule of the
        # client's own that the check missed.
        raise CommandError(f"Error: {exc}") from None
    try:
        yield client
    except (ClientError, MQTTError, ValueError, TypeError) as exc:
        raise _operation_failure(exc) from None
    finally:
        with contextlib.suppress(Exception):
            await client.disconnect()


async def publish(
    client: Any, topic: str, payload: bytes, qos: QoS, retain: bool, properties: dict[str, Any]
) -> None:
    """Publish, first checking the limits the broker announced in its CONNACK.

    mosquitto_pub's message and libmosquitto's error number for each: the
    client would refuse the PUBLISH anyway, with an exception.
    """
    limits = client.connack
    if limits is not None:
        if qos > limits.maximum_qos:
            raise CommandError(
                "Error: Message QoS not supported on broker, try a lower QoS "
                f"(its maximum is {int(limits.maximum_qos)}).",
                QOS_NOT_SUPPORTED,
            )
        if retain and not limits.retain_available:
            raise CommandError(
                "Error: Retained messages are not supported on broker, publish without -r.",
                RETAIN_NOT_SUPPORTED,
            )
        if limits.maximum_packet_size is not None:
            from .codec import encode_packet
            from .packets import PublishPacket

            size = len(
                encode_packet(
                    PublishPacket(
                        topic, payload, qos, retain, False, 1 if qos else None, **properties
                    ),
                    version=client.core.version,
                )
            )
            if size > limits.maximum_packet_size:
                raise CommandError(
                    f"Error: Message too large for the broker: the PUBLISH packet is {size} "
                    f"bytes, its Maximum Packet Size is {limits.maximum_packet_size}.",
                    OVERSIZE_PACKET,
                )
    await client.publish(topic, payload, qos=qos, retain=retain, **properties)
