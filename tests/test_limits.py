"""Every limit of BrokerConfig, hit: what the client hears, and that the broker
keeps serving everyone else.

Each test connects a bystander pair (``watcher`` subscribed to ``news/#``,
``pub`` publishing to it) and checks after the limit was hit that a message
still goes from one to the other.
"""

from __future__ import annotations

from typing import Any

import pytest
from helpers import V5, V311, BrokerHarness, PacketFactory

from mqttproto import PacketReader, QoS, ReasonCode, Subscription
from mqttproto.broker import Broker
from mqttproto.config import BrokerConfig
from mqttproto.events import (
    ConnectionAccepted,
    ConnectionRefused,
    Disconnected,
    PublishAcknowledged,
    SubscribeAcknowledged,
)
from mqttproto.packets import ConnectPacket, PublishPacket, SubscribePacket, Will

RC = ReasonCode


def bystanders(h: BrokerHarness) -> None:
    watcher = h.connected("watcher")
    watcher.conn.subscribe([Subscription("news/#", QoS.AT_LEAST_ONCE)])
    h.pump()
    h.connected("pub")


def assert_still_serving(h: BrokerHarness, tag: str) -> None:
    """A message from ``pub`` still reaches ``watcher``."""
    watcher, pub = h.clients["watcher"], h.clients["pub"]
    assert not watcher.closed and not pub.closed
    watcher.take_messages()
    pub.conn.publish("news/ok", tag.encode(), qos=1)
    h.pump()
    assert [m.payload for m in watcher.take_messages()] == [tag.encode()]


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


# -- maximum connections -----------------------------------------------------------


@pytest.mark.parametrize(("version", "code"), [(V5, 0x97), (V311, 3)])
def test_max_connections_refuses_the_connection_past_the_limit(version, code):
    h = BrokerHarness(BrokerConfig(max_connections=3))
    bystanders(h)
    third = h.connected("third")
    assert len(h.broker.sessions()) == 3
    raw = h.open_raw()
    out = h.send_raw(raw, PacketFactory.connect("fourth", version))
    # CONNACK 0x97 Quota exceeded (3.1.1: return code 3, server unavailable), then closed.
    assert out[0] == 0x20 and out[2:4] == bytes((0, code))
    if version == V311:
        assert out == bytes((0x20, 2, 0, 3))
    assert raw in h.raw_closed
    assert "fourth" not in {s.client_id for s in h.broker.sessions()}
    assert_still_serving(h, "after refusal")
    # A connection closing makes room again.
    third.conn.disconnect()
    h.pump()
    assert h.connected("fifth")


# -- filters per SUBSCRIBE and subscriptions per session ------------------------------


@pytest.mark.parametrize("version", [V5, V311])
def test_max_filters_per_subscribe_refuses_the_whole_subscribe(version):
    h = BrokerHarness(BrokerConfig(max_filters_per_subscribe=3))
    bystanders(h)
    greedy = h.connected("greedy", version)
    greedy.conn.subscribe(["a/1", "a/2", "a/3", "a/4"])
    h.pump()
    (ack,) = of(greedy.take(), SubscribeAcknowledged)
    expected = RC.QUOTA_EXCEEDED if version == V5 else RC.UNSPECIFIED_ERROR
    assert ack.reason_codes == (expected,) * 4
    assert h.broker.subscriptions("greedy") == []
    greedy.conn.subscribe(["a/1", "a/2", "a/3"])
    h.pump()
    (ack,) = of(greedy.take(), SubscribeAcknowledged)
    assert ack.reason_codes == (RC.GRANTED_QOS_0,) * 3
    assert_still_serving(h, "filters")


def test_max_subscriptions_per_session_refuses_new_filters_only():
    h = BrokerHarness(BrokerConfig(max_subscriptions_per_session=2))
    bystanders(h)
    c = h.connected("c")
    c.conn.subscribe(["x/1", "x/2", "x/3", "x/1"])
    h.pump()
    (ack,) = of(c.take(), SubscribeAcknowledged)
    # A repeated filter replaces its subscription and needs no room [MQTT-3.8.4-3].
    assert ack.reason_codes == (RC.GRANTED_QOS_0, RC.GRANTED_QOS_0, RC.QUOTA_EXCEEDED, RC.SUCCESS)
    assert len(h.broker.subscriptions("c")) == 2
    assert_still_serving(h, "subscriptions")


# -- topic length and levels -----------------------------------------------------------


@pytest.mark.parametrize("version", [V5, V311])
def test_max_topic_length_in_publish_ends_the_connection(version):
    h = BrokerHarness(BrokerConfig(max_topic_length=32))
    bystanders(h)
    ok = h.connected("ok", version)
    ok.conn.publish("news/" + "x" * 27, b"fits", qos=1)  # exactly 32 bytes
    h.pump()
    assert h.clients["watcher"].take_messages()[0].payload == b"fits"
    bad = h.connected("bad", version)
    bad.conn.publish("news/" + "x" * 28, b"too long", qos=1)
    h.pump()
    assert bad.closed
    if version == V5:
        # DISCONNECT 0x90 Topic Name invalid.
        assert of(bad.events, Disconnected)[0].reason_code == RC.TOPIC_NAME_INVALID
    assert h.clients["watcher"].take_messages() == []
    assert_still_serving(h, "topic length")


def test_max_topic_length_counts_utf8_bytes():
    h = BrokerHarness(BrokerConfig(max_topic_length=23))
    bystanders(h)
    # 14 characters, 23 bytes: fits; one more two-byte character does not.
    fits = h.connected("fits")
    fits.conn.publish("news/" + "é" * 9, b"1")
    h.pump()
    assert not fits.closed
    assert len(h.clients["watcher"].take_messages()) == 1
    over = h.connected("over")
    over.conn.publish("news/" + "é" * 10, b"2")
    h.pump()
    assert over.closed
    assert_still_serving(h, "utf-8")


def test_max_topic_length_in_filters_and_will():
    h = BrokerHarness(BrokerConfig(max_topic_length=16))
    bystanders(h)
    c = h.connected("c")
    c.conn.subscribe(["a/" + "b" * 14, "a/" + "b" * 15])
    h.pump()
    (ack,) = of(c.take(), SubscribeAcknowledged)
    assert ack.reason_codes == (RC.GRANTED_QOS_0, RC.TOPIC_FILTER_INVALID)
    w = h.client("w")
    events = w.connect(will=Will("w/" + "x" * 15, b"bye"))
    assert of(events, ConnectionRefused)[0].reason_code == RC.TOPIC_NAME_INVALID
    assert_still_serving(h, "filters and will")


def test_deep_topic_levels_are_refused():
    h = BrokerHarness(BrokerConfig(max_topic_levels=8))
    bystanders(h)
    deep = h.connected("deep")
    deep.conn.subscribe(["/".join(["l"] * 9), "/".join(["l"] * 8)])
    h.pump()
    (ack,) = of(deep.take(), SubscribeAcknowledged)
    assert ack.reason_codes == (RC.TOPIC_FILTER_INVALID, RC.GRANTED_QOS_0)
    deep.conn.publish("/".join(["news"] * 9), b"deep")
    h.pump()
    assert deep.closed
    assert of(deep.events, Disconnected)[0].reason_code == RC.TOPIC_NAME_INVALID
    assert_still_serving(h, "levels")


# -- user properties ---------------------------------------------------------------------


def props(count: int, size: int = 1) -> list[tuple[str, str]]:
    return [(f"k{i}", "v" * size) for i in range(count)]


@pytest.mark.parametrize("qos", [1, 2])
def test_too_many_user_properties_in_publish_is_refused_with_0x97(qos):
    h = BrokerHarness(BrokerConfig(max_user_properties=4))
    bystanders(h)
    flood = h.connected("flood")
    ok = flood.conn.publish("news/a", b"at the limit", qos=qos, user_properties=props(4))
    refused = flood.conn.publish(
        "news/a", b"past it", qos=qos, user_properties=props(5), retain=True
    )
    h.pump()
    acks = {a.packet_id: a.reason_code for a in of(flood.take(), PublishAcknowledged)}
    # PUBACK / PUBREC 0x97 Quota exceeded ends the flow (MQTT 5.0 section 3.4.2.1 / 3.5.2.1).
    assert acks == {ok: RC.SUCCESS, refused: RC.QUOTA_EXCEEDED}
    got = h.clients["watcher"].take_messages()
    assert [m.payload for m in got] == [b"at the limit"]
    assert h.broker.retained("news/#") == []  # refused messages are not retained
    assert not flood.closed
    assert_still_serving(h, "user properties")


def test_user_property_bytes_limit_and_qos0_drop():
    h = BrokerHarness(BrokerConfig(max_user_property_bytes=100))
    bystanders(h)
    flood = h.connected("flood")
    flood.conn.publish("news/b", b"small", user_properties=[("k", "v" * 99)])  # 100 bytes
    flood.conn.publish("news/b", b"big", user_properties=[("k", "v" * 100)])  # QoS 0: dropped
    flood.conn.publish("news/b", b"wide", user_properties=[("ké", "é" * 49)])  # 101 bytes
    h.pump()
    assert [m.payload for m in h.clients["watcher"].take_messages()] == [b"small"]
    assert not flood.closed
    assert_still_serving(h, "property bytes")


def test_user_properties_in_connect_subscribe_and_unsubscribe():
    h = BrokerHarness(BrokerConfig(max_user_properties=2))
    bystanders(h)
    c = h.client("c")
    events = c.connect(user_properties=props(3))
    assert of(events, ConnectionRefused)[0].reason_code == RC.QUOTA_EXCEEDED
    w = h.client("w")
    events = w.connect(will=Will("w", b"x", user_properties=props(2)), user_properties=props(1))
    assert of(events, ConnectionRefused)[0].reason_code == RC.QUOTA_EXCEEDED
    s = h.connected("s")
    s.conn.subscribe(["a", "b"], user_properties=props(3))
    h.pump()
    (ack,) = of(s.take(), SubscribeAcknowledged)
    assert ack.reason_codes == (RC.QUOTA_EXCEEDED, RC.QUOTA_EXCEEDED)
    assert h.broker.subscriptions("s") == []
    s.conn.unsubscribe(["a"], user_properties=props(3))
    h.pump()
    assert s.closed
    assert of(s.events, Disconnected)[0].reason_code == RC.QUOTA_EXCEEDED
    assert_still_serving(h, "connect properties")


def test_a_huge_user_property_flood_in_one_packet_is_refused():
    """A PUBLISH close to max_packet_size made only of tiny user properties."""
    h = BrokerHarness()
    bystanders(h)
    raw = h.open_raw()
    h.send_raw(raw, PacketFactory.connect("raw"))
    packet = PublishPacket(
        "news/flood", b"", QoS.AT_LEAST_ONCE, packet_id=7, user_properties=[("a", "")] * 100_000
    )
    data = PacketFactory.encode(packet)
    assert len(data) < BrokerConfig().max_packet_size
    out = h.send_raw(raw, data)
    assert out == b"\x40\x03\x00\x07\x97"  # PUBACK 0x97, connection kept
    assert h.clients["watcher"].take_messages() == []
    assert_still_serving(h, "flood")


# -- retained messages ------------------------------------------------------------------


def test_max_retained_messages():
    h = BrokerHarness(BrokerConfig(max_retained_messages=3))
    bystanders(h)
    r = h.connected("r")
    for i in range(3):
        r.conn.publish(f"news/{i}", b"keep", qos=1, retain=True)
    r.conn.publish("news/3", b"no room", qos=1, retain=True)
    r.conn.publish("news/0", b"replaced", qos=2, retain=True)
    h.pump()
    codes = [a.reason_code for a in of(r.take(), PublishAcknowledged)]
    assert codes == [RC.SUCCESS] * 3 + [RC.QUOTA_EXCEEDED, RC.SUCCESS]
    topics = sorted(m.topic for m in h.broker.retained("#"))
    assert topics == ["news/0", "news/1", "news/2"]
    assert h.broker.retained("news/0")[0].payload == b"replaced"
    # Refused whole: the subscriber did not get it either.
    assert b"no room" not in [m.payload for m in h.clients["watcher"].take_messages()]
    # Deleting makes room.
    r.conn.publish("news/1", b"", qos=1, retain=True)
    r.conn.publish("news/3", b"now there is room", qos=1, retain=True)
    h.pump()
    assert [a.reason_code for a in of(r.take(), PublishAcknowledged)] == [RC.SUCCESS] * 2
    assert sorted(m.topic for m in h.broker.retained("#")) == ["news/0", "news/2", "news/3"]
    # A 3.1.1 publisher cannot be told: acknowledged and dropped.
    old = h.connected("old", V311)
    old.conn.publish("news/4", b"dropped", qos=1, retain=True)
    h.pump()
    assert of(old.take(), PublishAcknowledged)[0].reason_code == RC.SUCCESS
    assert len(h.broker.retained("#")) == 3
    assert_still_serving(h, "retained count")


def test_max_retained_bytes_and_retained_will():
    h = BrokerHarness(BrokerConfig(max_retained_bytes=100))
    bystanders(h)
    r = h.connected("r")
    r.conn.publish("news/a", b"x" * 44, qos=1, retain=True)  # 6 + 44 = 50 bytes
    r.conn.publish("news/b", b"x" * 44, qos=1, retain=True)  # 100 bytes in all
    r.conn.publish("news/c", b"x", qos=1, retain=True)
    r.conn.publish("news/a", b"x" * 45, qos=1, retain=True)  # a bigger replacement
    r.conn.publish("news/a", b"x" * 10, qos=1, retain=True)  # a smaller one
    h.pump()
    codes = [a.reason_code for a in of(r.take(), PublishAcknowledged)]
    assert codes == [RC.SUCCESS, RC.SUCCESS, RC.QUOTA_EXCEEDED, RC.QUOTA_EXCEEDED, RC.SUCCESS]
    assert h.broker._retained.bytes == 16 + 50
    # A retained will that does not fit is still published, unretained.
    h.clients["watcher"].take_messages()
    w = h.connected("w", will=Will("news/will", b"w" * 60, retain=True))
    w.drop()
    assert [m.payload for m in h.clients["watcher"].take_messages()] == [b"w" * 60]
    assert h.broker.retained("news/will") == []
    # The broker's own messages are not limited.
    h.broker.publish("sys/x", b"s" * 200, retain=True, now=h.now)
    assert len(h.broker.retained("sys/x")) == 1
    assert_still_serving(h, "retained bytes")


def test_a_thousand_retained_topics_past_the_limit_are_refused():
    h = BrokerHarness(BrokerConfig(max_retained_messages=500))
    bystanders(h)
    r = h.connected("r")
    for i in range(1000):
        r.conn.publish(f"flood/{i}", b"r", qos=1, retain=True)
        if i % 50 == 49:
            h.pump()
    h.pump()
    codes = [a.reason_code for a in of(r.take(), PublishAcknowledged)]
    assert codes.count(RC.QUOTA_EXCEEDED) == 500
    assert len(h.broker.retained("flood/#")) == 500
    assert_still_serving(h, "retained flood")


# -- keep-alive bounds ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "granted"), [(0, 60), (30, 30), (61, 60), (5, 10), (10, 10), (60, 60)]
)
def test_keep_alive_bounds_are_announced_to_v5_clients(asked, granted):
    h = BrokerHarness(BrokerConfig(min_keep_alive=10, max_keep_alive=60))
    c = h.client("c")
    (accepted,) = of(c.connect(keep_alive=asked), ConnectionAccepted)
    # Server Keep Alive, which the client must use [MQTT-3.2.2-21].
    assert accepted.keep_alive == granted
    assert c.conn.keep_alive == granted


@pytest.mark.parametrize(("asked", "accepted"), [(61, False), (65535, False), (60, True), (1, True)])
def test_keep_alive_past_the_maximum_refuses_v311_with_return_code_2(asked, accepted):
    # mosquitto 2.0's max_keepalive: a 3.x client cannot be told a shorter
    # keep-alive, so one asking more is refused, Identifier rejected.
    h = BrokerHarness(BrokerConfig(max_keep_alive=60))
    c = h.client("c", V311)
    events = c.connect(keep_alive=asked)
    if accepted:
        assert of(events, ConnectionAccepted)[0].keep_alive == asked
    else:
        # Return code 2, which reads as 0x85 Client Identifier not valid.
        assert of(events, ConnectionRefused)[0].reason_code == RC.CLIENT_IDENTIFIER_NOT_VALID


def test_keep_alive_bound_enforced_silently_on_v311():
    h = BrokerHarness(BrokerConfig(max_keep_alive=60))
    bystanders(h)
    idle = h.client("idle", V311)
    (accepted,) = of(idle.connect(keep_alive=0), ConnectionAccepted)
    assert accepted.keep_alive == 0  # 3.1.1 cannot be told
    # The watcher and the publisher talk every 30 s; "idle" never does.
    for _ in range(3):
        h.advance(30)
        assert_still_serving(h, "tick")
        h.clients["pub"].conn.publish("other", b"")  # keeps the publisher alive
        h.pump()
    assert idle.closed  # 1.5 x 60 s of silence
    assert_still_serving(h, "keep-alive")


def test_keep_alive_config_validation():
    with pytest.raises(ValueError):
        BrokerConfig(min_keep_alive=100, max_keep_alive=50)
    with pytest.raises(ValueError):
        BrokerConfig(max_keep_alive=65536)
    # 0 is no maximum (mosquitto's max_keepalive 0); any minimum goes with it.
    assert BrokerConfig(min_keep_alive=100, max_keep_alive=0).max_keep_alive == 0


# -- client identifier length ----------------------------------------------------------------


@pytest.mark.parametrize(("version", "code"), [(V5, RC.CLIENT_IDENTIFIER_NOT_VALID), (V311, 2)])
def test_max_client_id_length(version, code):
    h = BrokerHarness(BrokerConfig(max_client_id_length=32))
    bystanders(h)
    assert h.connected("c" * 32, version)
    raw = h.open_raw()
    out = h.send_raw(raw, PacketFactory.connect("c" * 33, version))
    assert out[0] == 0x20 and out[3] == code  # CONNACK 0x85 / return code 2 [MQTT-3.1.3-9]
    assert raw in h.raw_closed
    assert_still_serving(h, "client id")


def test_client_id_length_must_allow_23_bytes():
    # [MQTT-3.1.3-5]: 1 to 23 UTF-8 bytes must be allowed.
    with pytest.raises(ValueError):
        BrokerConfig(max_client_id_length=22)
    assert BrokerConfig(max_client_id_length=23).max_client_id_length == 23


# -- the output high-water mark ------------------------------------------------------------------


def _raw_connect(broker: Broker, client_id: str, now: float, **kwargs) -> int:
    conn = broker.open_connection(now)
    broker.receive_data(
        conn, PacketFactory.encode(ConnectPacket(client_id, protocol_version=V5, **kwargs)), now
    )
    assert broker.data_to_send(conn, now)[0] == 0x20
    return conn


def _subscriber_reader_publisher(name: str, now: float) -> tuple[Broker, int, int, int]:
    """A broker with a 10 kB high-water mark; ``name`` (persistent) and
    "reader" subscribed to t/# at QoS 2, and "pub"."""
    broker = Broker(BrokerConfig(max_unsent_bytes=10_000))
    subscriber = _raw_connect(broker, name, now, clean_start=False, session_expiry_interval=60)
    reader = _raw_connect(broker, "reader", now)
    pub = _raw_connect(broker, "pub", now)
    for conn in (subscriber, reader):
        broker.receive_data(
            conn,
            PacketFactory.encode(SubscribePacket(1, [Subscription("t/#", QoS.EXACTLY_ONCE)])),
            now,
        )
        broker.data_to_send(conn, now)
    return broker, subscriber, reader, pub


def test_max_unsent_bytes_drops_qos0_and_holds_qos12_for_a_connection_not_drained():
    now = 1.0
    broker, sleepy, reader, pub = _subscriber_reader_publisher("sleepy", now)
    payload = b"p" * 100
    qos0 = PacketFactory.encode(PublishPacket("t/0", payload))
    for i in range(1000):
        broker.receive_data(pub, qos0, now)
        if i % 10 == 0:
            broker.receive_data(
                pub,
                PacketFactory.encode(
                    PublishPacket("t/1", payload, QoS.AT_LEAST_ONCE, packet_id=i + 1)
                ),
                now,
            )
        # The reader and the publisher are drained; "sleepy" never is.
        assert len(broker.data_to_send(reader, now)) < 2_000
        broker.data_to_send(pub, now)
    connection = broker._conns[sleepy]
    # Bounded: the mark plus at most one message.
    assert connection.unsent < 10_000 + 200
    session = broker._sessions["sleepy"]
    held = len(session.pending)
    assert held > 0 and all(item[1] == 1 for item in session.pending)
    # Taking the output lets the held QoS 1 messages out.
    data = broker.data_to_send(sleepy, now)
    assert len(data) < 2 * 10_000 + 400
    assert len(session.pending) < held


def _packets(data: bytes) -> list[Any]:
    return list(PacketReader(version=V5).feed(data))


def test_a_reported_backlog_counts_toward_max_unsent_bytes():
    """An adapter whose transport has not written what it took reports the
    backlog: the core then holds deliveries for that connection (QoS 0
    dropped, QoS 1/2 queued) instead of letting the transport grow, and
    sends what waited once a smaller backlog is reported."""
    now = 1.0
    broker, slow, reader, pub = _subscriber_reader_publisher("slow", now)

    def publish(i: int, qos: QoS) -> None:
        packet_id = i + 1 if qos else None
        packet = PublishPacket("t/x", b"%05d" % i + b"p" * 95, qos, packet_id=packet_id)
        broker.receive_data(pub, PacketFactory.encode(packet), now)
        broker.data_to_send(pub, now)

    # Below the mark, everything is delivered, whatever the backlog.
    broker.output_backlog(slow, 9_000, now)
    publish(0, QoS.AT_MOST_ONCE)
    assert len(_packets(broker.data_to_send(slow, now))) == 1
    broker.data_to_send(reader, now)
    # The transport now holds more than the mark: deliveries stop.
    broker.output_backlog(slow, 12_000, now)
    for i in range(1, 31):
        publish(i, QoS.AT_LEAST_ONCE if i % 3 == 0 else QoS.AT_MOST_ONCE)
        assert broker.data_to_send(slow, now) == b""
        assert len(_packets(broker.data_to_send(reader, now))) == 1
    session = broker._sessions["slow"]
    assert [item[1] for item in session.pending] == [1] * 10
    assert slow not in broker.connections_to_close()  # held, not dropped
    # Drained: the ten QoS 1 messages go out, in order; the QoS 0 ones were dropped.
    broker.output_backlog(slow, 0, now)
    (sent,) = [data for conn, data in broker.flush(now) if conn == slow]
    delivered = _packets(sent)
    assert [p.payload[:5] for p in delivered] == [b"%05d" % i for i in range(3, 31, 3)]
    assert not session.pending
    with pytest.raises(ValueError):
        broker.output_backlog(slow, -1, now)


# -- bookkeeping that must not grow with churn ----------------------------------------------


def test_timer_entries_of_closed_connections_do_not_pile_up():
    """Keep-alive entries stay in the timer heap until due (up to 1.5 x the
    keep-alive): churn must not pile them up beyond what is alive."""
    h = BrokerHarness()
    bystanders(h)
    for i in range(3000):
        c = h.client(f"churn-{i}", V311 if i % 2 else V5)
        c.connect(keep_alive=600)
        if i % 2:
            c.drop()
        else:
            c.conn.disconnect()
            h.pump()
        del h.clients[c.name]
    live = len(h.broker._conns) + 2 * len(h.broker._sessions)
    assert len(h.broker._timers) <= 2 * live + 256 + 1
    assert_still_serving(h, "churn")
    # The live connections' timers still work: the watcher times out when silent.
    h.clients["pub"].conn.disconnect()
    h.pump()
    h.advance(600)  # the watcher pings on its own timer and stays
    assert not h.clients["watcher"].closed


def test_keep_alive_counts_whole_packets_not_bytes():
    """A slowloris dribbling bytes of a packet it never finishes times out
    [MQTT-3.1.2-24]: only a whole Control Packet resets the keep-alive."""
    h = BrokerHarness()
    bystanders(h)
    raw = h.open_raw()
    h.send_raw(raw, PacketFactory.connect("slow", keep_alive=2))
    publish = PacketFactory.encode(PublishPacket("news/slow", b"x" * 50))
    for byte in publish[:10]:
        h.advance(1)
        h.send_raw(raw, bytes([byte]))
        if raw in h.raw_closed:
            break
    assert raw in h.raw_closed
    assert h.now - 1000.0 <= 4  # 1.5 x 2 s after the last whole packet
    assert_still_serving(h, "slowloris")
