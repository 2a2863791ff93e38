"""No loss under faults: clients and the broker core joined by links that break.

Several :class:`~mqttproto.client.ClientConnection` objects talk to one
:class:`~mqttproto.broker.Broker` (sans-IO, fake clock). Each client has its
own simulated link: bytes written by one side wait in the link until a rule
delivers some prefix of them (a whole packet, several, or part of one). A link
can break at any moment: each direction delivers an arbitrary prefix of what
was in flight (so a packet may be cut in the middle), then both sides learn
the connection is gone (``receive_eof`` / ``connection_lost``), with no
DISCONNECT. Clients reconnect with ``clean_start=False`` (MQTT 5 with a
Session Expiry Interval, 3.1.1 with a persistent session); the clock moves,
so keep-alive timeouts, PINGREQs and connect timeouts happen too.

Invariants, whatever the interleaving:

- a QoS 2 message is never delivered twice to a subscriber [MQTT-4.3.3];
- once every link is up and quiet (teardown), every QoS 1 message whose
  publish was not reported as discarded or refused has reached every
  persistent subscriber at least once [MQTT-4.3.2], every QoS 2 message
  exactly once, and the retained message of each topic is the last one its
  publisher sent [MQTT-3.3.1-5], or an earlier QoS 1 one still unacknowledged
  when that was sent: resent after a reconnect, it arrives again, later
  (QoS 1 promises no order against newer messages; QoS 2 is never re-applied);
- subscriptions survive every reconnect (half-open connections taken over
  by the client's next CONNECT included); queues and in-flight windows stay
  within their limits; the broker holds exactly one connection per open link,
  plus the half-open ones it has not yet noticed.

:class:`ExpiringSessions` runs the same faults with short MQTT 5 Session
Expiry Intervals and a rule that keeps a client away until its session ends,
so sessions are lost and recreated mid-stream (what is then owed is in its
docstring).
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from helpers import V5, V311
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from mqttproto import LocalProtocolError, QoS, Subscription
from mqttproto.broker import Broker
from mqttproto.client import ClientConnection
from mqttproto.config import BrokerConfig, ClientConfig
from mqttproto.events import (
    ConnectionAccepted,
    Event,
    MessageReceived,
    PublishAcknowledged,
    PublishDiscarded,
    SubscribeAcknowledged,
)

CONFIG = BrokerConfig(max_queued_messages=500, max_inflight_messages=3)
KEEP_ALIVE = 10
#: (name, version, role, client config)
CLIENTS: list[tuple[str, Any, str, ClientConfig | None]] = [
    ("sub5", V5, "sub", ClientConfig(receive_maximum=2)),
    ("sub3", V311, "sub", None),
    ("pub5", V5, "pub", None),
    ("pub3", V311, "pub", None),
]
NAMES = [name for name, *_ in CLIENTS]
PUBLISHERS = [name for name, _, role, _ in CLIENTS if role == "pub"]
SUBSCRIBERS = [name for name, _, role, _ in CLIENTS if role == "sub"]
FILTER = "data/#"


def _event(text: str) -> None:
    """Statistics for hypothesis; nothing when a test drives the machine by hand."""
    if currently_in_test_context():
        event(text)


class Link:
    """One TCP connection in flight: bytes each way not yet delivered."""

    def __init__(self, conn_id: int) -> None:
        self.conn_id = conn_id
        self.up = bytearray()  # client -> broker
        self.down = bytearray()  # broker -> client


class Node:
    def __init__(
        self, name: str, version: Any, config: ClientConfig | None, expiry: int = 3600
    ) -> None:
        self.name = name
        self.version = version
        self.expiry = expiry
        #: The session is new and the subscription not yet acknowledged.
        self.must_subscribe = False
        self.conn = ClientConnection(version, config=config)
        self.link: Link | None = None
        self.events: list[Event] = []

    def session_args(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "client_id": self.name,
            "clean_start": False,
            "keep_alive": KEEP_ALIVE,
        }
        if self.version == V5:
            args["session_expiry_interval"] = self.expiry
        return args


class FaultyLinks(RuleBasedStateMachine):
    #: Session Expiry Interval of the MQTT 5 clients, by name (default: an hour,
    #: longer than any run, so sessions only end in :class:`ExpiringSessions`).
    EXPIRY: ClassVar[dict[str, int]] = {}

    def __init__(self) -> None:
        super().__init__()
        self.now = 1000.0
        self.broker = Broker(CONFIG)
        self.nodes = {
            name: Node(name, v, c, self.EXPIRY.get(name, 3600)) for name, v, _, c in CLIENTS
        }
        self.counter = 0
        #: payload -> (QoS, publisher, publish packet id)
        self.sent: dict[bytes, tuple[int, str, int | None]] = {}
        #: live deliveries (retain=0) per subscriber; a retained message sent
        #: because of a new subscription is a copy from the store, not a resend
        self.received: dict[str, Counter[bytes]] = {name: Counter() for name in SUBSCRIBERS}
        #: the QoS 1/2 payloads each subscriber must get: published while its
        #: subscription existed, and its session has not ended since
        self.owed: dict[str, set[bytes]] = {name: set() for name in SUBSCRIBERS}
        self.sessions_ended = 0
        self.present: set[str] = set()
        #: connections the broker still has whose client has gone (half-open)
        self.zombies: set[int] = set()
        self.refused: set[bytes] = set()
        #: publisher -> payload of its last retained message on its own topic
        self.retained: dict[str, bytes | None] = {}
        #: publisher -> what may be retained in the end (see the docstring)
        self.may_be_retained: dict[str, set[bytes]] = {}
        #: QoS 1/2 payloads whose publisher got a successful acknowledgement
        self.acknowledged: set[bytes] = set()
        for node in self.nodes.values():
            # No session exists yet: clean_start=False creates one, and in
            # 3.1.1 only such a session outlives its connection [MQTT-3.1.2-4].
            self._open(node)
        # Each subscriber subscribes when it learns it has a new session.
        self.settle()
        for name in SUBSCRIBERS:
            assert [s.topic_filter for s in self.broker.subscriptions(name)] == [FILTER]

    # -- plumbing ------------------------------------------------------------------

    def _open(self, node: Node) -> None:
        assert node.link is None
        node.link = Link(self.broker.open_connection(self.now, peer=node.name))
        node.conn.connect(**node.session_args())

    def _note_ended_sessions(self) -> None:
        """A subscriber whose session ended is owed nothing published before.

        Sessions end only in ``handle_timer`` and are created only by a CONNECT
        reaching the broker; this runs after the one and before the other."""
        present = {info.client_id for info in self.broker.sessions()}
        self.sessions_ended += len(self.present - present)
        self.present = present
        for name in SUBSCRIBERS:
            if name not in present:
                self.owed[name].clear()

    def _deliver_up(self, node: Node, count: int) -> None:
        link = node.link
        assert link is not None
        self._note_ended_sessions()
        data = bytes(link.up[:count])
        del link.up[:count]
        if data:
            self.broker.receive_data(link.conn_id, data, self.now)

    def _deliver_down(self, node: Node, count: int) -> None:
        link = node.link
        assert link is not None
        data = bytes(link.down[:count])
        del link.down[:count]
        if data:
            # The broker never sends anything a client must refuse.
            node.conn.receive_data(data, self.now)

    def _cut(self, node: Node) -> None:
        """Both sides learn the connection is gone."""
        link = node.link
        assert link is not None
        node.link = None
        self.broker.connection_lost(link.conn_id, self.now)
        if not node.conn.closed:
            node.conn.receive_eof(self.now)

    def sync(self) -> None:
        """What happens without the network: output into the links, closes, events."""
        self._note_ended_sessions()
        by_conn = {n.link.conn_id: n for n in self.nodes.values() if n.link is not None}
        for _ in range(20):
            for conn_id, data in self.broker.flush(self.now):
                node = by_conn.get(conn_id)
                if node is not None and node.link is not None:
                    node.link.down += data
            closing = self.broker.connections_to_close()
            for conn_id in closing:
                node = by_conn.get(conn_id)
                if node is None or node.link is None or node.link.conn_id != conn_id:
                    self.broker.connection_lost(conn_id, self.now)
                    self.zombies.discard(conn_id)
                    continue
                # The broker closes after its last bytes: they arrive, then EOF.
                self._deliver_down(node, len(node.link.down))
                self._cut(node)
            for node in self.nodes.values():
                if node.link is not None and node.conn.closed:
                    # The client hung up: what it wrote last goes out first.
                    node.link.up += node.conn.data_to_send(self.now)
                    self._deliver_up(node, len(node.link.up))
                    self._cut(node)
                self._collect(node)
            if not closing:
                return
        raise AssertionError("sync did not settle")

    def _collect(self, node: Node) -> None:
        for happened in node.conn.events():
            node.events.append(happened)
            if isinstance(happened, MessageReceived) and node.name in self.received:
                if not happened.retain:
                    self.received[node.name][happened.payload] += 1
                assert happened.packet.qos == self.sent[happened.payload][0] or happened.retain
            elif isinstance(happened, ConnectionAccepted) and node.name in self.received:
                # A new session has no subscriptions [MQTT-3.2.2-5]: make them
                # again, until a SUBACK says they are made (the connection may
                # break first; the next CONNACK then has session_present=1).
                node.must_subscribe |= not happened.session_present
                if node.must_subscribe and not node.conn.closed:
                    node.conn.subscribe([Subscription(FILTER, QoS.EXACTLY_ONCE)])
            elif isinstance(happened, SubscribeAcknowledged):
                node.must_subscribe = False
            elif isinstance(happened, PublishAcknowledged) and happened.reason_code < 0x80:
                payload = self._newest(node.name, happened.packet_id)
                if payload is not None:
                    self.acknowledged.add(payload)
            elif isinstance(happened, PublishDiscarded) or (
                isinstance(happened, PublishAcknowledged) and happened.reason_code >= 0x80
            ):
                self._refuse(node.name, happened.packet_id)

    def _newest(self, publisher: str, packet_id: int) -> bytes | None:
        """The message with that packet id: the newest, as ids are reused once free."""
        for payload, (_, name, pid) in reversed(self.sent.items()):
            if name == publisher and pid == packet_id:
                return payload
        return None

    def _refuse(self, publisher: str, packet_id: int) -> None:
        payload = self._newest(publisher, packet_id)
        if payload is not None:
            self.refused.add(payload)

    def pump(self) -> bool:
        """Deliver everything in flight on every open link; whether anything moved."""
        moved = False
        for node in self.nodes.values():
            if node.link is None:
                continue
            node.link.up += node.conn.data_to_send(self.now)
            if node.link.up:
                moved = True
                self._deliver_up(node, len(node.link.up))
        self.sync()
        for node in self.nodes.values():
            if node.link is not None and node.link.down:
                moved = True
                self._deliver_down(node, len(node.link.down))
        self.sync()
        return moved

    def settle(self) -> None:
        for _ in range(200):
            for node in self.nodes.values():
                if node.link is None:
                    self._open(node)
            if not self.pump() and all(n.link is not None for n in self.nodes.values()):
                return
        raise AssertionError("the links did not settle")

    # -- rules -------------------------------------------------------------------------

    @rule(
        publisher=st.sampled_from(PUBLISHERS),
        qos=st.sampled_from([0, 1, 2]),
        retain=st.booleans(),
        topic=st.sampled_from(["data/a", "data/b/c"]),
    )
    def publish(self, publisher: str, qos: int, retain: bool, topic: str) -> None:
        node = self.nodes[publisher]
        self.counter += 1
        payload = f"{publisher}-{self.counter}".encode()
        if retain:
            # Retained messages at QoS 1/2 only, on the publisher's own topic,
            # so the model knows what must be retained in the end.
            topic = f"data/retained/{publisher}"
            qos = max(qos, 1)
        try:
            packet_id = node.conn.publish(topic, payload, qos=qos, retain=retain)
        except LocalProtocolError:
            return  # QoS 0 while the connection is down: refused locally, never sent
        self.sent[payload] = (qos, publisher, packet_id)
        if qos:
            for name in SUBSCRIBERS:
                if self.broker.subscriptions(name):
                    self.owed[name].add(payload)
        if retain:
            self.retained[publisher] = payload
            self.may_be_retained[publisher] = {payload} | {
                earlier
                for earlier, (q, name, _) in self.sent.items()
                if name == publisher
                and q == 1
                and earlier in self.may_be_retained.get(publisher, set())
                and earlier not in self.acknowledged
            }
        self.sync()

    @rule(
        publisher=st.sampled_from(PUBLISHERS),
        count=st.integers(1, 6),
        qos=st.sampled_from([1, 2]),
        victim=st.sampled_from(NAMES),
        rounds=st.integers(0, 3),
        up=st.floats(0, 1),
        down=st.floats(0, 1),
    )
    def burst_then_break(
        self,
        publisher: str,
        count: int,
        qos: int,
        victim: str,
        rounds: int,
        up: float,
        down: float,
    ) -> None:
        """Messages in flight everywhere when a link fails mid-stream."""
        for _ in range(count):
            self.publish(publisher, qos, False, "data/a")
        for _ in range(rounds):
            self.pump()
        self.link_breaks(victim, up, down)

    @rule(name=st.sampled_from(NAMES))
    def client_writes(self, name: str) -> None:
        node = self.nodes[name]
        if node.link is not None:
            node.link.up += node.conn.data_to_send(self.now)

    @rule(name=st.sampled_from(NAMES), count=st.integers(1, 64), everything=st.booleans())
    def bytes_reach_broker(self, name: str, count: int, everything: bool) -> None:
        node = self.nodes[name]
        if node.link is not None:
            self._deliver_up(node, len(node.link.up) if everything else count)
            self.sync()

    @rule(name=st.sampled_from(NAMES), count=st.integers(1, 64), everything=st.booleans())
    def bytes_reach_client(self, name: str, count: int, everything: bool) -> None:
        node = self.nodes[name]
        if node.link is not None:
            self._deliver_down(node, len(node.link.down) if everything else count)
            self.sync()

    @rule(
        name=st.sampled_from(NAMES),
        up=st.floats(0, 1),
        down=st.floats(0, 1),
    )
    def link_breaks(self, name: str, up: float, down: float) -> None:
        """The network fails: a prefix of the bytes in flight each way
        arrives (possibly part of a packet), then nothing more."""
        node = self.nodes[name]
        link = node.link
        if link is None:
            return
        link.up += node.conn.data_to_send(self.now)
        if link.up or link.down:
            _event("a link broke with bytes in flight")
        self._deliver_up(node, int(len(link.up) * up))
        self.sync()
        if node.link is link:
            self._deliver_down(node, int(len(link.down) * down))
        if node.link is link:
            self._cut(node)
        self.sync()

    @rule(name=st.sampled_from(NAMES), up=st.floats(0, 1))
    def half_open_then_reconnect(self, name: str, up: float) -> None:
        """Only the client learns the link is gone (a NAT forgot it): the
        broker keeps the old connection until the client's new CONNECT takes
        the session over from it [MQTT-3.1.4-3], or its keep-alive runs out."""
        node = self.nodes[name]
        link = node.link
        if link is None:
            return
        link.up += node.conn.data_to_send(self.now)
        self._deliver_up(node, int(len(link.up) * up))
        self.sync()
        if node.link is not link:
            return
        node.link = None
        self.zombies.add(link.conn_id)
        if not node.conn.closed:
            node.conn.receive_eof(self.now)
        _event("a half-open connection was taken over")
        self._open(node)
        self.sync()

    @rule(name=st.sampled_from(NAMES))
    def client_reconnects(self, name: str) -> None:
        node = self.nodes[name]
        if node.link is None:
            self._open(node)
            self.sync()

    @rule(seconds=st.integers(0, 40))
    def time_passes(self, seconds: int) -> None:
        """Timers fire in order: PINGREQs queue, silent connections time out."""
        end = self.now + seconds
        for _ in range(1000):
            deadlines = [self.broker.get_timer()]
            deadlines += [n.conn.get_timer() for n in self.nodes.values() if n.link is not None]
            due = [d for d in deadlines if d is not None and d <= end]
            if not due:
                break
            self.now = max(self.now, min(due))
            self.broker.handle_timer(self.now)
            for node in self.nodes.values():
                if node.link is not None:
                    node.conn.handle_timer(self.now)
            self.sync()
        self.now = end
        self.broker.handle_timer(self.now)
        self.sync()

    @rule()
    def network_catches_up(self) -> None:
        for _ in range(50):
            if not self.pump():
                return

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def qos2_never_duplicated(self) -> None:
        for counts in self.received.values():
            for payload, count in counts.items():
                if self.sent[payload][0] == 2:
                    assert count == 1, payload

    @invariant()
    def subscriptions_survive(self) -> None:
        for name in SUBSCRIBERS:
            filters = [s.topic_filter for s in self.broker.subscriptions(name)]
            # Only a session that ended lacks them, until the client subscribes again.
            assert filters == [FILTER] or (name in self.EXPIRY and not filters)

    @invariant()
    def memory_is_bounded(self) -> None:
        broker = self.broker
        open_links = {n.link.conn_id for n in self.nodes.values() if n.link is not None}
        assert set(broker._conns) == open_links | self.zombies
        assert len(broker._sessions) <= len(self.nodes)
        assert len(broker._sessions) == len(self.nodes) or self.EXPIRY
        for session in broker._sessions.values():
            assert len(session.pending) <= CONFIG.max_queued_messages
            assert len(session.flows.outbound.inflight) <= CONFIG.max_inflight_messages
            assert len(session.flows.awaiting_release) <= CONFIG.receive_maximum
        for conn in broker._conns.values():
            assert conn.unsent <= CONFIG.max_unsent_bytes
        assert len(broker._timers) <= 64 * len(self.nodes)

    @invariant()
    def held_bytes_are_what_sessions_hold(self) -> None:
        # memory_limit's count: every message a session holds (queued or in
        # flight) once, each with as many holds as places that hold it.
        holds: dict[int, int] = {}
        messages = {}
        for session in self.broker._sessions.values():
            assert sorted(session.inflight_messages) == sorted(session.flows.outbound.inflight)
            held = [m for m, *_ in session.pending] + list(session.inflight_messages.values())
            assert session.queued_bytes == sum(m.size for m, *_ in session.pending)
            for message in held:
                holds[id(message)] = holds.get(id(message), 0) + 1
                messages[id(message)] = message
        for key, message in messages.items():
            assert message.holds == holds[key]
        assert self.broker._held_bytes == sum(m.size for m in messages.values())

    def teardown(self) -> None:
        self.settle()
        delivered = sum(sum(counts.values()) for counts in self.received.values())
        _event(
            f"messages delivered: {'none' if not delivered else '1-9' if delivered < 10 else '10+'}"
        )
        if self.EXPIRY:
            ended = self.sessions_ended
            _event(f"sessions ended: {'none' if not ended else '1' if ended == 1 else '2+'}")
        for name in SUBSCRIBERS:
            got = self.received[name]
            if name not in self.EXPIRY:
                assert self.owed[name] == {p for p, (q, _, _) in self.sent.items() if q}
            for payload in self.owed[name]:
                qos = self.sent[payload][0]
                if payload in self.refused:
                    continue
                if qos == 1:
                    assert got[payload] >= 1, (name, payload)  # at least once
                else:
                    assert got[payload] == 1, (name, payload)  # exactly once
        for publisher in PUBLISHERS:
            kept = self.broker.retained(f"data/retained/{publisher}")
            last = self.retained.get(publisher)
            if last is None or last in self.refused:
                continue
            assert len(kept) == 1 and kept[0].payload in self.may_be_retained[publisher]
            if kept[0].payload != last:
                _event("an older QoS 1 retained message arrived again, after the last")
        for node in self.nodes.values():
            assert node.conn.inflight == 0 and node.conn.queued == 0


FaultyLinks.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestFaultyLinks = FaultyLinks.TestCase


#: Short enough that time passing within a run ends them.
SHORT_EXPIRY = 20


class ExpiringSessions(FaultyLinks):
    """The same faults, and the MQTT 5 clients' sessions end while they are away.

    When a session expires [MQTT-3.1.2-23] the broker forgets its
    subscriptions and messages; the client learns it from ``session_present=0``
    on its next CONNACK, reports each of its own unfinished publishes as
    discarded, and subscribes again. What was published for the old session
    need not arrive; everything published while a subscription existed, for a
    session that then lived to the end, must: at least once at QoS 1, exactly
    once at QoS 2. A QoS 2 message is never delivered twice, even when the
    session that was receiving it ends half-way.
    """

    EXPIRY: ClassVar[dict[str, int]] = {
        name: SHORT_EXPIRY for name, version, _, _ in CLIENTS if version == V5
    }

    @rule(
        name=st.sampled_from(sorted(EXPIRY)),
        up=st.floats(0, 1),
        down=st.floats(0, 1),
        extra=st.integers(-2, 2),
    )
    def session_expires(self, name: str, up: float, down: float, extra: int) -> None:
        """The link breaks and the client stays away about as long as its
        session lives, give or take a little; the others keep talking."""
        self.link_breaks(name, up, down)
        away = SHORT_EXPIRY + extra
        while away > 0:
            step = min(away, 5)
            self.time_passes(step)
            away -= step
            self.network_catches_up()
        if self.nodes[name].link is None:
            _event("a session outlived its interval" if extra >= 0 else "came back in time")


ExpiringSessions.TestCase.settings = settings(
    max_examples=100, stateful_step_count=40, deadline=None
)
TestExpiringSessions = ExpiringSessions.TestCase


def test_a_resent_qos1_retained_message_lands_after_a_newer_qos2_one():
    """Found by this machine: a retained QoS 1 message whose PUBACK was lost
    is resent on reconnect (DUP) and, being QoS 1, is a new message to the
    broker [MQTT-4.3.2-5], applied after the newer retained QoS 2 message
    whose PUBLISH had already arrived (that one's DUP is not applied twice).
    The older message stays retained: QoS 1 gives no order against newer
    messages across a resend."""
    state = FaultyLinks()
    state.publish(publisher="pub5", qos=1, retain=True, topic="data/a")  # pub5-1
    state.publish(publisher="pub5", qos=2, retain=True, topic="data/a")  # pub5-2
    # Both PUBLISH reach the broker; nothing comes back before the link breaks.
    state.link_breaks(name="pub5", up=1.0, down=0.0)
    state.teardown()
    kept = state.broker.retained("data/retained/pub5")
    assert [m.payload for m in kept] == [b"pub5-1"]
    assert state.received["sub5"] == {b"pub5-1": 2, b"pub5-2": 1}
