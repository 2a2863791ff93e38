"""Topic aliases the broker gives MQTT 5 clients that accept them, on the wire.

The policy (``BrokerConfig.auto_topic_alias``): topics of
``auto_topic_alias_min_length`` characters or more take a free alias when
first sent; once all are taken, a topic sent twice lately takes the least
recently used alias. Never above the client's Topic Alias Maximum, never
for a client that announced none, never carried to another connection.
"""

from __future__ import annotations

from helpers import V5, V311, BrokerHarness, PacketFactory
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproto import QoS, Subscription
from mqttproto.codec import PacketReader
from mqttproto.config import BrokerConfig
from mqttproto.packets import PubAckPacket, PublishPacket, PubRecPacket, SubscribePacket

F = PacketFactory
TOPIC = "sensors/room-1/temperature"


def raw_subscriber(
    h: BrokerHarness, topic_filter: str = "#", **connect
) -> tuple[int, PacketReader]:
    """A raw MQTT 5 connection subscribed to ``topic_filter`` at QoS 2; its reader."""
    conn = h.open_raw()
    reader = PacketReader(version=V5)
    reader.feed(h.send_raw(conn, F.connect("raw", V5, **connect)))  # CONNACK
    subscribe = SubscribePacket(1, (Subscription(topic_filter, QoS.EXACTLY_ONCE),))
    reader.feed(h.send_raw(conn, F.encode(subscribe)))  # SUBACK
    return conn, reader


def publishes(h: BrokerHarness, conn: int, reader: PacketReader) -> list[PublishPacket]:
    """The PUBLISH packets the broker wrote to ``conn`` since last asked
    (QoS 1/2 acknowledged, so that the window stays open)."""
    found = []
    for packet in reader.feed(bytes(h.raw[conn])):
        if isinstance(packet, PublishPacket):
            found.append(packet)
    h.raw[conn].clear()
    for packet in found:
        if packet.qos == 1:
            h.send_raw(conn, F.encode(PubAckPacket(packet.packet_id)))
        elif packet.qos == 2:
            h.send_raw(conn, F.encode(PubRecPacket(packet.packet_id)))
    return found


def test_the_second_publish_on_a_topic_carries_the_alias_and_an_empty_topic() -> None:
    # Paho's test_server_topic_alias: Topic Alias Maximum 1, QoS 0, 1 and 2.
    h = BrokerHarness()
    conn, reader = raw_subscriber(h, topic_alias_maximum=1)
    pub = h.connected("pub")
    for qos in range(3):
        pub.conn.publish(TOPIC, b"topic alias 1", qos=qos)
        h.pump()
    first, second, third = publishes(h, conn, reader)
    assert (first.topic, first.topic_alias) == (TOPIC, 1)
    # MQTT 5.0 section 3.3.2.3.4: a zero-length topic name uses the alias.
    assert (second.topic, second.topic_alias, second.qos) == ("", 1, 1)
    assert (third.topic, third.topic_alias, third.qos) == ("", 1, 2)


def test_no_alias_for_a_client_without_topic_alias_maximum_nor_for_mqtt311() -> None:
    h = BrokerHarness()
    conn, reader = raw_subscriber(h)
    sub3 = h.connected("sub3", V311)
    sub3.conn.subscribe([Subscription("#", QoS.AT_LEAST_ONCE)])
    h.pump()
    pub = h.connected("pub")
    for qos in (0, 1, 0):
        pub.conn.publish(TOPIC, b"x", qos=qos)
    h.pump()
    # [MQTT-3.1.2-27]: a client that announced none gets no Topic Alias.
    assert [(p.topic, p.topic_alias) for p in publishes(h, conn, reader)] == [(TOPIC, None)] * 3
    assert [m.topic for m in sub3.take_messages()] == [TOPIC] * 3


def test_short_topics_go_without_alias() -> None:
    h = BrokerHarness(BrokerConfig(auto_topic_alias_min_length=10))
    conn, reader = raw_subscriber(h, topic_alias_maximum=5)
    pub = h.connected("pub")
    for topic in ("short/1", "short/1", "long/enough", "long/enough"):
        pub.conn.publish(topic, b"x")
    h.pump()
    assert [(p.topic, p.topic_alias) for p in publishes(h, conn, reader)] == [
        ("short/1", None),
        ("short/1", None),
        ("long/enough", 1),
        ("", 1),
    ]


def test_a_frequent_topic_takes_the_least_recently_used_alias() -> None:
    h = BrokerHarness()
    conn, reader = raw_subscriber(h, topic_alias_maximum=2)
    pub = h.connected("pub")
    for topic in ("topic/aaaa", "topic/bbbb", "topic/aaaa", "topic/cccc", "topic/cccc"):
        pub.conn.publish(topic, b"x")
    h.pump()
    assert [(p.topic, p.topic_alias) for p in publishes(h, conn, reader)] == [
        ("topic/aaaa", 1),
        ("topic/bbbb", 2),
        ("", 1),
        # All aliases taken: a topic seen once goes plain, seen twice it
        # redefines the least recently used alias (2, topic/bbbb's).
        ("topic/cccc", None),
        ("topic/cccc", 2),
    ]


def test_aliases_start_anew_after_a_reconnect() -> None:
    h = BrokerHarness()
    session = {"clean_start": False, "session_expiry_interval": 600}
    sub = h.client("sub", V5)
    sub.connect(topic_alias_maximum=4, **session)
    sub.conn.subscribe([Subscription("data/#", QoS.AT_LEAST_ONCE)])
    h.pump()
    pub = h.connected("pub")
    pub.conn.publish("data/first/topic", b"1", qos=1)
    pub.conn.publish("data/first/topic", b"2", qos=1)
    h.pump()
    assert [m.topic for m in sub.take_messages()] == ["data/first/topic"] * 2
    sub.drop()
    # The session resumes on a raw connection: the topic comes whole again,
    # with an alias defined anew [MQTT-3.3.2-7].
    conn = h.open_raw()
    reader = PacketReader(version=V5)
    reader.feed(h.send_raw(conn, F.connect("sub", V5, clean_start=False, topic_alias_maximum=4)))
    pub.conn.publish("data/first/topic", b"3", qos=1)
    h.pump()
    [again] = publishes(h, conn, reader)
    assert (again.topic, again.topic_alias, again.payload) == ("data/first/topic", 1, b"3")


def test_an_in_flight_message_resent_after_a_reconnect_has_its_topic_and_no_alias() -> None:
    h = BrokerHarness()
    conn, reader = raw_subscriber(
        h, topic_alias_maximum=4, clean_start=False, session_expiry_interval=600
    )
    pub = h.connected("pub")
    pub.conn.publish(TOPIC, b"1", qos=1)
    pub.conn.publish(TOPIC, b"2", qos=1)
    h.pump()
    sent = list(reader.feed(bytes(h.raw[conn])))
    assert [(p.topic, p.topic_alias) for p in sent] == [(TOPIC, 1), ("", 1)]
    h.broker.connection_lost(conn, h.now)  # not acknowledged
    conn = h.open_raw()
    reader = PacketReader(version=V5)
    answer = reader.feed(h.send_raw(conn, F.connect("raw", V5, clean_start=False)))
    resent = [p for p in answer if isinstance(p, PublishPacket)]
    assert [(p.topic, p.topic_alias, p.duplicate) for p in resent] == [
        (TOPIC, None, True),
        (TOPIC, None, True),
    ]


def test_no_alias_is_set_when_it_would_pass_the_clients_maximum_packet_size() -> None:
    h = BrokerHarness()
    exact = len(F.encode(PublishPacket(TOPIC, b"x")))
    conn, reader = raw_subscriber(h, topic_alias_maximum=4, maximum_packet_size=exact)
    pub = h.connected("pub")
    pub.conn.publish(TOPIC, b"x")
    h.pump()
    assert [(p.topic, p.topic_alias) for p in publishes(h, conn, reader)] == [(TOPIC, None)]


def test_the_setting_turns_aliases_off() -> None:
    h = BrokerHarness(BrokerConfig(auto_topic_alias=False))
    conn, reader = raw_subscriber(h, topic_alias_maximum=4)
    pub = h.connected("pub")
    pub.conn.publish(TOPIC, b"x")
    pub.conn.publish(TOPIC, b"x")
    h.pump()
    assert [p.topic_alias for p in publishes(h, conn, reader)] == [None, None]


@settings(max_examples=50, deadline=None)
@given(
    maximum=st.integers(1, 4),
    sends=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2)), min_size=1, max_size=40),
)
def test_aliases_stay_within_the_clients_maximum_and_resolve_to_the_topics(maximum, sends) -> None:
    h = BrokerHarness(BrokerConfig(auto_topic_alias_limit=3))
    conn, reader = raw_subscriber(h, topic_alias_maximum=maximum)
    # A client reading the same bytes resolves every alias to the topic sent.
    client = h.connected("mirror", topic_alias_maximum=maximum)
    client.conn.subscribe([Subscription("#", QoS.EXACTLY_ONCE)])
    h.pump()
    pub = h.connected("pub")
    topics = [f"many/topics/number-{n}" for n, _ in sends]
    for (n, qos), topic in zip(sends, topics, strict=True):
        pub.conn.publish(topic, str(n).encode(), qos=qos)
        h.pump()
    defined: dict[int, str] = {}
    for packet in publishes(h, conn, reader):
        alias = packet.topic_alias
        if alias is None:
            assert packet.topic
            continue
        # [MQTT-3.3.2-8] / [MQTT-3.3.2-11]: 1 up to the client's maximum (and ours).
        assert 1 <= alias <= min(maximum, 3)
        if packet.topic:
            defined[alias] = packet.topic
        assert alias in defined  # an alias is set before it is used
    assert [m.topic for m in client.take_messages()] == topics
