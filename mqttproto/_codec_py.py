"""The pure-Python packet codec: the reference implementation.

Three main entry points, re-exported from :mod:`mqttproto.codec`:

- :func:`decode_packet` decodes exactly one complete packet;
- :func:`encode_packet` validates a packet for a protocol version and encodes it;
- :class:`PacketReader` splits a byte stream into packets incrementally;

and the encoders of a server's hot paths, which build no packet per send:
:func:`encode_ack`, :func:`encode_publish_split` and :class:`PreparedPublish`.

Decoding is strict: every rule that can be checked on one packet is checked,
and every failure is a :class:`~mqttproto.RemoteProtocolError` subclass that
carries the reason code to put on the wire. Decoders read straight from the
stream buffer with offsets (``data``, ``pos``, ``end``) so that no packet body
is copied before it is parsed.

The Cython twin (``_codec_c.pyx``) mirrors this module name for name.
"""

from __future__ import annotations

from ._decode import decode_packet
from ._encode import encode_packet
from ._encode_server import PreparedPublish, encode_ack, encode_publish_split, prepare_publish
from ._reader import PacketReader

__all__ = [
    "PacketReader",
    "PreparedPublish",
    "decode_packet",
    "encode_ack",
    "encode_packet",
    "encode_publish_split",
    "prepare_publish",
]
