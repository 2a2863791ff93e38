"""A subscriber's run of PUBACKs handled in one call (``broker._acks``)
against the same bytes handled packet by packet.

Two brokers get the same random workload: QoS 1 (and some QoS 2)
subscribers of both versions behind small windows and queues, messages
with and without an expiry, reads of acknowledgements that mix known and
unknown packet ids, id 0, PUBACKs with a reason code, a PUBACK for a QoS 2
message, PUBREC, PINGREQ, subscribers that go and come back. One broker
gets each read whole or cut at random places (whole runs of plain PUBACKs
take the fast path, cut ones do not); the other gets every read one byte
at a time, which never does. What each client receives, what the store is
told, and the broker's counters must be the same.
"""

from __future__ import annotations

import random
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from mqttproto import (
    ConnectPacket,
    ProtocolVersion,
    PublishPacket,
    QoS,
    SubscribePacket,
    Subscription,
    encode_packet,
)
from mqttproto.broker import Broker
from mqttproto.codec import PacketReader
from mqttproto.config import BrokerConfig
from mqttproto.store import MemoryStore

V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1
TOPIC = "fan/qos1"


class LoggingStore(MemoryStore):
    """A durable-looking store that notes every call about messages."""

    durable = True

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[Any, ...]] = []

    def append_queued(self, client_id: str, message: Any) -> None:
        self.log.append(("append_queued", client_id, message.packet.payload))
        super().append_queued(client_id, message)

    def remove_queued(self, client_id: str, index: int) -> None:
        self.log.append(("remove_queued", client_id, index))
        super().remove_queued(client_id, index)

    def send_queued(self, client_id: str, packet_id: int) -> None:
        self.log.append(("send_queued", client_id, packet_id))
        super().send_queued(client_id, packet_id)

    def add_inflight(self, client_id: str, packet_id: int, message: Any) -> None:
        self.log.append(("add_inflight", client_id, packet_id, message.packet.payload))
        super().add_inflight(client_id, packet_id, message)

    def end_inflight(self, client_id: str, packet_id: int) -> None:
        self.log.append(("end_inflight", client_id, packet_id))
        super().end_inflight(client_id, packet_id)


class Subscriber:
    def __init__(self, name: str, version: ProtocolVersion, window: int, qos: int) -> None:
        self.name = name
        self.version = version
        self.window = window
        self.qos = qos
        #: The client's Topic Alias Maximum (MQTT 5): the broker's aliases.
        self.aliases = 2 if name.endswith("1") else 0
        self.conn = -1
        #: Packet id -> QoS of what it received and has not acknowledged.
        self.outstanding: dict[int, int] = {}
        self.reader = PacketReader(version=version)


class Twin:
    """One broker of the pair, fed the way it is told to."""

    def __init__(self, config: BrokerConfig, durable: bool, whole: bool, seed: int) -> None:
        self.store = LoggingStore() if durable else None
        self.broker = Broker(config, store=self.store)
        self.whole = whole
        self.cuts = random.Random(seed)

    def feed(self, conn: int, data: bytes, now: float) -> None:
        if not self.whole:
            for index in range(len(data)):
                self.broker.receive_data(conn, data[index : index + 1], now)
            return
        pos = 0
        while pos < len(data):
            # Mostly whole, sometimes cut anywhere (inside a packet too).
            step = len(data) if self.cuts.random() < 0.6 else self.cuts.randrange(1, 9)
            self.broker.receive_data(conn, data[pos : pos + step], now)
            pos += step

    def output(self, now: float) -> list[tuple[int, bytes]]:
        return sorted(self.broker.flush(now))

    def state(self) -> tuple[Any, ...]:
        b = self.broker
        return (
            b.messages_sent,
            b.messages_dropped,
            b.dropped_expired,
            b._held_bytes,
            tuple(b.messages_sent_by_qos),
            sorted(b.connections_to_close()),
            b.sessions(),
            None if self.store is None else _canonical(self.store.log),
            None if self.store is None else self.store.load_sessions(),
        )


def _canonical(log: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The store's log with each stretch of flows ended and queued messages
    sent for one client put as a run tells them: the ends first, then the
    sends, each in their order (the same changes: an identifier sent again
    is one ended before it, never one still to end)."""
    out: list[tuple[Any, ...]] = []
    stretch: list[tuple[Any, ...]] = []
    for call in [*log, ("end",)]:
        if call[0] in ("end_inflight", "send_queued") and (
            not stretch or stretch[0][1] == call[1]
        ):
            stretch.append(call)
            continue
        out += sorted(stretch, key=lambda c: c[0] != "end_inflight")
        stretch = []
        if call[0] in ("end_inflight", "send_queued"):
            stretch.append(call)
        elif call[0] != "end":
            out.append(call)
    return out


def _connect(sub: Subscriber, durable: bool) -> bytes:
    persistent = durable and sub.version == V5
    hello = ConnectPacket(
        sub.name,
        protocol_version=sub.version,
        clean_start=not persistent,
        keep_alive=0,
        session_expiry_interval=60 if persistent else None,
        receive_maximum=sub.window if sub.version == V5 else None,
        topic_alias_maximum=sub.aliases if sub.version == V5 else None,
    )
    return encode_packet(hello, version=sub.version)


def _acks(rng: random.Random, sub: Subscriber) -> bytes:
    """A read of acknowledgements, mostly plain PUBACKs of what it holds."""
    ids = list(sub.outstanding)
    rng.shuffle(ids)
    ids = ids[: rng.randrange(len(ids) + 1)]
    parts = []
    for packet_id in ids:
        qos = sub.outstanding[packet_id]
        roll = rng.random()
        if qos == 2:
            # PUBREC (the flow goes on), or a PUBACK: a protocol error.
            kind = 0x50 if roll < 0.8 else 0x40
            parts.append(bytes([kind, 2]) + packet_id.to_bytes(2, "big"))
        elif roll < 0.05 and sub.version == V5:
            parts.append(b"\x40\x03" + packet_id.to_bytes(2, "big") + b"\x10")  # with a code
        else:
            parts.append(b"\x40\x02" + packet_id.to_bytes(2, "big"))
        if roll > 0.97:
            parts.append(b"\xc0\x00")  # PINGREQ
    if rng.random() < 0.2:
        parts.insert(
            rng.randrange(len(parts) + 1), b"\x40\x02" + rng.randrange(1, 9).to_bytes(2, "big")
        )
    if rng.random() < 0.03:
        parts.insert(rng.randrange(len(parts) + 1), b"\x40\x02\x00\x00")  # id 0: malformed
    return b"".join(parts)


def _received(sub: Subscriber, data: bytes) -> None:
    for packet in sub.reader.feed(data):
        if isinstance(packet, PublishPacket) and packet.qos:
            assert packet.packet_id is not None
            sub.outstanding[packet.packet_id] = int(packet.qos)


def _run(seed: int) -> None:
    rng = random.Random(seed)
    durable = rng.random() < 0.4
    config = BrokerConfig(
        max_inflight_messages=rng.choice([2, 3, 20]),
        max_queued_messages=rng.choice([3, 8, 100]),
        max_queued_bytes=rng.choice([60, 10**6]),
        memory_limit=rng.choice([None, None, 150]),
    )
    twins = [Twin(config, durable, True, seed), Twin(config, durable, False, seed)]
    now = 0.0
    subscribers = [
        Subscriber(
            f"s{i}", rng.choice([V5, V311]), rng.randrange(1, 5), 2 if rng.random() < 0.2 else 1
        )
        for i in range(rng.randrange(1, 4))
    ]

    def deliver(conn: int, data: bytes) -> None:
        for twin in twins:
            twin.feed(conn, data, now)
        outputs = [twin.output(now) for twin in twins]
        assert outputs[0] == outputs[1]
        for conn_id, out in outputs[0]:
            for sub in subscribers:
                if sub.conn == conn_id:
                    _received(sub, out)

    def connect(sub: Subscriber) -> None:
        conns = [twin.broker.open_connection(now) for twin in twins]
        assert conns[0] == conns[1]
        sub.conn = conns[0]
        sub.outstanding.clear()
        sub.reader = PacketReader(version=sub.version)
        deliver(sub.conn, _connect(sub, durable))

    for sub in subscribers:
        connect(sub)
        subscribe = SubscribePacket(1, [Subscription(TOPIC, QoS(sub.qos))])
        deliver(sub.conn, encode_packet(subscribe, version=sub.version))
    pub = twins[0].broker.open_connection(now)
    assert twins[1].broker.open_connection(now) == pub
    deliver(pub, encode_packet(ConnectPacket("pub", keep_alive=0), version=V5))
    next_id = 1
    for step in range(40):
        now += rng.choice([0.0, 0.5, 2.0])
        roll = rng.random()
        if roll < 0.45:
            burst = []
            for _ in range(rng.randrange(1, 6)):
                qos = rng.choice([0, 1, 1, 1, 2])
                expiry = rng.choice([None, None, None, 1, 5])
                packet = PublishPacket(
                    TOPIC,
                    f"m{step}.{len(burst)}".encode(),
                    QoS(qos),
                    packet_id=next_id if qos else None,
                    message_expiry_interval=expiry,
                )
                next_id = next_id % 60000 + 1
                burst.append(encode_packet(packet, version=V5))
            deliver(pub, b"".join(burst))
        elif roll < 0.93:
            sub = rng.choice(subscribers)
            data = _acks(rng, sub)
            if data:
                deliver(sub.conn, data)
                if data.startswith(b"\x40\x02") and rng.random() < 0.5:
                    # Sent again: every id unknown by now, a late duplicate.
                    deliver(sub.conn, data)
        else:
            sub = rng.choice(subscribers)
            for twin in twins:
                twin.broker.connection_lost(sub.conn, now)
            connect(sub)  # a persistent session resumes: unacknowledged ones again, DUP
        states = [twin.state() for twin in twins]
        assert states[0] == states[1]
    assert twins[0].broker.messages_sent == twins[1].broker.messages_sent


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32))
# 149: a stray PUBACK, in a run, for the identifier the run gave out just
# before, which the store must hear of after that send.
@example(seed=149)
def test_puback_runs_match_packet_by_packet(seed: int) -> None:
    _run(seed)


def test_a_run_in_the_fast_path_is_taken() -> None:
    """The workload does reach the run (a plain PUBACK read, whole)."""
    broker = Broker()
    calls: list[int] = []
    original = broker._puback_run

    def spy(link: Any, data: bytes, now: float) -> int:
        done = original(link, data, now)
        calls.append(done)
        return done

    broker._puback_run = spy  # type: ignore[method-assign]
    sub = broker.open_connection(0.0)
    broker.receive_data(sub, encode_packet(ConnectPacket("s", keep_alive=0), version=V5), 0.0)
    subscribe = SubscribePacket(1, [Subscription(TOPIC, QoS.AT_LEAST_ONCE)])
    broker.receive_data(sub, encode_packet(subscribe, version=V5), 0.0)
    pub = broker.open_connection(0.0)
    broker.receive_data(pub, encode_packet(ConnectPacket("p", keep_alive=0), version=V5), 0.0)
    message = PublishPacket(TOPIC, b"x", QoS.AT_LEAST_ONCE, packet_id=7)
    broker.receive_data(pub, encode_packet(message, version=V5) * 1, 0.0)
    broker.flush(0.0)
    broker.receive_data(sub, b"\x40\x02\x00\x01\x40\x02\x00\x09", 0.0)
    assert calls == [8]
    assert [s.inflight for s in broker.sessions() if s.client_id == "s"] == [0]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from([1, 2]),
    st.sampled_from([0, 1, 2]),
    st.booleans(),
    st.booleans(),
    st.sampled_from([(), (7,), (1, 300)]),
    st.booleans(),
)
def test_a_decoded_qos_message_is_forwarded_as_packet_for_says(
    qos: int, granted: int, retain: bool, v5: bool, sub_ids: tuple[int, ...], duplicate: bool
) -> None:
    """Message._prepare's way for a decoded QoS 1/2 PUBLISH without flags or
    properties gives the bytes and the packet of packet_for's."""
    from mqttproto.broker._message import Message
    from mqttproto.codec import prepare_publish

    sent = PublishPacket(TOPIC, b"body", QoS(qos), packet_id=9, duplicate=duplicate)
    [decoded] = PacketReader(version=V5).feed(encode_packet(sent, version=V5))
    message = Message(decoded, 0.0, "origin")
    form = message.form(v5, granted, retain, sub_ids, 0.0)
    version = V5 if v5 else V311
    expected = prepare_publish(message.packet_for(v5, granted, retain, sub_ids, None), version)
    assert (form.head, form.tail, form.size) == (expected.head, expected.tail, expected.size)
    assert form.packet == expected.packet
    assert form.packet.__dict__ == expected.packet.__dict__
