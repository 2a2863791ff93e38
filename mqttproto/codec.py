"""Encode and decode MQTT control packets.

- :func:`decode_packet` decodes one complete packet;
- :func:`encode_packet` validates a packet for a protocol version and encodes it;
- :class:`PacketReader` splits a byte stream into packets incrementally, with a
  maximum packet size checked before any body is buffered.

The implementation is chosen at import time; :func:`codec_implementation`
tells which one is in use.
"""

from __future__ import annotations

from ._codec import IMPLEMENTATION, PacketReader, decode_packet, encode_packet

__all__ = ["PacketReader", "codec_implementation", "decode_packet", "encode_packet"]


def codec_implementation() -> str:
    """Return ``"cython"`` or ``"python"``: the codec implementation in use."""
    return IMPLEMENTATION
