"""Encode and decode MQTT control packets.

- :func:`decode_packet` decodes one complete packet;
- :func:`encode_packet` validates a packet for a protocol version and encodes it;
- :class:`PacketReader` splits a byte stream into packets incrementally, with a
  maximum packet size checked before any body is buffered;
- :func:`encode_ack` encodes a PUBACK, PUBREC, PUBREL or PUBCOMP without
  building it, and :class:`PreparedPublish` a PUBLISH once for many
  receivers (a server's fan-out), each with its own packet identifier.

The implementation is chosen at import time; :func:`codec_implementation`
tells which one is in use.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from ._codec import (
    IMPLEMENTATION,
    PacketReader,
    decode_packet,
    encode_ack,
    encode_packet,
    encode_publish_split,
)
from .enums import ProtocolVersion
from .packets import PublishPacket

__all__ = [
    "PacketReader",
    "PreparedPublish",
    "codec_implementation",
    "decode_packet",
    "encode_ack",
    "encode_packet",
    "encode_publish_split",
    "packet_id_bytes",
]


#: The two bytes of a packet identifier (1 to 65535), as a PUBLISH carries them.
packet_id_bytes: Callable[[int], bytes] = struct.Struct(">H").pack


def codec_implementation() -> str:
    """Return ``"cython"`` or ``"python"``: the codec implementation in use."""
    return IMPLEMENTATION


class PreparedPublish:
    """A PUBLISH encoded once for one protocol version, to be sent to many
    clients, each with its own packet identifier.

    ``packet`` is the message as every receiver gets it (QoS, retain flag,
    properties and Subscription Identifiers included); its ``packet_id`` is
    ignored. Give it to :meth:`ServerConnection.publish_prepared
    <mqttproto.server.ServerConnection.publish_prepared>`: the connection
    writes ``head``, the identifier it allocates and ``tail`` (QoS 0:
    ``head`` alone), with no copy of the payload and no encoding.

    :raises LocalProtocolError: the packet cannot be sent with ``version``
        (as :func:`encode_packet`).
    """

    __slots__ = ("head", "packet", "qos", "size", "tail", "v5", "version")

    def __init__(self, packet: PublishPacket, *, version: ProtocolVersion) -> None:
        self.head, self.tail = head, tail = encode_publish_split(packet, version=version)
        self.packet = packet
        self.version = version
        self.v5 = version == 5
        self.qos = qos = packet.qos
        #: Bytes on the wire, packet identifier included.
        self.size = len(head) + len(tail) + (2 if qos else 0)

    #: The two bytes of a packet identifier, between ``head`` and ``tail``.
    packet_id_bytes = staticmethod(struct.Struct(">H").pack)

    def __repr__(self) -> str:
        return f"PreparedPublish({self.packet!r}, version={self.version!r})"
