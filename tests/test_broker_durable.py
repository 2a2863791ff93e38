"""The broker on a durable store (SQLiteStore): acknowledgements wait for the
commit, and a broker started again on the same file (the old one abandoned
after its last commit, as a SIGKILL leaves it) carries on.

A "restart" here is a new Broker and a new SQLiteStore on the same file at a
later wall-clock time, with a monotonic clock that starts again.
"""

from __future__ import annotations

from pathlib import Path

from helpers import V5, V311, BrokerHarness, PacketFactory

from mqttproto import QoS, ReasonCode, Subscription
from mqttproto.config import ClientConfig
from mqttproto.events import ConnectionAccepted, PublishAcknowledged
from mqttproto.packets import PubAckPacket, PublishPacket, PubRecPacket, SubAckPacket, Will
from mqttproto.store import SQLiteStore

WALL_START = 1_700_000_000.0


class World:
    """A file, the wall clock, and brokers started on it one after another."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.wall = WALL_START
        self.harness: BrokerHarness | None = None
        self.store: SQLiteStore | None = None

    def start(self) -> BrokerHarness:
        """A new broker process on the file (the previous one just stops)."""
        if self.store is not None:
            self.store.close()  # what was not committed is lost
        base = self.wall
        holder: dict[str, BrokerHarness] = {}
        # The harness clock starts at 1000 in every process; wall time runs on.
        self.store = SQLiteStore(
            self.path,
            clock=lambda: holder["h"].now if "h" in holder else 1000.0,
            wall_clock=lambda: base + ((holder["h"].now - 1000.0) if "h" in holder else 0.0),
        )
        harness = BrokerHarness(store=self.store)
        holder["h"] = harness
        self.harness = harness
        return harness

    def stop_for(self, seconds: float) -> None:
        """The broker is down for ``seconds`` (of wall-clock time)."""
        assert self.harness is not None
        self.wall += self.harness.now - 1000.0 + seconds


def accepted(events: list[object]) -> ConnectionAccepted:
    [event] = [e for e in events if isinstance(e, ConnectionAccepted)]
    return event


def persistent_subscriber(h: BrokerHarness, name: str = "sub", qos: int = 1, version=V5):
    kwargs = {"session_expiry_interval": 3600} if version == V5 else {}
    sub = h.connected(name, version, clean_start=False, **kwargs)
    sub.conn.subscribe([Subscription("t/#", QoS(qos))])
    h.pump()
    return sub


def test_a_puback_waits_for_the_commit(tmp_path: Path) -> None:
    world = World(tmp_path / "s.db")
    h = world.start()
    persistent_subscriber(h).drop()
    conn = h.open_raw()
    h.send_raw(conn, PacketFactory.connect("pub"))
    publish = PacketFactory.encode(PublishPacket("t/a", b"m", QoS.AT_LEAST_ONCE, packet_id=7))
    h.broker.receive_data(conn, publish, h.now)
    # Received and routed, not yet committed: no acknowledgement on the wire.
    assert h.broker.data_to_send(conn, h.now) == PacketFactory.encode(PubAckPacket(7))
    # data_to_send committed first: the queued copy is in the file.
    again = SQLiteStore(world.path)
    [session] = again.load_sessions()
    assert [m.packet.payload for m in session.queued] == [b"m"]
    again.close()


def test_queued_messages_survive_a_restart_and_the_session_is_present(tmp_path: Path) -> None:
    world = World(tmp_path / "s.db")
    h = world.start()
    persistent_subscriber(h, "v5").drop()
    persistent_subscriber(h, "v3", version=V311).drop()
    pub = h.connected("pub")
    for n in range(3):
        pub.conn.publish("t/a", b"%d" % n, qos=1 + n % 2)
    pub.conn.publish("r", b"kept", retain=True, qos=1)
    h.pump()
    assert len([e for e in pub.take() if isinstance(e, PublishAcknowledged)]) == 4
    world.stop_for(10)
    h2 = world.start()
    for name, version in (("v5", V5), ("v3", V311)):
        sub = h2.client(name, version)
        kwargs = {"session_expiry_interval": 3600} if version == V5 else {}
        assert accepted(sub.connect(clean_start=False, **kwargs)).session_present
        h2.pump()
        assert [m.payload for m in sub.take_messages()] == [b"0", b"1", b"2"]
    assert [m.payload for m in h2.broker.retained("r")] == [b"kept"]


def test_a_message_in_flight_is_sent_again_with_dup(tmp_path: Path) -> None:
    world = World(tmp_path / "s.db")
    h = world.start()
    sub = persistent_subscriber(h, qos=2)
    pub = h.connected("pub")
    pub.conn.publish("t/a", b"mid", qos=2)
    pub_bytes = pub.conn.data_to_send(h.now)
    h.broker.receive_data(pub.conn_id, pub_bytes, h.now)
    out = dict(h.broker.flush(h.now))
    assert sub.conn_id in out  # the delivery left after its commit
    world.stop_for(1)  # killed before the subscriber's PUBREC arrived
    h2 = world.start()
    sub2 = h2.client("sub")
    assert accepted(sub2.connect(clean_start=False, session_expiry_interval=3600)).session_present
    h2.pump()
    [message] = sub2.take_messages()
    assert (message.payload, message.duplicate) == (b"mid", True)


def test_a_retained_message_sent_to_a_new_subscription_is_stored_in_flight(
    tmp_path: Path,
) -> None:
    """Retained QoS 2 messages fed to a persistent session's new
    subscription are in flight like any other: killed before the client
    answered, the broker sends them again, with DUP and the same packet
    identifiers, so that the client delivers each once [MQTT-4.4.0-1]."""
    world = World(tmp_path / "s.db")
    h = world.start()
    pub = h.connected("pub")
    for topic in ("t/1", "t/2"):
        pub.conn.publish(topic, topic.encode(), qos=2, retain=True)
    h.pump()
    sub = h.client("sub", config=ClientConfig(auto_acknowledge=False))
    sub.connect(clean_start=False, session_expiry_interval=3600)
    sub.conn.subscribe([Subscription("t/#", QoS.EXACTLY_ONCE)])
    h.pump()
    first = [(m.packet.packet_id, m.payload) for m in sub.take_messages()]
    assert sorted(payload for _, payload in first) == [b"t/1", b"t/2"]
    world.stop_for(1)  # killed: the client never acknowledged them
    h2 = world.start()
    sub2 = h2.client("sub")
    assert accepted(sub2.connect(clean_start=False, session_expiry_interval=3600)).session_present
    h2.pump()
    again = sub2.take_messages()
    assert [(m.packet.packet_id, m.payload) for m in again] == first
    assert all(m.duplicate for m in again)


def test_a_qos2_message_sent_again_after_a_restart_is_not_delivered_twice(tmp_path: Path) -> None:
    """The publisher's PUBREC went out (so the message was committed) and the
    broker died before the PUBREL: the publisher, back, may send the PUBLISH
    again with DUP; the stored identifier says it was had [MQTT-4.3.3-10]."""
    world = World(tmp_path / "s.db")
    h = world.start()
    sub = persistent_subscriber(h, qos=2)
    sub.drop()
    conn = h.open_raw()
    connect = PacketFactory.connect("pub", clean_start=False, session_expiry_interval=3600)
    h.send_raw(conn, connect)
    publish = PublishPacket("t/a", b"once", QoS.EXACTLY_ONCE, packet_id=9)
    answer = h.send_raw(conn, PacketFactory.encode(publish))
    assert answer == PacketFactory.encode(PubRecPacket(9))
    world.stop_for(1)
    h2 = world.start()
    conn2 = h2.open_raw()
    assert h2.send_raw(conn2, connect)[2] == 1  # CONNACK, session present
    resent = PublishPacket("t/a", b"once", QoS.EXACTLY_ONCE, duplicate=True, packet_id=9)
    assert h2.send_raw(conn2, PacketFactory.encode(resent)) == PacketFactory.encode(PubRecPacket(9))
    sub2 = h2.client("sub")
    sub2.connect(clean_start=False, session_expiry_interval=3600)
    h2.pump()
    assert [m.payload for m in sub2.take_messages()] == [b"once"]


def test_a_subscription_is_stored_before_its_suback(tmp_path: Path) -> None:
    world = World(tmp_path / "s.db")
    h = world.start()
    conn = h.open_raw()
    h.send_raw(conn, PacketFactory.connect("s", clean_start=False, session_expiry_interval=60))
    from mqttproto.packets import SubscribePacket

    subscribe = SubscribePacket(3, [Subscription("a/+", QoS.AT_LEAST_ONCE)])
    assert h.send_raw(conn, PacketFactory.encode(subscribe)) == PacketFactory.encode(
        SubAckPacket(3, [ReasonCode.GRANTED_QOS_1])
    )
    world.stop_for(1)
    h2 = world.start()
    h2.advance(0)  # the broker loads its store when it first sees the time
    assert [s.topic_filter for s in h2.broker.subscriptions("s")] == ["a/+"]


def test_a_session_that_expired_while_the_broker_was_down_is_gone(tmp_path: Path) -> None:
    world = World(tmp_path / "s.db")
    h = world.start()
    for name, expiry in (("short", 60), ("long", 600)):
        sub = h.connected(name, clean_start=False, session_expiry_interval=expiry)
        sub.conn.subscribe(["x"])
        h.pump()
        sub.drop()
    h.advance(30)  # their clocks run from here: 30 s gone
    world.stop_for(40)  # 70 s in all: "short" expired while down
    h2 = world.start()
    h2.advance(0)
    assert sorted(s.client_id for s in h2.broker.sessions()) == ["long"]
    # The stored deadline is kept, not restarted: 600 - 70 s left.
    h2.advance(529)
    assert [s.client_id for s in h2.broker.sessions()] == ["long"]
    h2.advance(2)
    assert h2.broker.sessions() == []


def test_a_will_sent_after_its_delay_is_not_sent_again_after_a_restart(
    tmp_path: Path,
) -> None:
    world = World(tmp_path / "s.db")
    h = world.start()
    persistent_subscriber(h, "watcher").drop()
    will = Will("t/will", b"gone", QoS.AT_LEAST_ONCE, will_delay_interval=5)
    h.connected("c", will=will, clean_start=False, session_expiry_interval=3600).drop()
    h.advance(6)  # the delay ran out: the will went to the watcher's queue
    world.stop_for(1)
    h2 = world.start()
    h2.advance(10)
    watcher = h2.client("watcher")
    watcher.connect(clean_start=False, session_expiry_interval=3600)
    h2.pump()
    assert [m.payload for m in watcher.take_messages()] == [b"gone"]


def test_message_expiry_counts_the_time_stored_downtime_included(tmp_path: Path) -> None:
    world = World(tmp_path / "s.db")
    h = world.start()
    persistent_subscriber(h).drop()
    pub = h.connected("pub")
    pub.conn.publish("t/short", b"s", qos=1, message_expiry_interval=20)
    pub.conn.publish("t/long", b"l", qos=1, message_expiry_interval=100)
    h.pump()
    h.advance(5)
    world.stop_for(25)  # 30 s stored
    h2 = world.start()
    sub = h2.client("sub")
    sub.connect(clean_start=False, session_expiry_interval=3600)
    h2.pump()
    [message] = sub.take_messages()
    assert (message.payload, message.packet.message_expiry_interval) == (b"l", 70)


def _fill_the_disk(store: SQLiteStore) -> None:
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")


def test_a_full_disk_refuses_qos1_and_qos2_with_0x97_in_v5(tmp_path: Path) -> None:
    world = World(tmp_path / "s.db")
    h = world.start()
    persistent_subscriber(h).drop()
    conn = h.open_raw()
    h.send_raw(conn, PacketFactory.connect("pub"))
    assert world.store is not None
    _fill_the_disk(world.store)
    big = b"x" * 20_000
    answers = h.send_raw(
        conn,
        PacketFactory.encode(PublishPacket("t/a", big, QoS.AT_LEAST_ONCE, packet_id=1))
        + PacketFactory.encode(PublishPacket("t/a", big, QoS.EXACTLY_ONCE, packet_id=2)),
    )
    assert answers == PacketFactory.encode(
        PubAckPacket(1, ReasonCode.QUOTA_EXCEEDED)
    ) + PacketFactory.encode(PubRecPacket(2, ReasonCode.QUOTA_EXCEEDED))
    assert h.broker.store_failures >= 1
    assert str(world.path) in (h.broker.last_store_error or "")


def test_a_full_disk_closes_a_311_publisher_unacknowledged(tmp_path: Path) -> None:
    world = World(tmp_path / "s.db")
    h = world.start()
    persistent_subscriber(h).drop()
    conn = h.open_raw()
    h.send_raw(conn, PacketFactory.connect("pub", V311))
    assert world.store is not None
    _fill_the_disk(world.store)
    publish = PublishPacket("t/a", b"x" * 20_000, QoS.AT_LEAST_ONCE, packet_id=1)
    assert h.send_raw(conn, PacketFactory.encode(publish, V311)) == b""
    assert conn in h.raw_closed
