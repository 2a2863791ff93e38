"""The broker servers' I/O-free driver, with fake peers and a fake clock.

:class:`mqttproto.adapters._driver.Driver` is what the asyncio, trio and
threads servers share. Here it is driven by hand, as a server drives it: a
:class:`FakePeer` does what the driver asks of a connection (write, pause or
resume reading, finish, abort) and models a client that may stop reading;
the clock is a number that moves when a test says so; ``pump_soon`` and
``wake_at`` are honoured by :meth:`World.run` and :meth:`World.advance`. No
sockets, no event loop; only the authentication test has worker threads,
whose answers it hands back itself.
"""

from __future__ import annotations

import gc
import logging
import queue
import ssl
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from mqttproto import PacketReader, ProtocolVersion, encode_packet
from mqttproto.adapters._driver import LINGER_BYTES, PAUSE_READING_ABOVE, Driver, Peer
from mqttproto.adapters._listener import Listener
from mqttproto.auth import AuthResult, ConnectInfo, DeferredAuthResult
from mqttproto.broker import Broker
from mqttproto.config import BrokerConfig
from mqttproto.enums import QoS, ReasonCode
from mqttproto.packets import (
    ConnAckPacket,
    ConnectPacket,
    DisconnectPacket,
    Packet,
    PingReqPacket,
    PingRespPacket,
    PublishPacket,
    PubRecPacket,
    SubAckPacket,
    SubscribePacket,
    Subscription,
    Will,
)

V5 = ProtocolVersion.MQTT_5_0
V311 = ProtocolVersion.MQTT_3_1_1
LOGGER = "mqttproto.broker"
TCP = Listener(port=0)


class FakePeer(Peer):
    """A connection whose client takes what is written at once, unless
    :attr:`stalled`; it records what the driver asked of it."""

    __slots__ = (
        "aborted",
        "cert",
        "finished",
        "half_closed",
        "out",
        "reader",
        "reading",
        "received",
        "stalled",
        "writes",
    )

    def __init__(self, listener: Listener, name: str, version: ProtocolVersion) -> None:
        super().__init__(listener, name)
        #: Written and not yet taken by the client.
        self.out = bytearray()
        #: Taken by the client.
        self.received = bytearray()
        self.reader = PacketReader(version=version)
        self.writes = 0
        self.stalled = False
        self.reading = True
        self.finished = False
        self.half_closed = False
        self.aborted = False
        self.cert: dict[str, Any] | None = None

    def write(self, data: bytes) -> None:
        assert data and not self.aborted
        self.writes += 1
        self.out += data
        if not self.stalled:
            self.take()

    def take(self) -> None:
        self.received += self.out
        self.out.clear()

    def unsent(self) -> int:
        return len(self.out)

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def half_close(self) -> None:
        self.half_closed = True

    def finish(self) -> None:
        self.finished = True

    def abort(self) -> None:
        self.aborted = True

    def peercert(self) -> dict[str, Any] | None:
        return self.cert

    def packets(self) -> list[Packet]:
        """The packets the client got since the last call."""
        data = bytes(self.received)
        self.received.clear()
        return self.reader.feed(data)


class World:
    """A broker, its driver, and the server's part played by hand."""

    def __init__(
        self,
        config: BrokerConfig | None = None,
        *,
        broker: Broker | None = None,
        max_buffered_output: int = 32 * 1024 * 1024,
        close_timeout: float = 5.0,
        **broker_options: Any,
    ) -> None:
        self.now = 100.0
        self.broker = broker or Broker(config, **broker_options)
        self.pump_wanted = False
        #: Every deadline wake_at announced, in order.
        self.deadlines: list[float | None] = []
        self.driver = Driver(
            self.broker,
            max_buffered_output=max_buffered_output,
            close_timeout=close_timeout,
            pump_soon=self._pump_soon,
            wake_at=self.deadlines.append,
        )
        self._ports = iter(range(40000, 41000))

    def _pump_soon(self) -> None:
        self.pump_wanted = True

    def run(self) -> None:
        """Pump while the driver asks for it, as a server's loop would."""
        for _ in range(100):
            if not self.pump_wanted:
                return
            self.pump_wanted = False
            self.driver.pump(self.now)
        raise AssertionError("the driver keeps asking for pumps")

    def advance(self, seconds: float) -> None:
        """Move the clock, pumping at each deadline the driver announced."""
        end = self.now + seconds
        for _ in range(100):
            deadline = self.driver.wakeup_at
            if deadline is None or deadline > end:
                break
            self.now = max(self.now, deadline)
            self.driver.pump(self.now)
            self.run()
        self.now = end

    def peer(self, version: ProtocolVersion = V5, listener: Listener = TCP) -> FakePeer:
        """A connection just accepted (and through TLS, if any), opened."""
        port = next(self._ports)
        peer = FakePeer(listener, f"10.0.0.1:{port}", version)
        assert self.driver.open(peer, self.now, ("10.0.0.1", port))
        return peer

    def send(self, peer: FakePeer, *packets: Packet | bytes, version: ProtocolVersion = V5) -> None:
        data = b"".join(
            p if isinstance(p, bytes) else encode_packet(p, version=version) for p in packets
        )
        self.driver.received(peer, data, self.now)

    def client(self, client_id: str, version: ProtocolVersion = V5, **connect: Any) -> FakePeer:
        """A connected client: CONNECT sent, CONNACK received."""
        peer = self.peer(version)
        self.send(peer, ConnectPacket(client_id, version, **connect), version=version)
        self.run()
        (connack,) = peer.packets()
        assert isinstance(connack, ConnAckPacket) and connack.reason_code == ReasonCode.SUCCESS
        return peer

    def subscriber(
        self, client_id: str, topic_filter: str, qos: QoS = QoS.AT_MOST_ONCE
    ) -> FakePeer:
        peer = self.client(client_id)
        self.send(peer, SubscribePacket(1, [Subscription(topic_filter, qos)]))
        self.run()
        assert [type(p) for p in peer.packets()] == [SubAckPacket]
        return peer

    def gone(self, peer: FakePeer, reason: str = "peer closed the connection") -> None:
        """The server saw the connection end (its socket closed)."""
        self.driver.lost(peer, self.now, reason)
        self.run()


def logged(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def publish(
    topic: str, payload: bytes, qos: QoS = QoS.AT_MOST_ONCE, packet_id: int = 0
) -> PublishPacket:
    return PublishPacket(topic, payload, qos=qos, packet_id=packet_id or None)


# -- the pump ------------------------------------------------------------------------


def test_input_asks_for_a_pump_and_the_pump_writes_the_answer(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World()
    peer = world.peer()
    assert logged(caplog, "opened") == ["connection 1 opened from 10.0.0.1:40000"]
    world.send(peer, ConnectPacket("c", V5))
    assert world.pump_wanted and peer.writes == 0  # nothing written before the pump
    world.run()
    (connack,) = peer.packets()
    assert isinstance(connack, ConnAckPacket) and connack.reason_code == ReasonCode.SUCCESS
    assert logged(caplog, "CONNECT accepted") == [
        "connection 1 from 10.0.0.1:40000 (client 'c', anonymous): CONNECT accepted"
    ]
    assert world.driver.connection_count == 1


def test_what_one_pump_has_for_a_connection_goes_out_in_one_write() -> None:
    world = World()
    sub = world.subscriber("sub", "t/#")
    pub = world.client("pub")
    writes = sub.writes
    for i in range(3):
        world.send(pub, publish(f"t/{i}", b"x"))
    world.run()
    assert sub.writes == writes + 1
    assert [p.topic for p in sub.packets() if isinstance(p, PublishPacket)] == ["t/0", "t/1", "t/2"]


def test_the_broker_timer_is_announced_and_handled_when_due(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World()
    peer = world.client("sleepy", keep_alive=2)
    assert world.deadlines and world.deadlines[-1] == world.driver.wakeup_at
    assert world.driver.wakeup_at is not None and world.driver.wakeup_at > world.now
    world.advance(10)
    (goodbye,) = peer.packets()
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == ReasonCode.KEEP_ALIVE_TIMEOUT
    assert peer.half_closed
    world.gone(peer)
    # One line, a warning, naming the client: who closed it and why.
    assert [
        (r.levelname, r.getMessage()) for r in caplog.records if "KEEP_ALIVE" in r.getMessage()
    ] == [
        (
            "WARNING",
            "connection 1 from 10.0.0.1:40000 (client 'sleepy', anonymous) closed: "
            "broker sent DISCONNECT KEEP_ALIVE_TIMEOUT (0x8D)",
        )
    ]


def test_a_deadline_that_rang_early_is_announced_again() -> None:
    """A server whose timer ran before the deadline (asyncio's ``call_at`` may,
    by its clock's resolution) pumps, nothing is due, and the same deadline
    stands: it is announced again, so that the server arms it again."""
    world = World()
    world.client("sleepy", keep_alive=2)
    deadline = world.driver.wakeup_at
    assert deadline is not None
    world.deadlines.clear()
    world.driver.pump(deadline)  # due: handled, a later one announced
    later = world.driver.wakeup_at
    assert later is not None and later > deadline and world.deadlines == [later]


# -- closing -------------------------------------------------------------------------


class Refusing:
    def authenticate(self, info: ConnectInfo) -> AuthResult:
        return AuthResult.reject(ReasonCode.NOT_AUTHORIZED)

    def continue_authentication(self, info: ConnectInfo, data: bytes | None) -> AuthResult:
        return AuthResult.reject(ReasonCode.NOT_AUTHORIZED)


def test_a_refused_connect_is_logged_and_closed_after_its_last_bytes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World(authenticator=Refusing())
    peer = world.peer()
    world.send(peer, ConnectPacket("c", V5))
    world.run()
    (connack,) = peer.packets()
    assert isinstance(connack, ConnAckPacket)
    assert connack.reason_code == ReasonCode.NOT_AUTHORIZED
    assert peer.half_closed and not peer.aborted
    assert logged(caplog, "refused") == []
    world.gone(peer)
    # Logged once, as a warning, when the connection is over; the close names it.
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "refused" in r.getMessage()] == [
        (
            "WARNING",
            "connection 1 from 10.0.0.1:40000 (client 'c', anonymous) closed: "
            "CONNECT refused: NOT_AUTHORIZED (0x87)",
        )
    ]
    assert world.driver.connection_count == 0


def test_a_closing_connection_that_does_not_drain_is_aborted_after_close_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World(close_timeout=3.0)
    peer = world.client("c")
    peer.stalled = True  # the PINGRESP is never taken
    world.send(peer, PingReqPacket(), DisconnectPacket())
    world.run()
    assert peer.half_closed and not peer.aborted
    assert world.driver.wakeup_at == world.now + 3.0
    world.advance(2.9)
    assert not peer.aborted
    world.advance(0.2)
    assert peer.aborted
    assert logged(caplog, "last bytes") == [
        "connection 1 from 10.0.0.1:40000 (client 'c', anonymous): last bytes not sent within 3.0 s; aborted"
    ]
    world.gone(peer, "connection lost: aborted")
    assert logged(caplog, "closed:") == [
        "connection 1 from 10.0.0.1:40000 (client 'c', anonymous) closed: "
        "client sent DISCONNECT NORMAL_DISCONNECTION (0x00)"
    ]


def test_after_the_goodbye_input_is_drained_until_the_client_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The goodbye is followed by a half-close, not a close: what the client
    still sends is thrown away (no reset for unread input), and its EOF
    finishes the connection."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World(BrokerConfig(receive_maximum=1), close_timeout=3.0)
    peer = world.client("c")
    publish = PublishPacket("t", b"x", QoS.EXACTLY_ONCE, packet_id=1)
    world.send(peer, publish, attrs.evolve(publish, packet_id=2))
    world.run()
    (pubrec, goodbye) = peer.packets()
    assert isinstance(pubrec, PubRecPacket)
    assert goodbye.reason_code == ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
    assert peer.half_closed and not peer.finished
    world.send(peer, attrs.evolve(publish, packet_id=3), PingReqPacket())
    world.run()
    assert peer.packets() == [] and not peer.finished  # read, thrown away
    world.driver.eof(peer, world.now)
    assert peer.finished and not peer.aborted
    world.gone(peer)
    assert world.driver.connection_count == 0


def test_after_the_goodbye_a_client_that_stays_is_closed_after_close_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World(close_timeout=3.0)
    peer = world.client("c")
    world.send(peer, ConnectPacket("c", V5))  # a second CONNECT: 0x82
    world.run()
    assert peer.half_closed and not peer.finished
    world.advance(2.9)
    assert not peer.finished
    world.advance(0.2)
    assert peer.finished and not peer.aborted  # closed, not reset: nothing unsent
    assert logged(caplog, "after the goodbye") == [
        "connection 1 from 10.0.0.1:40000 (client 'c', anonymous): "
        "still open 3.0 s after the goodbye; closed"
    ]


def test_after_the_goodbye_more_than_linger_bytes_closes_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World(close_timeout=3.0)
    peer = world.client("c")
    world.send(peer, ConnectPacket("c", V5))
    world.run()
    world.driver.received(peer, b"\xc0\x00" * (LINGER_BYTES // 2), world.now)
    assert not peer.finished
    world.driver.received(peer, b"\xc0\x00", world.now)
    world.driver.received(peer, b"\xc0\x00", world.now)
    assert peer.finished and not peer.aborted
    assert logged(caplog, "after the goodbye") == [
        "connection 1 from 10.0.0.1:40000 (client 'c', anonymous): "
        f"over {LINGER_BYTES} bytes after the goodbye; closed"
    ]


def test_a_connection_that_drains_in_time_is_not_aborted(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    world = World(close_timeout=3.0)
    peer = world.client("c")
    world.send(peer, DisconnectPacket())
    world.run()
    world.advance(1.0)
    world.gone(peer)
    world.advance(10.0)
    assert not peer.aborted and caplog.records == []


def test_a_failure_of_a_connection_never_lost_does_not_mark_a_later_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A connection refused and then dropped with its server (never reported
    lost) leaves nothing behind: a later connection's normal goodbye, on a peer
    object that may reuse the memory of the dropped one, is an INFO line."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    for _ in range(20):
        refused = World(authenticator=Refusing())
        peer = refused.peer()
        refused.send(peer, ConnectPacket("c", V5))
        refused.run()
        assert peer.half_closed
        del refused, peer
        gc.collect()  # its memory free for the next peer objects
    caplog.clear()
    world = World()
    peer = world.client("c")
    world.send(peer, DisconnectPacket())
    world.run()
    world.gone(peer)
    assert [(r.levelname, r.getMessage()) for r in caplog.records if "closed" in r.getMessage()] == [
        (
            "INFO",
            "connection 1 from 10.0.0.1:40000 (client 'c', anonymous) closed: "
            "client sent DISCONNECT NORMAL_DISCONNECTION (0x00)",
        )
    ]


def test_eof_publishes_the_will_and_closes_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World()
    sub = world.subscriber("sub", "wills/#")
    peer = world.client("c", will=Will("wills/c", b"gone"))
    world.driver.eof(peer, world.now)
    world.run()
    assert peer.finished
    assert [p.payload for p in sub.packets() if isinstance(p, PublishPacket)] == [b"gone"]
    world.gone(peer)
    assert logged(caplog, "closed:") == [
        "connection 2 from 10.0.0.1:40001 (client 'c', anonymous) closed: peer closed the connection"
    ]


def test_shutdown_says_goodbye_to_mqtt5_clients_and_closes_everyone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World()
    v5 = world.client("five")
    v3 = world.client("three", V311)
    world.driver.shutdown(world.now)
    (goodbye,) = v5.packets()
    assert isinstance(goodbye, DisconnectPacket)
    assert goodbye.reason_code == ReasonCode.SERVER_SHUTTING_DOWN
    assert v3.packets() == []  # MQTT 3.1.1 has no DISCONNECT from the server
    assert v5.half_closed and v3.half_closed
    world.gone(v5)
    world.gone(v3)
    assert logged(caplog, "closed:") == [
        "connection 1 from 10.0.0.1:40000 (client 'five', anonymous) closed: "
        "broker sent DISCONNECT SERVER_SHUTTING_DOWN (0x8B)",
        "connection 2 from 10.0.0.1:40001 (client 'three', anonymous) closed: "
        "closed by the broker: SERVER_SHUTTING_DOWN (0x8B)",
    ]
    assert logged(caplog, "WARNING") == []  # a shutdown is no failure


# -- back-pressure -------------------------------------------------------------------


def test_a_reader_that_stalls_is_paused_and_held_by_the_core_until_it_drains() -> None:
    config = BrokerConfig(max_unsent_bytes=PAUSE_READING_ABOVE)
    world = World(config)
    sub = world.subscriber("sub", "t/#", QoS.AT_LEAST_ONCE)
    pub = world.client("pub")
    sub.stalled = True
    big = bytes(PAUSE_READING_ABOVE + 1024)
    world.send(pub, publish("t/big", big))
    world.run()
    assert sub.unsent() > PAUSE_READING_ABOVE and not sub.reading
    # Above the core's mark with the backlog reported: the next message waits.
    world.send(pub, publish("t/small", b"later", QoS.AT_LEAST_ONCE, packet_id=1))
    world.run()
    assert sub.unsent() == len(encode_packet(publish("t/big", big), version=V5))
    (info,) = [s for s in world.broker.sessions() if s.client_id == "sub"]
    assert info.connected and info.queued == 1
    # The client reads again: reading resumes, and what waited goes out.
    sub.stalled = False
    sub.take()
    world.driver.output_changed(sub, world.now)
    assert sub.reading and world.pump_wanted
    world.run()
    assert [p.payload[:5] for p in sub.packets() if isinstance(p, PublishPacket)] == [
        bytes(5),
        b"later",
    ]


def test_a_reader_that_keeps_up_is_never_paused() -> None:
    world = World()
    sub = world.subscriber("sub", "t/#")
    pub = world.client("pub")
    for _ in range(4):
        world.send(pub, publish("t/x", bytes(PAUSE_READING_ABOVE)))
        world.run()
    assert sub.reading and sub.unsent() == 0
    assert len([p for p in sub.packets() if isinstance(p, PublishPacket)]) == 4


class FlowControlled(FakePeer):
    """A transport with write buffer limits of its own, as asyncio's: it says
    when it is congested (``pause_writing``), whatever the byte count."""

    __slots__ = ("over_high_water",)

    def __init__(self, listener: Listener, name: str, version: ProtocolVersion) -> None:
        super().__init__(listener, name, version)
        self.over_high_water = False

    def congested(self, unsent: int) -> bool:
        return self.over_high_water


def test_a_transport_that_says_it_is_congested_is_paused_and_its_buffer_reported() -> None:
    world = World(BrokerConfig(max_unsent_bytes=1000))
    peer = FlowControlled(TCP, "10.0.0.1:40000", V5)
    assert world.driver.open(peer, world.now, ("10.0.0.1", 40000))
    world.send(
        peer, ConnectPacket("sub", V5), SubscribePacket(1, [Subscription("t/#", QoS.AT_LEAST_ONCE)])
    )
    world.run()
    peer.packets()
    pub = world.client("pub")
    peer.stalled = True
    world.send(pub, publish("t/1", bytes(2000), QoS.AT_LEAST_ONCE, packet_id=1))
    world.run()
    assert peer.reading  # 2 kB unsent, but the transport is not congested
    peer.over_high_water = True
    world.driver.output_changed(peer, world.now)  # pause_writing
    assert not peer.reading
    # 2 kB reported, above max_unsent_bytes: the next message waits in the session.
    world.send(pub, publish("t/2", b"later", QoS.AT_LEAST_ONCE, packet_id=2))
    world.run()
    (info,) = [s for s in world.broker.sessions() if s.client_id == "sub"]
    assert info.queued == 1
    peer.over_high_water = peer.stalled = False
    peer.take()
    world.driver.output_changed(peer, world.now)  # resume_writing
    world.run()
    assert peer.reading
    assert [p.topic for p in peer.packets() if isinstance(p, PublishPacket)] == ["t/1", "t/2"]


def test_a_slow_consumer_is_dropped_and_the_others_carry_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World(max_buffered_output=10_000)
    sub = world.subscriber("sub", "t/#")
    pub = world.client("pub")
    sub.stalled = True
    for _ in range(3):
        world.send(pub, publish("t/x", bytes(4000)))
        world.run()
    assert sub.aborted
    assert logged(caplog, "slow consumer") == [
        "connection 1 from 10.0.0.1:40000 (client 'sub', anonymous) dropped: slow consumer (12027 bytes unsent, limit 10000)"
    ]
    world.gone(sub, "connection lost: aborted")
    assert logged(caplog, "closed:") == [
        "connection 1 from 10.0.0.1:40000 (client 'sub', anonymous) closed: "
        "dropped as a slow consumer"
    ]
    world.send(pub, PingReqPacket())
    world.run()
    assert pub.packets() == [PingRespPacket()]


# -- errors in the core --------------------------------------------------------------


class Fragile(Broker):
    """A broker whose receive_data and flush raise on demand."""

    fail_flush = False

    def receive_data(self, conn: int, data: bytes, now: float) -> None:
        if data == b"boom":
            raise RuntimeError("boom")
        super().receive_data(conn, data, now)

    def flush(self, now: float) -> list[tuple[int, bytes]]:
        if self.fail_flush:
            raise RuntimeError("flush")
        return super().flush(now)


def test_an_exception_from_the_core_drops_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    world = World(broker=Fragile())
    victim = world.client("victim")
    other = world.client("other")
    world.driver.received(victim, b"boom", world.now)
    assert victim.aborted
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in errors] == [
        "the broker core raised in receive_data() for connection 1 from 10.0.0.1:40000 (client 'victim', anonymous); dropping it"
    ]
    assert errors[0].exc_info is not None
    world.gone(victim, "connection lost: aborted")
    assert logged(caplog, "closed:") == [
        "connection 1 from 10.0.0.1:40000 (client 'victim', anonymous) closed: "
        "internal error in receive_data()"
    ]
    world.send(other, PingReqPacket())
    world.run()
    assert other.packets() == [PingRespPacket()]


def test_a_failing_flush_is_logged_and_the_next_pump_carries_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    broker = Fragile()
    world = World(broker=broker)
    peer = world.client("c")
    world.send(peer, PingReqPacket())
    broker.fail_flush = True
    world.run()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR] == [
        "the broker core raised in flush()"
    ]
    assert not peer.aborted and peer.packets() == []
    broker.fail_flush = False
    world.send(peer, PingReqPacket())
    world.run()
    assert peer.packets() == [PingRespPacket(), PingRespPacket()]


# -- opening -------------------------------------------------------------------------


def identity_listener() -> Listener:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.verify_mode = ssl.CERT_REQUIRED
    return Listener(port=0, ssl=context, use_identity_as_username=True)


def test_the_certificate_cn_is_the_username() -> None:
    world = World()
    peer = FakePeer(identity_listener(), "10.0.0.1:40000", V5)
    peer.cert = {"subject": ((("commonName", "alice"),),)}
    assert world.driver.open(peer, world.now, ("10.0.0.1", 40000))
    world.send(peer, ConnectPacket("c", V5, username="mallory"))
    world.run()
    assert [(s.client_id, s.username) for s in world.broker.sessions()] == [("c", "alice")]


def test_no_certificate_cn_is_refused_before_mqtt(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    peer = FakePeer(identity_listener(), "10.0.0.1:40000", V5)
    assert not world.driver.open(peer, world.now, ("10.0.0.1", 40000))
    assert world.broker.connection_count == 0 and world.driver.connection_count == 0
    assert logged(caplog, "refused") == [
        "connection from 10.0.0.1:40000 refused: no client certificate with a subject CN"
    ]


# -- deferred authentication ---------------------------------------------------------


class Deferred:
    def authenticate(self, info: ConnectInfo) -> DeferredAuthResult:
        return DeferredAuthResult(AuthResult.accept)

    def continue_authentication(self, info: ConnectInfo, data: bytes | None) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)


def test_deferred_authentications_run_on_the_workers_and_their_answers_are_pumped() -> None:
    world = World(authenticator=Deferred())
    answers: queue.Queue[Callable[[], None]] = queue.Queue()
    world.driver.start(1, call_soon_threadsafe=answers.put, clock=lambda: world.now)
    try:
        peer = world.peer()
        world.send(peer, ConnectPacket("c", V5))
        world.run()
        assert peer.packets() == []  # the job is on a worker
        answers.get(timeout=10)()  # back on "the server's thread"
        assert world.pump_wanted
        world.run()
        (connack,) = peer.packets()
        assert isinstance(connack, ConnAckPacket) and connack.reason_code == ReasonCode.SUCCESS
    finally:
        world.driver.stop()


# -- WebSocket -----------------------------------------------------------------------


def test_websocket_framing_and_the_close_handshake() -> None:
    wsproto = pytest.importorskip("wsproto")
    from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Request

    world = World()
    listener = Listener(transport="websocket", port=0)
    client = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
    peer = world.peer(V5, listener)

    def exchange(data: bytes) -> list[Any]:
        world.driver.received(peer, data, world.now)
        world.run()
        answer = bytes(peer.received)
        peer.received.clear()
        client.receive_data(answer)
        return list(client.events())

    handshake = client.send(Request(host="broker", target="/mqtt", subprotocols=["mqtt"]))
    (accepted,) = exchange(handshake)
    assert isinstance(accepted, AcceptConnection) and accepted.subprotocol == "mqtt"
    connect = client.send(
        wsproto.events.Message(data=encode_packet(ConnectPacket("ws", V5), version=V5))
    )
    (message,) = exchange(connect)
    assert isinstance(message, BytesMessage)
    (connack,) = PacketReader(version=V5).feed(bytes(message.data))
    assert isinstance(connack, ConnAckPacket) and connack.reason_code == ReasonCode.SUCCESS
    # The client disconnects: the broker closes, the driver starts the
    # Close handshake and waits for the client's answer before finishing.
    disconnect = client.send(
        wsproto.events.Message(data=encode_packet(DisconnectPacket(), version=V5))
    )
    (closing,) = exchange(disconnect)
    assert isinstance(closing, CloseConnection) and closing.code == 1000
    assert not peer.finished
    world.driver.received(peer, client.send(closing.response()), world.now)
    assert peer.finished and not peer.aborted
