"""The QoS 0 fan-out and the plan it keeps with each cached route.

A plain QoS 0 message goes to the connected subscribers of one version
alike; which ones those are is kept with the route until a session connects
or goes, or a subscription changes. Each test sends to one topic again and
again (the route stays cached) while the subscribers change under it, and
checks what each client receives.
"""

from __future__ import annotations

from helpers import V5, V311, BrokerHarness
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproto import Subscription
from mqttproto.config import BrokerConfig

TOPIC = "fan/out"


def payloads(client) -> list[bytes]:
    return [m.payload for m in client.take_messages()]


def publish(h: BrokerHarness, pub, payload: bytes) -> None:
    pub.conn.publish(TOPIC, payload)
    h.pump()


def test_versions_mixed_each_get_their_form():
    h = BrokerHarness()
    subs = [h.connected(f"s{i}", version) for i, version in enumerate([V5, V311, V5, V311])]
    for sub in subs:
        sub.conn.subscribe([TOPIC])
    h.pump()
    pub = h.connected("pub")
    publish(h, pub, b"one")
    publish(h, pub, b"two")
    for sub in subs:
        assert payloads(sub) == [b"one", b"two"]


def test_a_subscriber_that_goes_and_comes_back_is_followed():
    h = BrokerHarness()
    stay = h.connected("stay")
    away = h.connected("away", clean_start=False, session_expiry_interval=60)
    for sub in (stay, away):
        sub.conn.subscribe([TOPIC])
    h.pump()
    pub = h.connected("pub")
    publish(h, pub, b"1")
    away.drop()
    # The route is cached; the session is away: the message waits in its
    # queue (queue_qos0_offline), not in the connection that is gone.
    publish(h, pub, b"2")
    again = h.client("away")
    again.connect(clean_start=False, session_expiry_interval=60)
    publish(h, pub, b"3")
    assert payloads(stay) == [b"1", b"2", b"3"]
    assert payloads(away) == [b"1"]
    assert payloads(again) == [b"2", b"3"]


def test_a_takeover_moves_the_delivery_to_the_new_connection():
    h = BrokerHarness()
    first = h.connected("twin", clean_start=False, session_expiry_interval=60)
    first.conn.subscribe([TOPIC])
    h.pump()
    pub = h.connected("pub")
    publish(h, pub, b"before")
    second = h.client("twin")
    second.connect(clean_start=False, session_expiry_interval=60)
    publish(h, pub, b"after")
    assert payloads(first) == [b"before"]
    assert payloads(second) == [b"after"]


def test_no_local_and_identifiers_mixed_with_plain_subscribers():
    h = BrokerHarness()
    plain = h.connected("plain")
    plain.conn.subscribe([TOPIC])
    ids = h.connected("ids")
    ids.conn.subscribe([TOPIC], subscription_identifier=7)
    # The publisher subscribes itself with No Local: it never gets its own
    # messages [MQTT-3.8.3-3], and gets the others'.
    pub = h.connected("pub")
    pub.conn.subscribe([Subscription(TOPIC, no_local=True)])
    h.pump()
    publish(h, pub, b"own")
    publish(h, plain, b"plain's")
    assert payloads(pub) == [b"plain's"]
    assert payloads(plain) == [b"own", b"plain's"]
    messages = ids.take_messages()
    assert [m.payload for m in messages] == [b"own", b"plain's"]
    assert [m.subscription_identifiers for m in messages] == [(7,), (7,)]


def test_a_new_subscription_on_a_cached_route_is_served():
    h = BrokerHarness()
    first = h.connected("first")
    first.conn.subscribe([TOPIC])
    h.pump()
    pub = h.connected("pub")
    publish(h, pub, b"1")
    late = h.connected("late", V311)
    late.conn.subscribe(["fan/+"])
    h.pump()
    publish(h, pub, b"2")
    late.conn.unsubscribe(["fan/+"])
    h.pump()
    publish(h, pub, b"3")
    assert payloads(first) == [b"1", b"2", b"3"]
    assert payloads(late) == [b"2"]


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["publish", "drop", "connect"]), st.integers(0, 3)),
        min_size=1,
        max_size=25,
    ),
    queue_offline=st.booleans(),
)
def test_each_subscriber_gets_what_its_session_was_due(steps, queue_offline):
    """Whatever the order of connections and drops, a subscriber's session
    receives every message published while it was connected, and, when
    QoS 0 is queued for sessions that are away, every other one too, once
    and in order."""
    h = BrokerHarness(BrokerConfig(queue_qos0_offline=queue_offline))
    versions = [V5, V311, V5, V311]
    names = [f"s{i}" for i in range(4)]
    clients = {}
    expected: dict[str, list[bytes]] = {name: [] for name in names}
    received: dict[str, list[bytes]] = {name: [] for name in names}

    def connect(index: int) -> None:
        client = h.client(names[index], versions[index])
        # A 3.1.1 session without clean session never expires.
        expiry = {"session_expiry_interval": 600} if versions[index] == V5 else {}
        client.connect(clean_start=False, **expiry)
        client.conn.subscribe([TOPIC])
        h.pump()
        clients[index] = client

    for index in range(4):
        connect(index)
    pub = h.connected("pub")
    for count, (action, index) in enumerate(steps):
        if action == "publish":
            payload = b"%d" % count
            publish(h, pub, payload)
            for i, name in enumerate(names):
                if i in clients or queue_offline:
                    expected[name].append(payload)
        elif action == "drop" and index in clients:
            client = clients.pop(index)
            received[names[index]] += payloads(client)
            client.drop()
        elif action == "connect" and index not in clients:
            connect(index)
    for index in range(4):
        if index not in clients:
            connect(index)  # what its session kept comes now
        received[names[index]] += payloads(clients[index])
    assert received == expected
