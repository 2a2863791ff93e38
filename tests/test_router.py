"""The router's fast paths against plain matching.

The router answers a topic from its cache, from the dict of filters without
wildcards, or from a walk of the trie of the others, and gives a topic that
one plain subscription matches as that subscription alone. Whatever path
answered, what a topic reaches must be what filtering every live
subscription with :func:`~mqttproto.topics.topic_matches` gives, after any
sequence of subscriptions, replacements, unsubscriptions and session ends,
with ``$`` topics [MQTT-4.7.2-1] and shared subscriptions (MQTT 5.0 section
4.8.2) among them.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from helpers import V5, V311, BrokerHarness, Client
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import dense_topic_filters, dense_topic_names

from mqttproto import ProtocolVersion, QoS, Subscription, topic_matches
from mqttproto.broker._router import Route, Router, Sub
from mqttproto.broker._sessions import Session
from mqttproto.config import BrokerConfig, ClientConfig

CLIENTS = ("c0", "c1", "c2")
GROUPS = (None, None, "g", "h")

#: (client, ShareName or None, filter) -> the subscription.
Model = dict[tuple[str, str | None, str], Sub[Session]]
Aggregate = tuple[int, bool, list[int], bool, int, bool, list[int]]

subscribe_ops = st.tuples(
    st.just("sub"),
    st.sampled_from(CLIENTS),
    st.sampled_from(GROUPS),
    dense_topic_filters(),
    st.integers(0, 2),
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, 1, 2]),
)
router_ops = st.lists(
    st.one_of(
        subscribe_ops,
        st.tuples(st.just("unsub"), st.integers(0, 1000)),
        st.tuples(st.just("end"), st.sampled_from(CLIENTS)),
        st.tuples(st.just("look"), dense_topic_names()),
        # A topic that a subscription without wildcards names (its cache
        # entries are the ones such a subscription's change drops).
        st.tuples(st.just("look"), st.integers(0, 1000)),
    ),
    max_size=50,
)


def named(model: dict[tuple[str, str | None, str], Any], topic: str | int) -> str:
    """``topic``, or the ``topic``-th filter without wildcards of the model (or ``a``)."""
    if isinstance(topic, str):
        return topic
    filters = sorted({f for _, _, f in model if "+" not in f and "#" not in f})
    return filters[topic % len(filters)] if filters else "a"


def aggregate(subs: list[Sub[Session]]) -> Aggregate:
    """What a client's matching plain subscriptions add up to (MQTT 5.0 section 4.8.1)."""
    local = [s for s in subs if not s.no_local]
    return (
        max(s.qos for s in subs),
        any(s.retain_as_published for s in subs),
        sorted(s.sub_id for s in subs if s.sub_id is not None),
        bool(local),
        max((s.qos for s in local), default=0),
        any(s.retain_as_published for s in local),
        sorted(s.sub_id for s in local if s.sub_id is not None),
    )


def expected(model: Model, topic: str) -> tuple[dict[str, Aggregate], dict[object, list[str]]]:
    plain: dict[str, list[Sub[Session]]] = {}
    groups: dict[object, list[str]] = {}
    for (client, group, topic_filter), sub in model.items():
        if not topic_matches(topic_filter, topic):
            continue
        if group is None:
            plain.setdefault(client, []).append(sub)
        else:
            groups.setdefault((group, topic_filter), []).append(client)
    return (
        {client: aggregate(subs) for client, subs in plain.items()},
        {group: sorted(members) for group, members in groups.items()},
    )


def seen(route: Route[Session]) -> tuple[dict[str, Aggregate], dict[object, list[str]]]:
    targets = {
        t.session.client_id: (
            t.qos,
            t.rap,
            sorted(t.sub_ids),
            t.has_local,
            t.local_qos,
            t.local_rap,
            sorted(t.local_sub_ids),
        )
        for t in route.targets
    }
    assert len(targets) == len(route.targets)  # a client is one target
    # Members in client order: the round-robin's order.
    groups = {group: [m.session.client_id for m in members] for group, members in route.groups}
    assert len(groups) == len(route.groups)
    return targets, groups


def check(router: Router[Session], model: Model, topic: str) -> None:
    want = expected(model, topic)
    found = router.lookup(topic)
    if isinstance(found, Sub):
        # Given alone only when it is all the topic reaches.
        [client] = want[0]
        assert not want[1]
        assert found is model[client, None, found.topic_filter]
    assert seen(router.route(topic)) == want
    # Asked again: from the cache now.
    assert seen(router.route(topic)) == want


@settings(max_examples=300)
@given(router_ops, st.lists(dense_topic_names(), min_size=1, max_size=6))
def test_router_agrees_with_topic_matches(ops: list[tuple], names: list[str]) -> None:
    # A cache smaller than the topics: entries are replaced as they come.
    router: Router[Session] = Router(cache_size=3)
    sessions = {client: Session(client, max_queued=10) for client in CLIENTS}
    model: Model = {}
    for op in ops:
        if op[0] == "sub":
            _, client, group, topic_filter, qos, no_local, rap, sub_id = op
            sub = Sub(
                sessions[client],
                topic_filter,
                qos,
                no_local=no_local and group is None,  # [MQTT-3.8.3-4]
                retain_as_published=rap,
                sub_id=sub_id,
                group=group,
            )
            is_new = (client, group, topic_filter) not in model
            assert router.add(sub) is is_new
            model[client, group, topic_filter] = sub
        elif op[0] == "unsub" and model:
            key = sorted(model, key=repr)[op[1] % len(model)]
            assert router.remove(model.pop(key))
        elif op[0] == "end":
            # A session's end: every subscription of it goes.
            for key in [k for k in model if k[0] == op[1]]:
                assert router.remove(model.pop(key))
        elif op[0] == "look":
            check(router, model, named(model, op[1]))
        assert len(router) == len(model)
        assert len(router._cache) <= 3 and len(router._single) <= 3
    for name in names:
        check(router, model, name)


delivery_ops = st.lists(
    st.one_of(
        subscribe_ops,
        st.tuples(st.just("unsub"), st.integers(0, 1000)),
        st.tuples(
            st.just("pub"),
            st.sampled_from(CLIENTS),
            dense_topic_names() | st.integers(0, 1000),
            st.integers(0, 1),
        ),
    ),
    max_size=25,
)


@settings(max_examples=100)
@given(delivery_ops)
def test_delivery_agrees_with_topic_matches(ops: list[tuple]) -> None:
    """What clients receive: of plain QoS 0 messages (the broker's fan-out:
    the clients give no topic aliases) and of QoS 1 ones (the general path)."""
    h = BrokerHarness()
    clients = {name: plain_client(h, name) for name in CLIENTS}
    model: dict[tuple[str, str | None, str], tuple[bool, int | None]] = {}
    for op in ops:
        if op[0] == "sub":
            _, client, group, topic_filter, qos, no_local, rap, sub_id = op
            full = topic_filter if group is None else f"$share/{group}/{topic_filter}"
            no_local = no_local and group is None
            clients[client].conn.subscribe(
                [Subscription(full, QoS(qos), no_local=no_local, retain_as_published=rap)],
                subscription_identifier=sub_id,
            )
            model[client, group, topic_filter] = (no_local, sub_id)
        elif op[0] == "unsub" and model:
            client, group, topic_filter = key = sorted(model, key=repr)[op[1] % len(model)]
            full = topic_filter if group is None else f"$share/{group}/{topic_filter}"
            clients[client].conn.unsubscribe([full])
            del model[key]
        elif op[0] == "pub":
            _, origin, topic, qos = op
            topic = named(model, topic)
            h.pump()
            for client in clients.values():
                client.take()
            clients[origin].conn.publish(topic, b"x", qos=qos)
            h.pump()
            got = {name: client.take_messages() for name, client in clients.items()}
            groups = {(g, f) for (_, g, f) in model if g is not None and topic_matches(f, topic)}
            for name in CLIENTS:
                plain = [
                    sub_id
                    for (c, g, f), (no_local, sub_id) in model.items()
                    if c == name and g is None and topic_matches(f, topic)
                    if not (no_local and name == origin)  # [MQTT-3.8.3-3]
                ]
                member_of = {(g, f) for (c, g, f) in model if c == name} & groups
                # One copy for the plain subscriptions, at most one per group.
                assert bool(plain) <= len(got[name]) <= bool(plain) + len(member_of)
                if plain and not member_of:
                    [message] = got[name]
                    assert message.topic == topic
                    assert Counter(message.subscription_identifiers) == Counter(
                        i for i in plain if i is not None
                    )  # [MQTT-3.3.4-3]
            any_plain = sum(
                1
                for name in CLIENTS
                if any(
                    c == name and g is None and topic_matches(f, topic) and not (nl and c == origin)
                    for (c, g, f), (nl, _) in model.items()
                )
            )
            # A copy per client with matching plain subscriptions, and one
            # per matching shared group, to one of its members.
            assert sum(len(m) for m in got.values()) == any_plain + len(groups)


def plain_client(
    h: BrokerHarness, name: str, version: ProtocolVersion = V5, **connect: Any
) -> Client:
    """A connected client that gives no topic aliases: its QoS 0 messages
    take the broker's fan-out."""
    client = h.client(name, version, ClientConfig(auto_topic_alias=False))
    client.connect(**connect)
    return client


def test_one_subscription_no_local():
    h = BrokerHarness()
    client = plain_client(h, "c")
    client.conn.subscribe([Subscription("t", no_local=True)])
    h.pump()
    for _ in range(2):  # the route made, then cached
        client.conn.publish("t", b"mine")
        h.pump()
    assert client.take_messages() == []  # [MQTT-3.8.3-3]
    other = plain_client(h, "other")
    other.conn.publish("t", b"theirs")
    h.pump()
    assert [m.payload for m in client.take_messages()] == [b"theirs"]


def test_one_subscription_identifier_and_versions():
    h = BrokerHarness()
    v5 = plain_client(h, "v5")
    v5.conn.subscribe(["v5/t"], subscription_identifier=7)
    old = plain_client(h, "old", V311)
    old.conn.subscribe(["old/t"])
    h.pump()
    pub = plain_client(h, "pub")
    for topic in ("v5/t", "old/t", "v5/t"):
        pub.conn.publish(topic, b"x")
    h.pump()
    assert [m.subscription_identifiers for m in v5.take_messages()] == [(7,), (7,)]
    assert [m.topic for m in old.take_messages()] == ["old/t"]  # [MQTT-3.3.4-3]


def test_one_subscription_of_a_session_away():
    h = BrokerHarness(BrokerConfig(queue_qos0_offline=True))
    away = plain_client(h, "away", clean_start=False, session_expiry_interval=60)
    away.conn.subscribe(["t"])
    h.pump()
    pub = plain_client(h, "pub")
    pub.conn.publish("t", b"1")
    h.pump()
    away.drop()
    pub.conn.publish("t", b"2")  # queued for the session
    h.pump()
    again = h.client("away", V5)
    again.connect(clean_start=False, session_expiry_interval=60)
    h.pump()
    assert [m.payload for m in away.take_messages()] == [b"1"]
    assert [m.payload for m in again.take_messages()] == [b"2"]
