"""Encode and decode MQTT control packets.

- :func:`decode_packet` decodes one complete packet;
- :func:`encode_packet` validates a packet for a protocol version and encodes it;
- :class:`PacketReader` splits a byte stream into packets incrementally, with a
  maximum packet size checked before any body is buffered;
- :func:`encode_ack` encodes a PUBACK, PUBREC, PUBREL or PUBCOMP without
  building it, and :class:`PreparedPublish` a PUBLISH once for many
  receivers (a server's fan-out), each with its own packet identifier
  (:func:`prepare_publish` builds one without the cost of a class call).

The implementation is chosen at import time; :func:`codec_implementation`
tells which one is in use.
"""

from __future__ import annotations

from collections.abc import Callable

from ._codec import (
    IMPLEMENTATION,
    PacketReader,
    PreparedPublish,
    decode_packet,
    encode_ack,
    encode_packet,
    encode_publish_split,
    prepare_publish,
)

__all__ = [
    "PacketReader",
    "PreparedPublish",
    "codec_implementation",
    "decode_packet",
    "encode_ack",
    "encode_packet",
    "encode_publish_split",
    "packet_id_bytes",
    "prepare_publish",
]


#: The two bytes of a packet identifier (1 to 65535), as a PUBLISH carries them.
packet_id_bytes: Callable[[int], bytes] = PreparedPublish.packet_id_bytes


def codec_implementation() -> str:
    """Return ``"cython"`` or ``"python"``: the codec implementation in use."""
    return IMPLEMENTATION
