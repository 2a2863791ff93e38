"""Bridges: the broker as an MQTT client of other brokers (see ``docs/bridging.rst``).

A :class:`BridgeConfig` says where a bridge connects and which topics it
forwards which way (:class:`TopicRule`, mosquitto's topic lines). Pass a
list of them to the asyncio broker server::

    from mqttproto.adapters.asyncio import start_server
    from mqttproto.bridge import BridgeConfig

    server = await start_server(port=1883, bridges=[
        BridgeConfig("central", "mqtt.example.com:1883",
                     topics=["sensors/# out 1", "commands/# in 1"]),
    ])
    print(server.bridges[0].state)   # "connected", "connecting" or "down"

or write the same as a ``[[bridge]]`` table in the broker's TOML file.
Nothing here does I/O; the bridge itself runs in
:mod:`mqttproto.adapters._bridge`.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import Any

import attrs

from ._bridge_state import BridgeStatus
from ._bridge_topics import Direction, TopicRule, parse_topic_line
from .errors import ProtocolError
from .topics import validate_topic_name

__all__ = [
    "BridgeConfig",
    "BridgeStatus",
    "Direction",
    "TopicRule",
    "parse_address",
    "parse_topic_line",
]

DEFAULT_PORT = 1883


def parse_address(text: str) -> tuple[str, int]:
    """``(host, port)`` of ``"HOST:PORT"``, ``"HOST"`` (port 1883) or ``"[V6]:PORT"``.

    :raises ValueError: an empty host or a port outside 1..65535.
    """
    if not isinstance(text, str):
        raise ValueError(f'an address must be a string "HOST:PORT", not {text!r}')
    host, port_text = text.strip(), ""
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (end + 1 < len(host) and host[end + 1] != ":"):
            raise ValueError(f"address {text!r}: expected [IPV6]:PORT")
        host, port_text = host[1:end], host[end + 2 :]
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    elif ":" in host:
        raise ValueError(f"address {text!r}: write an IPv6 address as [ADDRESS]:PORT")
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"address {text!r}: no host")
    if not port_text:
        return host, DEFAULT_PORT
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"address {text!r}: the port must be 1..65535")
    return host, int(port_text)


def _addresses(value: str | Iterable[str]) -> tuple[tuple[str, int], ...]:
    texts = [value] if isinstance(value, str) else list(value)
    if not texts:
        raise ValueError('address: at least one "HOST:PORT" is needed')
    return tuple(parse_address(text) for text in texts)


def _rules(value: Iterable[TopicRule | str]) -> tuple[TopicRule, ...]:
    if isinstance(value, str):
        value = [value]
    rules = []
    for item in value:
        if isinstance(item, TopicRule):
            rules.append(item)
            continue
        try:
            rules.append(parse_topic_line(item))
        except ValueError as exc:
            raise ValueError(f"topic {item!r}: {exc}") from None
    return tuple(rules)


def _name(instance: BridgeConfig, attribute: attrs.Attribute[str], value: str) -> None:
    if not value or not all(c.isalnum() or c in "-_." for c in value):
        raise ValueError(f"name {value!r}: letters, digits, '-', '_' and '.' only, not empty")


def _positive(instance: BridgeConfig, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number, not {value!r}")


def _keep_alive(instance: BridgeConfig, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise ValueError(f"keep_alive must be an integer 0..65535, not {value!r}")


def _version(instance: BridgeConfig, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or value not in (4, 5):
        raise ValueError(f"protocol_version must be 4 (MQTT 3.1.1) or 5, not {value!r}")


def _non_empty(instance: BridgeConfig, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty string, not {value!r}")


@attrs.frozen
class BridgeConfig:
    """One bridge: the remote broker, how to connect to it, what to forward.

    The names are mosquitto's (``address``, ``topic``, ``notifications``,
    ``restart_timeout``...), as the keys of a ``[[bridge]]`` table are.

    :ivar name: names the bridge in the log, the status and the default client id.
    :ivar addresses: ``"HOST:PORT"`` (or several: tried in turn, for
        fail-over), read into ``(host, port)`` pairs.
    :ivar topics: :class:`TopicRule` objects, or topic lines
        ``"PATTERN [in|out|both [QOS [LOCAL_PREFIX REMOTE_PREFIX]]]"``.
    :ivar client_id: the client id on the remote broker (default
        ``HOSTNAME.NAME``, as mosquitto).
    :ivar local_client_id: the client id of the bridge's session on this
        broker (default ``local.CLIENT_ID``).
    :ivar username, password: for the remote broker.
    :ivar local_username: the identity the bridge has on this broker, for
        its ACL (as a verified identity: no password is checked). None: the
        bridge connects anonymously.
    :ivar protocol_version: 4 (MQTT 3.1.1, the default, as mosquitto) or 5.
    :ivar clean_start: start a new session on the remote broker at each
        connection (mosquitto's ``cleansession``).
    :ivar keep_alive: seconds, on the remote connection.
    :ivar try_private: on MQTT 3.1.1, tell the remote broker this is a
        bridge (protocol level | 0x80), which mosquitto answers by not
        sending the bridge's own messages back and keeping retain flags.
    :ivar notifications: publish the bridge's state, retained, ``1`` or
        ``0``, on :attr:`notification_topic` locally and on the remote
        broker (where the bridge's will says ``0``).
    :ivar notification_topic: default ``$SYS/broker/connection/CLIENT_ID/state``.
    :ivar restart_timeout: seconds before the first reconnection attempt;
        each failed attempt doubles it, with jitter, up to
        :attr:`restart_timeout_max`.
    :ivar tls: connect with TLS (implied by ``cafile`` or ``certfile``);
        without ``cafile``, the system's CA certificates.
    :ivar cafile, certfile, keyfile: PEM files: the CAs that sign the
        remote broker's certificate, the bridge's certificate and its key.
    :ivar insecure: do not check the remote certificate's host name.
    :ivar connect_timeout: seconds for TCP, TLS and CONNACK together.

    :raises ValueError: a value that cannot work (the message names the field).
    """

    name: str = attrs.field(validator=_name)
    addresses: tuple[tuple[str, int], ...] = attrs.field(converter=_addresses)
    topics: tuple[TopicRule, ...] = attrs.field(converter=_rules, default=())
    client_id: str = attrs.field(
        default=attrs.Factory(lambda self: f"{socket.gethostname()}.{self.name}", takes_self=True),
        validator=_non_empty,
    )
    local_client_id: str = attrs.field(
        default=attrs.Factory(lambda self: f"local.{self.client_id}", takes_self=True),
        validator=_non_empty,
    )
    username: str | None = attrs.field(default=None, kw_only=True)
    password: str | None = attrs.field(default=None, kw_only=True, repr=False)
    local_username: str | None = attrs.field(default=None, kw_only=True)
    protocol_version: int = attrs.field(default=4, kw_only=True, validator=_version)
    clean_start: bool = attrs.field(default=False, kw_only=True)
    keep_alive: int = attrs.field(default=60, kw_only=True, validator=_keep_alive)
    try_private: bool = attrs.field(default=True, kw_only=True)
    notifications: bool = attrs.field(default=True, kw_only=True)
    notification_topic: str = attrs.field(
        default=attrs.Factory(
            lambda self: f"$SYS/broker/connection/{self.client_id}/state", takes_self=True
        ),
        kw_only=True,
    )
    restart_timeout: float = attrs.field(default=5.0, kw_only=True, validator=_positive)
    restart_timeout_max: float = attrs.field(default=30.0, kw_only=True, validator=_positive)
    tls: bool = attrs.field(default=False, kw_only=True)
    cafile: str | None = attrs.field(default=None, kw_only=True)
    certfile: str | None = attrs.field(default=None, kw_only=True)
    keyfile: str | None = attrs.field(default=None, kw_only=True)
    insecure: bool = attrs.field(default=False, kw_only=True)
    connect_timeout: float = attrs.field(default=10.0, kw_only=True, validator=_positive)

    def __attrs_post_init__(self) -> None:
        try:
            validate_topic_name(self.notification_topic)
        except ProtocolError as exc:
            raise ValueError(f"notification_topic: {exc}") from None
        if self.local_client_id == self.client_id:
            raise ValueError("local_client_id must differ from client_id")
        if self.restart_timeout_max < self.restart_timeout:
            raise ValueError(
                f"restart_timeout_max ({self.restart_timeout_max}) is below "
                f"restart_timeout ({self.restart_timeout})"
            )
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("keyfile needs certfile")
        if self.password is not None and self.username is None and self.protocol_version != 5:
            raise ValueError("password needs username before MQTT 5")
        if not self.topics:
            raise ValueError("no topics: a bridge needs at least one topic line")

    @property
    def outgoing(self) -> tuple[TopicRule, ...]:
        """The rules that forward local messages (``out`` and ``both``)."""
        return tuple(rule for rule in self.topics if rule.outgoing)

    @property
    def incoming(self) -> tuple[TopicRule, ...]:
        """The rules that bring remote messages in (``in`` and ``both``)."""
        return tuple(rule for rule in self.topics if rule.incoming)

    @property
    def uses_tls(self) -> bool:
        """Whether the remote connection is TLS (``tls``, or a ``cafile`` or ``certfile``)."""
        return self.tls or self.cafile is not None or self.certfile is not None

    @property
    def address_text(self) -> str:
        """The addresses as the configuration wrote them."""
        return ", ".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in self.addresses)
