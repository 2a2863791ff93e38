"""Selects the codec implementation, once, at import time.

``_codec_py`` is the reference, and what mypy reads (the compiled twin has a
stub with the same signatures). The Cython twin ``_codec_c`` has the same
names and the same behaviour, only faster; it is used whenever it was built
(and then it also gives ``PublishPacket`` its C constructor), unless:

- ``MQTTPROTO_PURE_PYTHON=1``: the pure-Python codec, always;
- the extension does not import (not compiled, e.g. no C compiler at install
  time): the pure-Python codec, silently -- unless
  ``MQTTPROTO_REQUIRE_EXTENSIONS=1`` (set by CI), which turns the failed import
  into an error so that a missing build cannot pass unnoticed.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


if TYPE_CHECKING:
    from ._codec_py import (
        PacketReader,
        PreparedPublish,
        decode_packet,
        encode_ack,
        encode_packet,
        encode_publish_split,
        prepare_publish,
    )

    IMPLEMENTATION: str
elif _flag("MQTTPROTO_PURE_PYTHON"):
    from ._codec_py import (
        PacketReader,
        PreparedPublish,
        decode_packet,
        encode_ack,
        encode_packet,
        encode_publish_split,
        prepare_publish,
    )

    IMPLEMENTATION = "python"
else:
    try:
        from ._codec_c import (
            PacketReader,
            PreparedPublish,
            _use_compiled_constructors,
            decode_packet,
            encode_ack,
            encode_packet,
            encode_publish_split,
            prepare_publish,
        )
    except ImportError:
        if _flag("MQTTPROTO_REQUIRE_EXTENSIONS"):
            raise
        from ._codec_py import (
            PacketReader,
            PreparedPublish,
            decode_packet,
            encode_ack,
            encode_packet,
            encode_publish_split,
            prepare_publish,
        )

        IMPLEMENTATION = "python"
    else:
        # PublishPacket(...) through the twin's C constructor, which stores
        # what the Python __init__ stores (see _codec_c).
        _use_compiled_constructors(True)
        IMPLEMENTATION = "cython"

__all__ = [
    "IMPLEMENTATION",
    "PacketReader",
    "PreparedPublish",
    "decode_packet",
    "encode_ack",
    "encode_packet",
    "encode_publish_split",
    "prepare_publish",
]
