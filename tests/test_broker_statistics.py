"""The broker's counters as the operator reads them (``Broker.statistics``,
which ``/metrics`` and ``$SYS`` format): each reason a message is dropped,
bytes, messages by QoS; ``Broker.receivers`` with wildcards and shared
groups; ``Broker.kick``. Sans-IO, on the test harness's fake clock.
"""

from __future__ import annotations

from typing import Any

from helpers import V5, V311, BrokerHarness
from test_broker_memory_bounds import AWAY, away_subscriber

from mqttproto import QoS, ReasonCode, Subscription
from mqttproto.auth import AuthResult, DeferredAuthResult
from mqttproto.broker._admin import Receiver, SharedReceivers
from mqttproto.config import BrokerConfig
from mqttproto.events import ConnectionRefused, Disconnected


def dropped(h: BrokerHarness) -> dict[str, int]:
    return {k: v for k, v in h.broker.statistics(h.now).dropped.items() if v}


def test_no_subscribers_counts_each_message_once() -> None:
    h = BrokerHarness()
    pub = h.connected("pub", V5)
    pub.conn.publish("nobody/0", b"x")  # the QoS 0 fan-out path
    pub.conn.publish("nobody/1", b"x", qos=1)
    h.pump()
    assert dropped(h) == {"no_subscribers": 2}


def test_queue_full_counts_what_the_bounds_refuse() -> None:
    h = BrokerHarness(BrokerConfig(max_queued_messages=1))
    away_subscriber(h, "sub")
    for _ in range(3):
        h.broker.publish("t", b"m", qos=1, now=h.now)
    assert dropped(h) == {"queue_full": 2}
    assert h.broker.statistics(h.now).messages_dropped == 2


def test_expired_counts_queued_messages_that_ran_out() -> None:
    h = BrokerHarness()
    away_subscriber(h, "sub")
    h.broker.publish("t", b"short", qos=1, now=h.now, message_expiry_interval=1)
    h.broker.publish("t", b"long", qos=1, now=h.now)
    h.advance(5)
    sub = h.connected("sub", V5, **AWAY)
    h.pump()
    assert [m.payload for m in sub.take_messages()] == [b"long"]
    assert dropped(h) == {"expired": 1}


def test_too_large_counts_deliveries_over_the_maximum_packet_size() -> None:
    h = BrokerHarness()
    small = h.connected("small", V5, maximum_packet_size=64)
    small.conn.subscribe([Subscription("t/#", QoS.AT_LEAST_ONCE)])
    h.pump()
    pub = h.connected("pub", V5)
    pub.conn.publish("t/0", b"x" * 100)
    pub.conn.publish("t/1", b"x" * 100, qos=1)
    pub.conn.publish("t/2", b"fits", qos=1)
    h.pump()
    assert [m.payload for m in small.take_messages()] == [b"fits"]
    assert dropped(h) == {"too_large": 2}



def test_retained_messages_on_subscribe_are_counted_by_qos_and_reason() -> None:
    """The retained messages a new subscription is fed count as sent, by
    QoS, and one too large for the subscriber as too_large."""
    h = BrokerHarness()
    pub = h.connected("pub", V5)
    pub.conn.publish("r/0", b"small", qos=1, retain=True)
    pub.conn.publish("r/1", b"x" * 100, qos=1, retain=True)
    pub.conn.publish("r/2", b"zero", qos=0, retain=True)
    h.pump()
    before = h.broker.statistics(h.now)
    small = h.connected("small", V5, maximum_packet_size=64)
    small.conn.subscribe([Subscription("r/#", QoS.AT_LEAST_ONCE)])
    h.pump()
    assert sorted(m.payload for m in small.take_messages()) == [b"small", b"zero"]
    after = h.broker.statistics(h.now)
    pairs = zip(after.messages_sent_by_qos, before.messages_sent_by_qos, strict=True)
    sent = [a - b for a, b in pairs]
    assert sent == [1, 1, 0]
    assert dropped(h) == {"too_large": 1, "no_subscribers": 3}

class NoSecrets:
    def may_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        return not topic.startswith("secret/")

    def may_subscribe(self, client_id: str, username: str | None, topic_filter: str) -> bool:
        return True

    def may_receive(self, client_id: str, username: str | None, topic: str) -> bool:
        return True


def test_not_authorized_counts_refused_publishes() -> None:
    h = BrokerHarness(authorizer=NoSecrets())
    pub = h.connected("pub", V5)
    pub.conn.publish("secret/plans", b"x", qos=1)
    pub.conn.publish("open/plans", b"x", qos=1)
    h.pump()
    assert dropped(h) == {"not_authorized": 1, "no_subscribers": 1}


def test_bytes_and_messages_by_qos_match_the_traffic() -> None:
    h = BrokerHarness()
    sub = h.connected("sub", V5)
    sub.conn.subscribe([Subscription("t", QoS.EXACTLY_ONCE)])
    h.pump()
    pub = h.connected("pub", V311)
    for qos in (0, 1, 1, 2):
        pub.conn.publish("t", b"abc", qos=qos)
        h.pump()
    stats = h.broker.statistics(h.now)
    assert stats.messages_received_by_qos == (1, 2, 1)
    assert stats.messages_sent_by_qos == (1, 2, 1)
    assert stats.connections_total == 2 and stats.clients_maximum == 2
    assert stats.sockets_total == 2
    assert stats.bytes_received > 0 and stats.bytes_sent > 0


def test_receivers_name_each_matching_filter_and_shared_groups_as_groups() -> None:
    h = BrokerHarness()
    a = h.connected("a", V5)
    a.conn.subscribe(["s/+/t", "s/#", "other"])
    b = h.connected("b", V5)
    b.conn.subscribe(["$share/g/s/#"])
    c = h.connected("c", V5)
    c.conn.subscribe([Subscription("$share/g/s/#", QoS.AT_LEAST_ONCE)])
    h.pump()
    found = h.broker.receivers("s/1/t")
    plain = sorted((r.client_id, r.topic_filter) for r in found if isinstance(r, Receiver))
    assert plain == [("a", "s/#"), ("a", "s/+/t")]
    (group,) = [r for r in found if isinstance(r, SharedReceivers)]
    assert group.group == "g" and group.topic_filter == "$share/g/s/#"
    assert sorted(group.members) == [("b", 0), ("c", 1)]
    assert group.next in ("b", "c")
    assert h.broker.receivers("x") == []


def disconnects(events: list[Any]) -> list[ReasonCode]:
    return [e.reason_code for e in events if isinstance(e, Disconnected)]


def test_kick_sends_0x98_and_discards_the_persistent_session() -> None:
    h = BrokerHarness()
    v5 = h.connected("v5", V5, **AWAY)
    v3 = h.connected("v3", V311, clean_start=False)
    assert h.broker.kick("v5", h.now) is True
    assert h.broker.kick("v3", h.now) is True
    h.pump()
    assert disconnects(v5.take()) == [ReasonCode.ADMINISTRATIVE_ACTION]
    assert v3.conn.closed
    assert h.broker.sessions() == []
    # An offline session is discarded too; an unknown one is no one.
    away_subscriber(h, "away")
    assert [s.client_id for s in h.broker.sessions()] == ["away"]
    assert h.broker.kick("away", h.now) is True
    assert h.broker.sessions() == []
    assert h.broker.kick("nobody", h.now) is False


def test_disconnect_users_ends_their_connections_and_keeps_their_sessions() -> None:
    h = BrokerHarness()
    alice = h.connected("alice-5", V5, username="alice", **AWAY)
    bob = h.connected("bob-3", V311, username="bob", clean_start=False)
    # Logged in by a TLS client certificate, not by a password: it stays.
    certified = h.connected("alice-cert", V5, identity="alice", username="alice")
    other = h.connected("dave", V5, username="dave")
    dropped = h.broker.disconnect_users({"alice", "bob", "nobody"}, h.now)
    h.pump()
    assert sorted(dropped) == ["alice-5", "bob-3"]
    assert disconnects(alice.take()) == [ReasonCode.NOT_AUTHORIZED]
    assert bob.conn.closed
    assert not certified.conn.closed and not other.conn.closed
    sessions = {s.client_id: s.connected for s in h.broker.sessions()}
    assert sessions == {"alice-5": False, "bob-3": False, "alice-cert": True, "dave": True}
    assert h.broker.disconnect_users(set(), h.now) == []


class Later:
    """Accepts every CONNECT, after a job the driver runs."""

    def authenticate(self, info: Any) -> DeferredAuthResult:
        return DeferredAuthResult(AuthResult.accept)

    def continue_authentication(self, info: Any, data: bytes | None) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)


def test_disconnect_users_refuses_a_connect_still_being_checked() -> None:
    h = BrokerHarness(authenticator=Later())
    h.broker.inline_authentication = False
    waiting = h.client("w", V5)
    waiting.connect(username="alice")
    [job] = h.broker.authentication_jobs()
    assert h.broker.disconnect_users({"alice"}, h.now) == ["w"]
    # The check, checked against the old file, comes too late to let it in.
    h.broker.finish_authentication(job, job.run(), h.now)
    h.pump()
    [answer] = [e for e in waiting.take() if isinstance(e, ConnectionRefused)]
    assert answer.reason_code == ReasonCode.NOT_AUTHORIZED
    assert waiting.conn.closed
    assert h.broker.sessions() == []
