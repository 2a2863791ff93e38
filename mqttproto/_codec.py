"""Selects the codec implementation.

``_codec_py`` is the reference. The Cython twin ``_codec_c`` (same names,
same behaviour) is used when it was built, unless ``MQTTPROTO_PURE_PYTHON=1``.
"""

from __future__ import annotations

from ._codec_py import PacketReader, decode_packet, encode_packet

IMPLEMENTATION = "python"

__all__ = ["IMPLEMENTATION", "PacketReader", "decode_packet", "encode_packet"]
