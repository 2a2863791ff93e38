"""What the broker servers log of a connection's life; no I/O.

The core does not log. A server names what it sees: the CONNACK (accepted;
from then on every line of the connection names its client id and
username) and the end of the connection, once, with who ended it and why:
the client's DISCONNECT and its reason code, the broker's DISCONNECT or
refusing CONNACK (logged as a WARNING when it is a failure), or the peer
closing the stream. The broker's packets are read from the bytes it hands
out, walking the fixed headers only, never on the hot path:
:func:`note_first_output` once per connection, and :func:`goodbye_reason`
and :func:`log_closed` once at its close.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, Protocol

from ..enums import ReasonCode

__all__ = [
    "PeerRecord",
    "goodbye_reason",
    "last_packet",
    "log_closed",
    "note_first_output",
    "peer_label",
]

logger = logging.getLogger("mqttproto.broker")

_CONNACK = 0x20
_DISCONNECT = 0xE0
_AUTH = 0xF0

#: MQTT 3.1/3.1.1 CONNACK return codes (section 3.2.2.3).
_V3_CONNACK_CODES = {
    1: "unacceptable protocol version",
    2: "identifier rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorized",
}


def _packets(data: bytes) -> Iterator[tuple[int, int, int]]:
    """``(first byte, body start, body end)`` of each complete packet in ``data``.

    Walks the fixed headers only (one step per packet); used to name the
    CONNACK and the goodbye the broker sends, never on the hot path.
    """
    pos = 0
    end = len(data)
    while pos < end:
        index = pos + 1
        length = 0
        shift = 0
        while True:
            if index >= end or shift > 21:
                return
            byte = data[index]
            index += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if index + length > end:
            return
        yield data[pos], index, index + length
        pos = index + length


def _first_packet(data: bytes) -> tuple[int, bytes] | None:
    for first, start, stop in _packets(data):
        return first, data[start:stop]
    return None


def last_packet(data: bytes) -> tuple[int, bytes] | None:
    """``(first byte, body)`` of the last complete packet in ``data``."""
    found = None
    for packet in _packets(data):
        found = packet
    if found is None:
        return None
    first, start, stop = found
    return first, data[start:stop]


def _reason_name(code: int) -> str:
    try:
        return f"{ReasonCode(code).name} (0x{code:02X})"
    except ValueError:
        return f"reason code 0x{code:02X}"


def _connack_refusal(body: bytes) -> str | None:
    """None if a CONNACK body accepts the connection, else why it refuses."""
    code = body[1] if len(body) >= 2 else 0
    if code == 0:
        return None
    if code in _V3_CONNACK_CODES:
        return f"{_V3_CONNACK_CODES[code]} (return code {code})"
    return _reason_name(code)


def _describe_goodbye(first: int, body: bytes) -> tuple[str, bool] | None:
    """``(description, is_failure)`` of a CONNACK refusal or a DISCONNECT."""
    kind = first & 0xF0
    if kind == _CONNACK:
        refusal = _connack_refusal(body)
        return None if refusal is None else (f"CONNECT refused: {refusal}", True)
    if kind == _DISCONNECT:
        code = body[0] if body else 0
        failure = code >= 0x80 and code != ReasonCode.SERVER_SHUTTING_DOWN
        return f"broker sent DISCONNECT {_reason_name(code)}", failure
    return None


class PeerRecord(Protocol):
    """What the log helpers read and write on a server's per-connection object."""

    conn: int
    peer: str
    #: Whether the first CONNACK has gone out (logged once).
    accepted: bool
    close_reason: str | None


class FailedGoodbye(str):
    """A close reason that names a failure: its "closed" line is a WARNING, and
    the only line about it (a refused CONNECT is logged once). The severity
    travels with the reason (kept as the peer's ``close_reason``), so no table
    outlives the connection."""

    __slots__ = ()


def _identity(broker: Any, conn: int) -> str:
    """`` (client 'id', user 'name')`` once the CONNECT named them, else ``""``."""
    found = broker.connection_identity(conn) if broker is not None else None
    if found is None:
        return ""
    client_id, username = found
    user = "anonymous" if username is None else f"user {username!r}"
    return f" (client {client_id!r}, {user})"


def peer_label(peer: PeerRecord, broker: Any = None) -> str:
    """How the log names a connection: its address (``peer.peer``) and, once
    the CONNACK went out, its client id and username. Those are asked of the
    broker each time a line is logged, not kept for each connection, so it
    must be called before the broker hears that the connection is lost."""
    if not peer.accepted:
        return peer.peer
    return peer.peer + _identity(broker, peer.conn)


def note_first_output(peer: PeerRecord, data: bytes, broker: Any = None) -> None:
    """Log the CONNACK, the first packet the broker sends (AUTH may precede it).

    From here on, the connection's lines name its client id and username
    (:func:`peer_label`). A refusal is not logged here but as the reason
    of the connection's "closed" line, so that it is logged once.
    """
    first = data[0]
    if first & 0xF0 == _AUTH:
        return
    peer.accepted = True
    if first & 0xF0 != _CONNACK:
        return
    packet = _first_packet(data)
    refusal = _connack_refusal(packet[1]) if packet is not None else None
    if refusal is None:
        logger.info("connection %d from %s: CONNECT accepted", peer.conn, peer_label(peer, broker))


def _broker_goodbye(broker: Any, conn: int) -> str | None:
    """What the broker knows of the end: the client's DISCONNECT, or the
    reason the broker ended a connection without a packet (MQTT 3.x)."""
    goodbye = broker.connection_goodbye(conn) if broker is not None else None
    if goodbye is None:
        return None
    code = goodbye.reason_code
    if goodbye.by_client:
        name = "NORMAL_DISCONNECTION (0x00)" if code == 0 else _reason_name(code)
        return f"client sent DISCONNECT {name}"
    return f"closed by the broker: {_reason_name(code)}"


def _broker_failure(broker: Any, conn: int) -> bool:
    goodbye = broker.connection_goodbye(conn) if broker is not None else None
    return (
        goodbye is not None
        and not goodbye.by_client
        and goodbye.reason_code >= 0x80
        and goodbye.reason_code != ReasonCode.SERVER_SHUTTING_DOWN
    )


def goodbye_reason(peer: PeerRecord, written: bytes | None, broker: Any = None) -> str:
    """Name who ended the connection and why (a failure as a
    :class:`FailedGoodbye`, which :func:`log_closed` logs as a WARNING); ``written`` is what the
    broker's last flush had for it, if anything (the goodbye ends it)."""
    if peer.close_reason is not None:
        return peer.close_reason
    packet = last_packet(written) if written else None
    described = _describe_goodbye(*packet) if packet is not None else None
    if described is None:
        told = _broker_goodbye(broker, peer.conn)
        if told is None:
            return "closed by the broker"
        return FailedGoodbye(told) if _broker_failure(broker, peer.conn) else told
    text, failure = described
    return FailedGoodbye(text) if failure else text


def log_closed(peer: PeerRecord, reason: str, broker: Any = None) -> None:
    """The one line that says a connection is over, who closed it and why."""
    level = logging.WARNING if isinstance(reason, FailedGoodbye) else logging.INFO
    label = peer_label(peer, broker)
    logger.log(level, "connection %d from %s closed: %s", peer.conn, label, reason)
