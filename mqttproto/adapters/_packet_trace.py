"""``-vv``: a trace of the packets of every broker connection, on the
``mqttproto.broker.packets`` logger at DEBUG.

One line per packet, each way: its type, its packet id, the topic of a
PUBLISH, and its size in bytes. Never a payload, a password or any other
field of a CONNECT (its client id and username are on the connection's
"CONNECT accepted" line). Read from the fixed headers and the first bytes
of each packet: the input, which comes in arbitrary pieces, through a small
per-connection reassembly that keeps at most :data:`_PREFIX` bytes of a
packet and skips the rest. Costs one ``isEnabledFor`` per read when the
trace is off.
"""

from __future__ import annotations

import logging
from typing import Any

from ..enums import PacketType
from ._server_log import peer_label

__all__ = ["trace_closed", "trace_in", "trace_out"]

logger = logging.getLogger("mqttproto.broker.packets")

#: Bytes of a packet's body kept to describe it: a topic longer than this
#: is shown cut.
_PREFIX = 512
#: Packet types whose variable header starts with a packet id.
_WITH_ID = {4, 5, 6, 7, 8, 9, 10, 11}
_NAMES = {t.value: t.name for t in PacketType}


def _describe(first: int, body: bytes, size: int) -> str:
    kind = first >> 4
    name = _NAMES.get(kind, f"type {kind}")
    parts = [name]
    if kind == PacketType.PUBLISH:
        qos = (first >> 1) & 3
        topic_length = int.from_bytes(body[:2], "big")
        topic = body[2 : 2 + topic_length].decode("utf-8", "replace")
        parts.append(f"topic={topic!r}")
        parts.append(f"qos={qos}")
        if first & 1:
            parts.append("retain")
        if qos and len(body) >= 4 + topic_length:
            parts.append(f"id={int.from_bytes(body[2 + topic_length : 4 + topic_length], 'big')}")
    elif kind in _WITH_ID and len(body) >= 2:
        parts.append(f"id={int.from_bytes(body[:2], 'big')}")
    parts.append(f"{size} bytes")
    return " ".join(parts)


def _header(data: bytes | bytearray) -> tuple[int, int] | None:
    """``(header length, body length)``, None while incomplete."""
    length = shift = 0
    for index in range(1, min(len(data), 5)):
        byte = data[index]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return index + 1, length
    return None


class _Inbound:
    __slots__ = ("buffer", "skip")

    def __init__(self) -> None:
        self.buffer = bytearray()
        #: Body bytes of the current packet still to skip.
        self.skip = 0


#: Reassembly of each traced connection's input, by its peer object (the key
#: holds the peer, so a later peer can never be taken for a gone one).
_inbound: dict[Any, _Inbound] = {}


def _log(peer: Any, broker: Any, arrow: str, text: str) -> None:
    label = peer_label(peer, broker)
    logger.debug("connection %d from %s %s %s", peer.conn, label, arrow, text)


def trace_in(peer: Any, data: bytes, broker: Any = None) -> None:
    """Trace the packets completed (or begun far enough) by ``data`` from ``peer``."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    state = _inbound.get(peer)
    if state is None:
        state = _inbound[peer] = _Inbound()
    view = memoryview(data)
    while view:
        if state.skip:
            taken = min(state.skip, len(view))
            state.skip -= taken
            view = view[taken:]
            continue
        buffer = state.buffer
        header = _header(buffer)
        while header is None and view:
            buffer += view[:1]
            view = view[1:]
            header = _header(buffer) if len(buffer) > 1 else None
            if len(buffer) >= 5 and header is None:
                buffer.clear()  # not MQTT; the broker will say so
                return
        if header is None:
            return
        start, length = header
        wanted = min(length, _PREFIX)
        have = len(buffer) - start
        if have < wanted:
            taken = min(wanted - have, len(view))
            buffer += view[:taken]
            view = view[taken:]
            have += taken
            if have < wanted:
                return
        _log(peer, broker, "->", _describe(buffer[0], bytes(buffer[start:]), start + length))
        state.skip = length - have
        buffer.clear()


def trace_out(peer: Any, data: bytes, broker: Any = None) -> None:
    """Trace the packets of ``data`` (whole packets, as the broker hands them out)."""
    if not logger.isEnabledFor(logging.DEBUG):
        return
    pos = 0
    while pos < len(data):
        header = _header(data[pos : pos + 5])
        if header is None:
            return
        start, length = header
        body = data[pos + start : pos + start + min(length, _PREFIX)]
        _log(peer, broker, "<-", _describe(data[pos], body, start + length))
        pos += start + length


def trace_closed(peer: Any) -> None:
    """Forget ``peer``'s reassembly state."""
    _inbound.pop(peer, None)
