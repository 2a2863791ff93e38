"""Sessions belong to the identity that made them; clean sessions are never resumed.

A client identifier is only a name: a session made by alice must give
nothing (queued or in-flight messages, subscriptions) to bob when bob
connects with the same client identifier, whatever the clean flags say; and
a session that was to end with its network connection (MQTT 5 Session Expiry
0, MQTT 3.1.1 CleanSession 1) is not resumed by a later connection, even one
that takes over the old connection before it is gone [MQTT-3.1.2-4]
[MQTT-3.1.2-6] [MQTT-3.1.2-23]. Every message is checked against the
receiving client's rights as it is delivered, queued and in-flight ones
included. Driven with a fake clock through :class:`helpers.BrokerHarness`.
"""

from __future__ import annotations

import pytest
from helpers import V5, V311, BrokerHarness, Client

from mqttproto import ProtocolVersion, QoS, ReasonCode, Subscription
from mqttproto.auth import AclAuthorizer, AclFile
from mqttproto.config import BrokerConfig, ClientConfig
from mqttproto.events import ConnectionAccepted, ConnectionRefused, Event

ACL = AclAuthorizer(AclFile.parse("user alice\ntopic alice/#\nuser bob\ntopic bob/#\n"))
MANUAL = ClientConfig(auto_acknowledge=False)


def accepted(events: list[Event]) -> ConnectionAccepted:
    [event] = [e for e in events if isinstance(e, ConnectionAccepted)]
    return event


def refused(events: list[Event]) -> ConnectionRefused:
    [event] = [e for e in events if isinstance(e, ConnectionRefused)]
    return event


def persistent(version: ProtocolVersion) -> dict[str, object]:
    """CONNECT arguments for a session that outlives its connection."""
    if version == V5:
        return {"clean_start": False, "session_expiry_interval": 3600}
    return {"clean_start": False}


def alice_with_messages(
    h: BrokerHarness, version: ProtocolVersion, *, in_flight: int = 2, queued: int = 2
) -> Client:
    """alice's persistent session on client id alice-phone: ``in_flight`` QoS 1
    messages delivered and not acknowledged, then ``queued`` more published
    while she is away."""
    alice = h.client("alice", version, config=MANUAL)
    accepted(alice.connect(client_id="alice-phone", username="alice", **persistent(version)))
    alice.conn.subscribe([Subscription("alice/#", QoS.AT_LEAST_ONCE)])
    h.pump()
    for n in range(in_flight):
        h.broker.publish(f"alice/bank/otp{n}", f"otp {n}", qos=1, now=h.now)
    h.pump()
    assert len(alice.take_messages()) == in_flight
    alice.drop()
    for n in range(queued):
        h.broker.publish(f"alice/bank/later{n}", f"later {n}", qos=1, now=h.now)
    h.pump()
    [info] = h.broker.sessions()
    assert (info.inflight, info.queued) == (in_flight, queued)
    return alice


@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("clean_start", [False, True])
def test_another_user_is_refused_a_session_and_it_stays_intact(
    version: ProtocolVersion, clean_start: bool
) -> None:
    h = BrokerHarness(authorizer=ACL)
    alice = alice_with_messages(h, version)
    bob = h.client("bob", version)
    kwargs = persistent(version) if not clean_start else {"clean_start": True}
    event = refused(bob.connect(client_id="alice-phone", username="bob", **kwargs))
    # 0x87 Not authorized (3.1.1: return code 5, read back as 0x87).
    assert event.reason_code == ReasonCode.NOT_AUTHORIZED
    assert bob.take_messages() == []
    # alice's session is untouched: her in-flight messages come again (DUP)
    # and her queued ones follow (to a new client object, which has not seen
    # them: alice's own would not hand the unacknowledged ones out twice).
    assert alice.closed
    again = h.client("alice-again", version)
    assert accepted(
        again.connect(client_id="alice-phone", username="alice", **persistent(version))
    ).session_present
    h.pump()
    got = again.take_messages()
    assert [m.payload for m in got] == [b"otp 0", b"otp 1", b"later 0", b"later 1"]
    assert [m.duplicate for m in got] == [True, True, False, False]


def test_a_live_connection_is_not_taken_over_by_another_user() -> None:
    h = BrokerHarness()
    alice = h.connected("alice", V5, client_id="shared-id", username="alice")
    bob = h.client("bob", V5)
    assert refused(bob.connect(client_id="shared-id", username="bob")).reason_code == (
        ReasonCode.NOT_AUTHORIZED
    )
    assert not alice.closed
    [info] = h.broker.sessions()
    assert (info.connected, info.username) == (True, "alice")


@pytest.mark.parametrize(
    ("owner", "intruder"), [("alice", None), (None, "bob"), ("alice", "Alice")]
)
def test_anonymous_and_named_sessions_do_not_mix(owner: str | None, intruder: str | None) -> None:
    h = BrokerHarness()
    first = h.client("first", V5)
    accepted(first.connect(client_id="dev", username=owner, **persistent(V5)))
    first.drop()
    second = h.client("second", V5)
    event = refused(second.connect(client_id="dev", username=intruder, **persistent(V5)))
    assert event.reason_code == ReasonCode.NOT_AUTHORIZED


@pytest.mark.parametrize("version", [V311, V5])
@pytest.mark.parametrize("clean_start", [False, True])
def test_discard_mode_gives_the_new_identity_a_new_empty_session(
    version: ProtocolVersion, clean_start: bool
) -> None:
    h = BrokerHarness(BrokerConfig(session_identity_mismatch="discard"), authorizer=ACL)
    alice = alice_with_messages(h, version)
    watcher = h.connected("watcher", V5, username="alice")
    watcher.conn.subscribe(["alice/#"])
    h.pump()
    bob = h.client("bob", version)
    kwargs = persistent(version) if not clean_start else {"clean_start": True}
    assert not accepted(
        bob.connect(client_id="alice-phone", username="bob", **kwargs)
    ).session_present
    h.pump()
    assert bob.take_messages() == []
    assert h.broker.subscriptions("alice-phone") == []
    [info] = [s for s in h.broker.sessions() if s.client_id == "alice-phone"]
    assert (info.username, info.inflight, info.queued) == ("bob", 0, 0)
    # bob publishing to alice's topics is still refused by the ACL.
    bob.conn.publish("alice/bank/otp0", b"forged", qos=1)
    h.pump()
    assert watcher.take_messages() == []
    # alice's session is gone: she starts afresh.
    bob.conn.disconnect()
    h.pump()
    event = accepted(
        alice.connect(client_id="alice-phone", username="alice", **persistent(version))
    )
    assert not event.session_present
    h.pump()
    assert alice.take_messages() == []


def test_the_same_user_resumes_and_takes_over_its_own_session() -> None:
    h = BrokerHarness(authorizer=ACL)
    alice = alice_with_messages(h, V311, in_flight=1, queued=1)
    phone2 = h.client("phone2", V311)
    assert accepted(
        phone2.connect(client_id="alice-phone", username="alice", clean_start=False)
    ).session_present
    h.pump()
    assert [m.payload for m in phone2.take_messages()] == [b"otp 0", b"later 0"]
    # A takeover of the live connection by the same user keeps the session.
    third = h.client("third", V311)
    assert accepted(
        third.connect(client_id="alice-phone", username="alice", clean_start=False)
    ).session_present
    assert phone2.closed
    assert not alice.closed or alice.conn_id is None


def test_the_owner_survives_a_restart_from_the_store() -> None:
    from mqttproto.broker import Broker
    from mqttproto.store import MemoryStore

    store = MemoryStore()
    h = BrokerHarness(store=store)
    alice = h.connected("alice", V5, client_id="dev", username="alice", **persistent(V5))
    alice.drop()
    assert store.sessions["dev"].username == "alice"
    h.broker = Broker(store=store)
    bob = h.client("bob", V5)
    assert refused(bob.connect(client_id="dev", username="bob")).reason_code == (
        ReasonCode.NOT_AUTHORIZED
    )
    alice2 = h.client("alice2", V5)
    assert accepted(
        alice2.connect(client_id="dev", username="alice", **persistent(V5))
    ).session_present


# -- clean sessions end with their connection -----------------------------------------

# (version, the first connection's CONNECT, the second one's clean flag, whether
# the second arrives while the first is still connected, session present?)
CASES = [
    # MQTT 3.1.1: CleanSession 1 lasts as long as the connection [MQTT-3.1.2-6].
    (V311, {"clean_start": True}, False, True, False),
    (V311, {"clean_start": True}, False, False, False),
    (V311, {"clean_start": True}, True, True, False),
    (V311, {"clean_start": False}, False, True, True),
    (V311, {"clean_start": False}, False, False, True),
    (V311, {"clean_start": False}, True, True, False),
    (V311, {"clean_start": False}, True, False, False),
    # MQTT 5: Session Expiry 0 ends the session with the connection
    # [MQTT-3.1.2-23], whatever Clean Start was; Clean Start 1 discards.
    (V5, {"clean_start": True}, False, True, False),
    (V5, {"clean_start": True}, False, False, False),
    (V5, {"clean_start": False}, False, True, False),
    (V5, {"clean_start": False}, False, False, False),
    (V5, {"clean_start": True, "session_expiry_interval": 60}, False, True, True),
    (V5, {"clean_start": False, "session_expiry_interval": 60}, False, False, True),
    (V5, {"clean_start": False, "session_expiry_interval": 60}, True, True, False),
    (V5, {"clean_start": False, "session_expiry_interval": 60}, True, False, False),
]


@pytest.mark.parametrize(("version", "first", "second_clean", "takeover", "present"), CASES)
def test_a_session_is_resumed_only_if_it_was_to_outlive_its_connection(
    version: ProtocolVersion,
    first: dict[str, object],
    second_clean: bool,
    takeover: bool,
    present: bool,
) -> None:
    h = BrokerHarness()
    old = h.client("old", version, config=MANUAL)
    accepted(old.connect(client_id="alice", **first))
    old.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    for n in range(3):
        h.broker.publish("t", f"m{n}", qos=1, now=h.now)
    h.pump()
    assert len(old.take_messages()) == 3  # in flight, not acknowledged
    if not takeover:
        old.drop()
    new = h.client("new", version)
    second: dict[str, object] = {"clean_start": second_clean}
    if version == V5:
        second["session_expiry_interval"] = 60
    event = accepted(new.connect(client_id="alice", **second))
    assert event.session_present is present
    h.pump()
    resent = [m.payload for m in new.take_messages()]
    assert resent == ([b"m0", b"m1", b"m2"] if present else [])
    assert h.broker.subscribers("t") == ([("alice", QoS.AT_LEAST_ONCE)] if present else [])


# -- rights are checked as each message is delivered -------------------------------------


def test_queued_and_in_flight_messages_are_checked_against_the_rights_at_delivery() -> None:
    h = BrokerHarness(authorizer=ACL)
    alice = alice_with_messages(h, V311)
    dropped = h.broker.messages_dropped
    # The ACL is reloaded: alice may no longer read alice/bank/#.
    h.broker.authorizer = AclAuthorizer(
        AclFile.parse("user alice\ntopic deny alice/bank/#\ntopic alice/#\n")
    )
    assert alice.closed
    again = h.client("alice-again", V311)
    assert accepted(
        again.connect(client_id="alice-phone", username="alice", clean_start=False)
    ).session_present
    h.pump()
    assert again.take_messages() == []
    [info] = h.broker.sessions()
    assert (info.inflight, info.queued) == (0, 0)
    assert h.broker.messages_dropped == dropped + 4
    # What she may still read arrives.
    h.broker.publish("alice/news", b"hello", qos=1, now=h.now)
    h.pump()
    assert [m.payload for m in again.take_messages()] == [b"hello"]
