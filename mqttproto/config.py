"""Configuration: limits and behaviour switches, as frozen attrs classes.

Every buffer and queue a connection keeps has its bound here, so that no peer
can make a connection grow without limit.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._qos import MAX_PACKET_ID

__all__ = ["MAX_PACKET_SIZE", "BrokerConfig", "ClientConfig"]

#: The largest packet the protocol can express: a 1-byte header, a 4-byte
#: remaining length and 268,435,455 bytes of body.
MAX_PACKET_SIZE = 268_435_460


def _positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"{attribute.name} must be at least 1, not {value}")


def _packet_size(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 2 <= value <= MAX_PACKET_SIZE:
        raise ValueError(f"{attribute.name} must be between 2 and {MAX_PACKET_SIZE}, not {value}")


def _u16_positive(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= MAX_PACKET_ID:
        raise ValueError(f"{attribute.name} must be between 1 and 65535, not {value}")


def _u16(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= MAX_PACKET_ID:
        raise ValueError(f"{attribute.name} must be between 0 and 65535, not {value}")


def _optional_positive(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be positive or None, not {value!r}")


@attrs.frozen
class ClientConfig:
    """Limits and switches of a :class:`~mqttproto.ClientConnection`.

    The MQTT 5 values (``receive_maximum``, ``maximum_packet_size``,
    ``topic_alias_maximum``) are the defaults ``connect()`` announces to the
    server; ``connect()`` may override them for one connection. They are
    enforced on every protocol version.
    """

    #: The largest packet accepted from the server; a bigger one ends the
    #: connection with 0x95 *Packet too large*.
    maximum_packet_size: int = attrs.field(default=MAX_PACKET_SIZE, validator=_packet_size)
    #: How many QoS 1/2 messages the server may have unacknowledged with us.
    receive_maximum: int = attrs.field(default=MAX_PACKET_ID, validator=_u16_positive)
    #: How many topic aliases the server may define towards us (0: none).
    topic_alias_maximum: int = attrs.field(default=0, validator=_u16)
    #: Outgoing QoS 1/2 messages that may wait behind the server's Receive
    #: Maximum; ``publish()`` raises when the queue is full.
    max_queued_messages: int = attrs.field(default=1000, validator=_positive)
    #: Send PUBACK/PUBREC as soon as a message is received. When False the
    #: application calls ``acknowledge(packet_id)`` for each QoS 1/2 message.
    auto_acknowledge: bool = True
    #: Give repeated outgoing topics a topic alias, least recently used
    #: first out, within the server's Topic Alias Maximum.
    auto_topic_alias: bool = True
    #: Seconds to wait for PINGRESP (or any packet) after PINGREQ; None
    #: waits one keep-alive period.
    ping_timeout: float | None = attrs.field(default=None, validator=_optional_positive)
    #: Seconds to wait for CONNACK after CONNECT was sent; None waits forever.
    connect_timeout: float | None = attrs.field(default=30.0, validator=_optional_positive)


def _optional_u32(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not 0 <= value <= 0xFFFFFFFF:
        raise ValueError(f"{attribute.name} must be between 0 and 4294967295 or None")


def _optional_u16(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not 0 <= value <= MAX_PACKET_ID:
        raise ValueError(f"{attribute.name} must be between 0 and 65535 or None")


def _qos(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value not in (0, 1, 2):
        raise ValueError(f"{attribute.name} must be 0, 1 or 2, not {value!r}")


@attrs.frozen
class BrokerConfig:
    """Limits and switches of a :class:`~mqttproto.broker.Broker`.

    Whether anonymous clients may connect is the authenticator's business,
    not a setting here. The MQTT 5 values are announced to v5 clients in
    CONNACK and enforced on every protocol version.
    """

    #: The largest packet accepted from a client; a bigger one ends the
    #: connection with 0x95 *Packet too large* [MQTT-3.2.2-15 analogue].
    max_packet_size: int = attrs.field(default=1024 * 1024, validator=_packet_size)
    #: How many QoS 1/2 PUBLISH a client may have unacknowledged with us;
    #: more ends the connection with 0x93 [MQTT-3.3.4-9].
    receive_maximum: int = attrs.field(default=1024, validator=_u16_positive)
    #: How many topic aliases a client may define towards us (0: none).
    topic_alias_maximum: int = attrs.field(default=64, validator=_u16)
    #: The highest QoS the broker accepts and grants [MQTT-3.2.2-9].
    maximum_qos: int = attrs.field(default=2, validator=_qos)
    retain_available: bool = True
    wildcard_subscription_available: bool = True
    shared_subscription_available: bool = True
    subscription_identifiers_available: bool = True
    #: QoS 1/2 messages in flight to one client at once, whatever its own
    #: Receive Maximum says (the smaller of the two applies).
    max_inflight_messages: int = attrs.field(default=100, validator=_u16_positive)
    #: Messages waiting for one session: behind the in-flight window while
    #: connected, or while the client is away. The bound of every queue.
    max_queued_messages: int = attrs.field(default=1000, validator=_positive)
    #: Whether QoS 0 messages are queued for a persistent session whose
    #: client is away (the protocol allows either).
    queue_qos0_offline: bool = True
    max_subscriptions_per_session: int = attrs.field(default=1000, validator=_positive)
    #: Topic names and filters deeper than this are refused.
    max_topic_levels: int = attrs.field(default=64, validator=_positive)
    #: Seconds a new connection may stay silent before CONNECT arrives (and
    #: an enhanced authentication exchange may last); None: forever.
    connect_timeout: float | None = attrs.field(default=10.0, validator=_optional_positive)
    #: A keep-alive to impose on MQTT 5 clients (Server Keep Alive); None
    #: accepts what the client asks for.
    server_keep_alive: int | None = attrs.field(default=None, validator=_optional_u16)
    #: The longest Session Expiry Interval granted; a 3.1/3.1.1 persistent
    #: session expires after this too. None: as the client asks (3.x: never).
    max_session_expiry_interval: int | None = attrs.field(default=None, validator=_optional_u32)
    #: Seconds between ``$SYS/broker/...`` statistics; None: no ``$SYS``.
    sys_interval: float | None = attrs.field(default=None, validator=_optional_positive)
    #: How many topics' routing results are cached between subscription
    #: changes (the cache is emptied on any change, and when full).
    route_cache_size: int = attrs.field(default=4096, validator=_positive)
