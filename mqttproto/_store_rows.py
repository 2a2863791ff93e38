"""Rows of the :class:`~mqttproto.store.SQLiteStore` file: how packets,
wills and subscriptions are written in its columns and read back, and
:class:`_Rows`, the writes of one commit. The file's schema and the store
itself are in ``_store_sqlite.py``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

import attrs

from ._codec import decode_packet, encode_packet, encode_publish_split
from ._store_records import StoredMessage, StoredSession, StoredSubscription
from .enums import ProtocolVersion, QoS, RetainHandling
from .packets import PublishPacket, Will

__all__ = [
    "_Rows",
    "_decode_publish",
    "_decode_subscriptions",
    "_decode_will",
    "_encode_publish",
    "_encode_subscriptions",
    "_encode_will",
    "_head",
    "_same",
]

_V5 = ProtocolVersion.MQTT_5_0


def _head(session: StoredSession) -> tuple[Any, ...]:
    return (
        session.session_expiry_interval,
        session.expires_at,
        session.username,
        session.subscriptions,
        session.awaiting_release,
        session.will,
        session.will_due,
    )


def _same(a: StoredMessage, b: StoredMessage) -> bool:
    return a is b or a == b


def _encode_publish(packet: PublishPacket) -> bytes:
    if packet.qos and packet.packet_id is None:
        # A queued message gets its identifier when it is sent; the wire
        # form needs one, which _decode_publish takes away again.
        packet = attrs.evolve(packet, packet_id=1)
    return encode_packet(packet, version=_V5)


def _decode_publish(data: bytes, *, keep_id: bool) -> PublishPacket:
    packet = decode_packet(data, version=_V5)
    assert isinstance(packet, PublishPacket)
    if not keep_id and packet.packet_id is not None:
        packet = attrs.evolve(packet, packet_id=None)
    return packet


def _encode_will(will: Will) -> bytes:
    return _encode_publish(
        PublishPacket(
            will.topic,
            will.payload,
            will.qos,
            will.retain,
            payload_format_indicator=will.payload_format_indicator,
            message_expiry_interval=will.message_expiry_interval,
            content_type=will.content_type,
            response_topic=will.response_topic,
            correlation_data=will.correlation_data,
            user_properties=will.user_properties,
        )
    )


def _decode_will(data: bytes, delay: int | None) -> Will:
    p = _decode_publish(data, keep_id=False)
    return Will(
        p.topic,
        p.payload,
        p.qos,
        p.retain,
        will_delay_interval=delay,
        payload_format_indicator=p.payload_format_indicator,
        message_expiry_interval=p.message_expiry_interval,
        content_type=p.content_type,
        response_topic=p.response_topic,
        correlation_data=p.correlation_data,
        user_properties=p.user_properties,
    )


def _encode_subscriptions(subscriptions: Iterable[StoredSubscription]) -> str:
    return json.dumps(
        [
            [
                s.topic_filter,
                int(s.qos),
                s.no_local,
                s.retain_as_published,
                int(s.retain_handling),
                s.subscription_identifier,
            ]
            for s in subscriptions
        ]
    )


def _decode_subscriptions(text: str) -> tuple[StoredSubscription, ...]:
    return tuple(
        StoredSubscription(f, QoS(q), bool(nl), bool(rap), RetainHandling(rh), sid)
        for f, q, nl, rap, rh, sid in json.loads(text)
    )


class _Rows:
    """One commit's row changes, written with one ``executemany`` per kind.

    Deletions go first: within one commit a session's rows are only ever
    deleted below the numbers its new rows get, so the order is safe. A
    message shared by many sessions (one fan-out) is encoded once.
    """

    def __init__(self, offset: float) -> None:
        self.offset = offset
        self.gone: list[tuple[str]] = []
        self.sessions: list[tuple[Any, ...]] = []
        self.inflight: list[tuple[Any, ...]] = []
        self.inflight_changed: list[tuple[Any, ...]] = []
        self.inflight_gone: list[tuple[str, int]] = []
        self.queued: list[tuple[Any, ...]] = []
        self.queue_gone: list[tuple[str, int]] = []
        self.retained: list[tuple[Any, ...]] = []
        self.retained_gone: list[tuple[str]] = []
        self._split: dict[int, tuple[PublishPacket, bytes, bytes]] = {}

    def wall(self, when: float | None) -> float | None:
        return None if when is None else when + self.offset

    def encode(self, packet: PublishPacket, packet_id: int | None) -> bytes:
        """The PUBLISH in MQTT 5 (a queued QoS 1/2 one with identifier 1,
        which :func:`_decode_publish` takes away again)."""
        if not packet.qos:
            return encode_packet(packet, version=_V5)
        split = self._split.get(id(packet))
        if split is None:
            head, tail = encode_publish_split(packet, version=_V5)
            # The packet is kept with its parts: its id stays its own.
            split = self._split[id(packet)] = (packet, head, tail)
        return split[1] + (packet_id or 1).to_bytes(2, "big") + split[2]

    def queue(self, cid: str, seq: int, message: StoredMessage) -> None:
        self.queued.append(
            (seq, cid, self.wall(message.expires_at), self.encode(message.packet, None))
        )

    def write(self, db: sqlite3.Connection) -> None:
        run = db.executemany
        for table in ("sessions", "inflight", "queued"):
            if self.gone:
                run(f"DELETE FROM {table} WHERE client_id = ?", self.gone)
        if self.inflight_gone:
            run("DELETE FROM inflight WHERE client_id = ? AND packet_id = ?", self.inflight_gone)
        if self.queue_gone:
            run("DELETE FROM queued WHERE client_id = ? AND seq < ?", self.queue_gone)
        if self.retained_gone:
            run("DELETE FROM retained WHERE topic = ?", self.retained_gone)
        if self.sessions:
            run("INSERT OR REPLACE INTO sessions VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", self.sessions)
        if self.inflight_changed:
            run(
                "UPDATE inflight SET released = ?, expires_at = ?, packet = ?"
                " WHERE client_id = ? AND packet_id = ?",
                self.inflight_changed,
            )
        if self.inflight:
            run("INSERT OR REPLACE INTO inflight VALUES (?, ?, ?, ?, ?, ?)", self.inflight)
        if self.queued:
            run("INSERT INTO queued VALUES (?, ?, ?, ?)", self.queued)
        if self.retained:
            run("INSERT OR REPLACE INTO retained VALUES (?, ?, ?)", self.retained)
