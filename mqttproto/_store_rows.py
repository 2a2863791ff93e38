"""Columns and rows of the :class:`~mqttproto.store.SQLiteStore` file: how
packets, wills, subscriptions and a session's own state are written and read
back, and how a session's deliveries become rows, one per run.
The file's schema and the store itself are in ``_store_sqlite.py``, what it
holds and the batch of changes pending in ``_store_batch.py``.

A ``deliveries`` row is a run of a session's deliveries: the keys ``seq`` to
``last``, key ``k`` holding message ``message + (k - seq)`` in state
``packet_id + (k - seq)`` (0 for the whole row: queued; positive: in flight
with that packet identifier; negative: in flight past PUBREC). The broker
queues a stream's messages for a session one after the other and sends them
with identifiers in turn, so one row holds what a commit wrote of a session,
and a run acknowledged together ends whole rows.
"""

from __future__ import annotations

import json
from bisect import bisect_right
from collections.abc import Iterable
from operator import eq
from typing import Any

import attrs

from ._codec import decode_packet, encode_packet, encode_publish_split
from ._store_records import StoredSession, StoredSubscription
from .enums import ProtocolVersion, QoS, RetainHandling
from .packets import PublishPacket, Will

__all__ = [
    "Row",
    "_coalesce",
    "_cut_rows",
    "_decode_publish",
    "_decode_subscriptions",
    "_decode_will",
    "_encode_message",
    "_encode_publish",
    "_encode_subscriptions",
    "_encode_will",
    "_insert_blocks",
    "_runs",
    "_session_row",
    "_shift_runs",
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


# -- deliveries as runs ----------------------------------------------------------------

#: A ``deliveries`` row as the store's picture keeps it, by its first key:
#: (last key, first message id, first state).
Row = tuple[int, int, int]
#: A row to write: (first key, last key, first message id, first state).
NewRow = tuple[int, int, int, int]


def _coalesce(deliveries: Iterable[tuple[int, int, int]]) -> list[NewRow]:
    """The deliveries ``(key, message id, state)``, in key order, as rows:
    consecutive keys of consecutive messages, all queued or in flight with
    states one apart, make one."""
    rows: list[NewRow] = []
    first = last = message = state = -2
    for seq, message_id, now in deliveries:
        if (
            seq == last + 1
            and message_id == message + (seq - first)
            and (not now if not state else now and now == state + (seq - first))
        ):
            last = seq
            continue
        if first >= 0:
            rows.append((first, last, message, state))
        first = last = seq
        message = message_id
        state = now
    if first >= 0:
        rows.append((first, last, message, state))
    return rows


def _cut_rows(
    rows: dict[int, Row], firsts: list[int], touched: list[tuple[int, int, int | None]]
) -> tuple[list[int], list[NewRow]]:
    """What the file's rows ``rows`` (``firsts``: their keys, sorted) become
    when the keys ``touched`` change: sorted, disjoint runs ``(first, last,
    shift)`` of keys that ended (``shift`` None) or took the state ``key +
    shift`` (sent from the queue, or past PUBREC). Returns the first keys of
    the rows cut and the rows that replace them (their keys not touched, and
    those that changed)."""
    cut: list[int] = []
    count = len(firsts)
    for a, b, _ in touched:
        i = bisect_right(firsts, a) - 1
        if i < 0:
            i = 0
        while i < count and firsts[i] <= b:
            first = firsts[i]
            if rows[first][0] >= a and (not cut or cut[-1] != first):
                cut.append(first)
            i += 1
    new: list[NewRow] = []
    k = 0
    for first in cut:
        last, message, state = rows[first]
        while touched[k][1] < first:
            k += 1
        pos = first
        t = k
        while t < len(touched) and touched[t][0] <= last:
            a, b, shift = touched[t]
            if a < first:
                a = first
            if b > last:
                b = last
            if pos < a:
                new.append((pos, a - 1, message + pos - first, state + pos - first if state else 0))
            if shift is not None:
                new.append((a, b, message + a - first, a + shift))
            pos = b + 1
            t += 1
        if pos <= last:
            new.append((pos, last, message + pos - first, state + pos - first if state else 0))
    return cut, new


#: Rows inserted by one statement: blocks of these many (4 parameters each
#: at most: far below the 999 parameters of the oldest SQLite).
_BLOCKS = (32, 16, 8, 4, 2, 1)


def _insert_blocks(
    head: str, values: str, flat: list[Any], width: int
) -> list[tuple[str, list[Any]]]:
    """The rows ``flat`` (``width`` parameters each, one after the other)
    inserted by ``head`` followed by ``values`` once per row: blocks of 32
    rows, the rest by 16, 8, 4, 2 and 1 (at most six statements, each
    prepared once): the sqlite3 module runs a statement per parameter row,
    and one of many rows costs little more than one of one."""
    out = []
    start = 0
    total = len(flat)
    for block in _BLOCKS:
        size = block * width
        end = start + (total - start) // size * size
        if end > start:
            sql = head + ", ".join([values] * block)
            out.append((sql, [flat[i : i + size] for i in range(start, end, size)]))
            start = end
    return out


def _shift_runs(changed: dict[int, int]) -> list[tuple[int, int, int]]:
    """The keys ``changed`` (key -> new state) as (first, last, state - key)
    runs of consecutive keys with one shift: the messages sent from the
    queue together, mostly one run."""
    # Mostly: the keys in turn, sent with identifiers in turn (a dict keeps
    # the order the keys were changed in), checked without a Python loop.
    count = len(changed)
    low = next(iter(changed))
    high = low + count - 1
    first = changed[low]
    if all(map(eq, changed, range(low, high + 1))) and all(
        map(eq, changed.values(), range(first, first + count))
    ):
        return [(low, high, first - low)]
    runs = []
    first = last = shift = -2
    for seq, state in sorted(changed.items()):
        if seq == last + 1 and state - seq == shift:
            last = seq
        else:
            if first >= 0:
                runs.append((first, last, shift))
            first = last = seq
            shift = state - seq
    if first >= 0:
        runs.append((first, last, shift))
    return runs


def _runs(keys: list[int]) -> list[tuple[int, int]]:
    """The distinct ``keys`` as (first, last) runs of consecutive keys (each
    key of a run is one of ``keys``): the messages of a stream, the copies
    acknowledged together."""
    if not keys:
        return []
    low = min(keys)
    high = max(keys)
    if high - low == len(keys) - 1:
        return [(low, high)]  # as many distinct keys as the range holds
    runs = []
    first = last = -2
    for key in sorted(keys):
        if key == last + 1:
            last = key
        else:
            if first >= 0:
                runs.append((first, last))
            first = last = key
    if first >= 0:
        runs.append((first, last))
    return runs
