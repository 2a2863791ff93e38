"""Configuration: limits and behaviour switches, as frozen attrs classes.

Every buffer and queue a connection keeps has its bound here, so that no peer
can make a connection grow without limit.
"""

from __future__ import annotations

from typing import Any

import attrs

from ._qos import MAX_PACKET_ID

__all__ = ["MAX_PACKET_SIZE", "ClientConfig"]

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
    #: Packets ``publish()``, ``subscribe()`` and ``unsubscribe()`` may leave
    #: waiting for ``data_to_send`` before they raise: a bound on the output
    #: buffer of an application that publishes faster than it writes.
    max_unsent_packets: int = attrs.field(default=65536, validator=_positive)
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
