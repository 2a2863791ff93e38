"""Columns of the :class:`~mqttproto.store.SQLiteStore` file: how packets,
wills, subscriptions and a session's own state are written and read back.
The file's schema and the store itself are in ``_store_sqlite.py``, what it
holds and the batch of changes pending in ``_store_batch.py``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import attrs

from ._codec import decode_packet, encode_packet, encode_publish_split
from ._store_records import StoredSession, StoredSubscription
from .enums import ProtocolVersion, QoS, RetainHandling
from .packets import PublishPacket, Will

__all__ = [
    "_decode_publish",
    "_decode_subscriptions",
    "_decode_will",
    "_encode_message",
    "_encode_publish",
    "_encode_subscriptions",
    "_encode_will",
    "_session_row",
]

_V5 = ProtocolVersion.MQTT_5_0


def _session_row(number: int, session: StoredSession, offset: float) -> tuple[Any, ...]:
    """The ``sessions`` row of a session (deadlines made wall-clock ones by ``offset``)."""
    will = session.will
    expires_at = session.expires_at
    will_due = session.will_due
    return (
        number,
        session.client_id,
        session.session_expiry_interval,
        None if expires_at is None else expires_at + offset,
        session.username,
        _encode_subscriptions(session.subscriptions),
        json.dumps(list(session.awaiting_release)),
        None if will is None else _encode_will(will),
        None if will is None else will.will_delay_interval,
        None if will_due is None else will_due + offset,
    )


def _encode_message(packet: PublishPacket) -> bytearray:
    """A stored message's PUBLISH in MQTT 5, a QoS 1/2 one with identifier 1
    (whatever its own: the identifier of a delivery is in its row), which
    :func:`_decode_publish` takes away again. A bytearray: the sqlite3
    module binds it without looking for an adapter, as it does for bytes."""
    head, tail = encode_publish_split(packet, version=_V5)
    data = bytearray(head)
    if packet.qos:
        data += b"\x00\x01"
        data += tail
    return data


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
