"""Memory bounded by default: queued bytes, the broker-wide budget, the
retained share of one client, and the default session expiry.

Each bound is shown from outside: what a publisher hears (PUBACK 0x97 in
MQTT 5), what a subscriber receives, what ``Broker.sessions()`` reports and
what ``Broker.messages_dropped`` / ``$SYS`` count. Driven with a fake clock.
"""

from __future__ import annotations

from helpers import V5, V311, BrokerHarness, Client

from mqttproto import QoS, ReasonCode, Subscription
from mqttproto.config import BrokerConfig
from mqttproto.events import ConnectionAccepted, PublishAcknowledged

AWAY = {"clean_start": False, "session_expiry_interval": 3600}


def acks(client: Client) -> list[ReasonCode]:
    return [e.reason_code for e in client.take() if isinstance(e, PublishAcknowledged)]


#: Accepted, and nobody subscribed (MQTT 5.0 section 3.4.2.1).
NOBODY = ReasonCode.NO_MATCHING_SUBSCRIBERS


def away_subscriber(h: BrokerHarness, name: str, topic: str = "t") -> Client:
    client = h.connected(name, V5, **AWAY)
    client.conn.subscribe([Subscription(topic, QoS.AT_LEAST_ONCE)])
    h.pump()
    client.drop()
    return client


def queued(h: BrokerHarness) -> dict[str, int]:
    return {s.client_id: s.queued for s in h.broker.sessions()}


def test_the_defaults_bound_queued_bytes_memory_retained_share_and_session_expiry() -> None:
    config = BrokerConfig()
    assert config.max_queued_bytes == 64 * 1024 * 1024
    assert config.memory_limit == 256 * 1024 * 1024
    assert config.max_retained_messages_per_client == 10_000
    assert config.max_retained_bytes_per_client == 16 * 1024 * 1024
    assert config.max_session_expiry_interval == 7 * 24 * 3600
    assert config.session_identity_mismatch == "refuse"


def test_max_queued_bytes_refuses_qos1_and_the_publisher_hears_0x97() -> None:
    # Each message counts its topic (1 byte) and payload (299 bytes).
    h = BrokerHarness(BrokerConfig(max_queued_bytes=1000))
    away_subscriber(h, "sub")
    pub = h.connected("pub", V5)
    for n in range(4):
        pub.conn.publish("t", bytes([n]) * 299, qos=1)
        h.pump()
    assert acks(pub) == [ReasonCode.SUCCESS] * 3 + [ReasonCode.QUOTA_EXCEEDED]
    assert queued(h)["sub"] == 3
    assert h.broker.messages_dropped == 1


def test_queued_qos0_messages_make_room_oldest_first() -> None:
    h = BrokerHarness(BrokerConfig(max_queued_bytes=1000))
    sub = away_subscriber(h, "sub")
    pub = h.connected("pub", V5)
    pub.conn.publish("t", b"a" * 299, qos=0)
    pub.conn.publish("t", b"b" * 299, qos=0)
    pub.conn.publish("t", b"c" * 299, qos=1)
    # 600 more bytes: both QoS 0 messages go to make room.
    pub.conn.publish("t", b"d" * 599, qos=1)
    h.pump()
    assert acks(pub) == [ReasonCode.SUCCESS] * 2
    assert h.broker.messages_dropped == 2
    sub.connect(client_id="sub", **AWAY)
    h.pump()
    assert [m.payload[:1] for m in sub.take_messages()] == [b"c", b"d"]


def test_the_memory_limit_counts_a_message_shared_by_many_sessions_once() -> None:
    h = BrokerHarness(BrokerConfig(memory_limit=10_000))
    subscribers = [away_subscriber(h, f"sub{n}") for n in range(4)]
    pub = h.connected("pub", V5)
    for _ in range(9):
        pub.conn.publish("t", b"x" * 999, qos=1)  # 1,000 bytes each
        h.pump()
    # 9 x 1,000 bytes held for four sessions: within 10,000 counted once.
    assert acks(pub) == [ReasonCode.SUCCESS] * 9
    assert set(queued(h).values()) == {9, 0}
    pub.conn.publish("t", b"y" * 1999, qos=1)
    h.pump()
    # No session could take it: 0x97, and each refusal is counted.
    assert acks(pub) == [ReasonCode.QUOTA_EXCEEDED]
    assert h.broker.messages_dropped == 4
    # A QoS 0 message past the budget is dropped, not refused.
    pub.conn.publish("t", b"z" * 1999, qos=0)
    h.pump()
    assert h.broker.messages_dropped == 8
    first = subscribers[0]    # Once one subscriber has taken its messages, they are still held by the
    # three others: the budget is not freed until the last lets go.
    first.connect(client_id="sub0", **AWAY)
    h.pump()
    assert len(first.take_messages()) == 9
    pub.conn.publish("t", b"y" * 1999, qos=1)
    h.pump()
    # In flight to the connected sub0 it would be held too: still refused.
    assert acks(pub) == [ReasonCode.QUOTA_EXCEEDED]
    pub.conn.publish("t", b"y" * 999, qos=1)
    h.pump()
    # Within the budget: to sub0, and queued for the others (one copy).
    assert acks(pub) == [ReasonCode.SUCCESS]
    assert len(first.take_messages()) == 1
    for sub in subscribers[1:]:
        sub.connect(client_id=sub.name, **AWAY)
        h.pump()
        assert len(sub.take_messages()) == 10
    # Everything was acknowledged: the whole budget is back.
    assert h.broker._held_bytes == 0
    for _ in range(9):
        pub.conn.publish("t", b"x" * 999, qos=1)
    h.pump()
    assert acks(pub) == [ReasonCode.SUCCESS] * 9


def test_a_slow_reader_is_held_back_while_the_memory_limit_is_exceeded() -> None:
    h = BrokerHarness(BrokerConfig(memory_limit=100_000))
    slow = h.connected("slow", V5)
    slow.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    other = h.connected("other", V5)
    other.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    assert slow.conn_id is not None
    # The adapter reports 150,000 bytes it could not write to the slow reader.
    h.broker.output_backlog(slow.conn_id, 150_000, h.now)
    dropped = h.broker.messages_dropped
    h.broker.publish("t", b"qos0", qos=0, now=h.now)
    h.broker.publish("t", b"qos1", qos=1, now=h.now)
    h.pump()
    assert [m.payload for m in other.take_messages()] == [b"qos0", b"qos1"]
    # The slow reader got neither: QoS 0 dropped, QoS 1 waits in its session.
    assert slow.take_messages() == []
    assert h.broker.messages_dropped == dropped + 1
    assert {s.client_id: s.queued for s in h.broker.sessions()}["slow"] == 1
    # Its backlog drains: what waited goes out.
    h.broker.output_backlog(slow.conn_id, 0, h.now)
    h.pump()
    assert [m.payload for m in slow.take_messages()] == [b"qos1"]


def test_a_reader_behind_within_the_budget_is_not_held() -> None:
    h = BrokerHarness(BrokerConfig(memory_limit=1_000_000))
    sub = h.connected("sub", V5)
    sub.conn.subscribe(["t"])
    h.pump()
    assert sub.conn_id is not None
    h.broker.output_backlog(sub.conn_id, 300_000, h.now)
    h.broker.publish("t", b"still", now=h.now)
    h.pump()
    assert [m.payload for m in sub.take_messages()] == [b"still"]


def test_dropped_messages_are_published_in_sys() -> None:
    h = BrokerHarness(BrokerConfig(max_queued_messages=1, sys_interval=10))
    away_subscriber(h, "sub")
    watcher = h.connected("watcher", V5)
    watcher.conn.subscribe(["$SYS/broker/publish/messages/dropped"])
    h.pump()
    for _ in range(3):
        h.broker.publish("t", b"m", qos=1, now=h.now)
    h.advance(10)
    values = [m.payload for m in watcher.take_messages()]
    assert values[-1] == b"2"


# -- one client's share of the retained quota -----------------------------------------


def test_one_client_cannot_use_up_the_retained_quota() -> None:
    h = BrokerHarness(BrokerConfig(max_retained_messages_per_client=2))
    greedy = h.connected("greedy", V5)
    for n in range(3):
        greedy.conn.publish(f"r/{n}", b"v", qos=1, retain=True)
        h.pump()
    assert acks(greedy) == [NOBODY] * 2 + [ReasonCode.QUOTA_EXCEEDED]
    assert sorted(m.topic for m in h.broker.retained("r/#")) == ["r/0", "r/1"]
    # Replacing its own retained message and deleting one stay possible.
    greedy.conn.publish("r/0", b"new", qos=1, retain=True)
    greedy.conn.publish("r/1", b"", qos=1, retain=True)
    greedy.conn.publish("r/2", b"v", qos=1, retain=True)
    h.pump()
    assert acks(greedy) == [NOBODY] * 3
    # Others still have their own share.
    other = h.connected("other", V5)
    other.conn.publish("o/1", b"v", qos=1, retain=True)
    other.conn.publish("o/2", b"v", qos=1, retain=True)
    h.pump()
    assert acks(other) == [NOBODY] * 2


def test_the_retained_share_counts_bytes_and_moves_with_the_last_publisher() -> None:
    h = BrokerHarness(BrokerConfig(max_retained_bytes_per_client=1000))
    a = h.connected("a", V5)
    a.conn.publish("x/1", b"." * 497, qos=1, retain=True)  # 500 bytes with the topic
    a.conn.publish("x/2", b"." * 497, qos=1, retain=True)
    a.conn.publish("x/3", b"." * 10, qos=1, retain=True)
    h.pump()
    assert acks(a) == [NOBODY] * 2 + [ReasonCode.QUOTA_EXCEEDED]
    # b replaces one of a's messages: it is b's now, and a has room again.
    b = h.connected("b", V5)
    b.conn.publish("x/1", b"mine", qos=1, retain=True)
    h.pump()
    assert acks(b) == [NOBODY]
    a.conn.publish("x/3", b"." * 10, qos=1, retain=True)
    h.pump()
    assert acks(a) == [NOBODY]


def test_the_broker_itself_is_not_held_to_a_clients_share() -> None:
    h = BrokerHarness(BrokerConfig(max_retained_messages_per_client=1))
    for n in range(3):
        h.broker.publish(f"op/{n}", b"v", retain=True, now=h.now)
    assert len(h.broker.retained("op/#")) == 3


# -- sessions that never come back ---------------------------------------------------


def test_an_mqtt5_client_is_told_the_default_maximum_session_expiry() -> None:
    h = BrokerHarness()
    client = h.client("c", V5)
    [event] = [
        e
        for e in client.connect(clean_start=False, session_expiry_interval=0xFFFFFFFF)
        if isinstance(e, ConnectionAccepted)
    ]
    assert event.session_expiry_interval == 7 * 24 * 3600


def test_an_abandoned_311_session_expires_after_the_default_maximum() -> None:
    h = BrokerHarness()
    sub = h.connected("sub", V311, clean_start=False)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    sub.drop()
    h.broker.publish("t", b"queued", qos=1, now=h.now)
    h.advance(7 * 24 * 3600 - 1)
    assert [s.client_id for s in h.broker.sessions()] == ["sub"]
    h.advance(2)
    assert h.broker.sessions() == []
    assert h.broker._held_bytes == 0


def test_no_maximum_session_expiry_keeps_311_sessions_forever() -> None:
    h = BrokerHarness(BrokerConfig(max_session_expiry_interval=None))
    sub = h.connected("sub", V311, clean_start=False)
    sub.drop()
    h.advance(30 * 24 * 3600)
    assert [s.client_id for s in h.broker.sessions()] == ["sub"]
