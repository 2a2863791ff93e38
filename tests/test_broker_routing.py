"""Broker routing: retained, shared, subscription options, limits, authorization, $SYS."""

from __future__ import annotations

import pytest
from helpers import V5, V311, BrokerHarness
from hypothesis import given
from hypothesis import strategies as st

from mqttproto import QoS, ReasonCode, RetainHandling, Subscription, topic_matches
from mqttproto.config import BrokerConfig
from mqttproto.events import PublishAcknowledged, SubscribeAcknowledged


def suback(client):
    [event] = [e for e in client.take() if isinstance(e, SubscribeAcknowledged)]
    return event.reason_codes


def puback(client):
    [event] = [e for e in client.take() if isinstance(e, PublishAcknowledged)]
    return event.reason_code


def test_retained_store_replace_delete_and_deliver_on_subscribe():
    h = BrokerHarness()
    pub = h.connected("pub")
    pub.conn.publish("r/1", b"one", retain=True)
    pub.conn.publish("r/1", b"uno", retain=True)  # [MQTT-3.3.1-5] replaces
    pub.conn.publish("r/2", b"two", retain=True)
    pub.conn.publish("r/2", b"", retain=True)  # [MQTT-3.3.1-6] deletes
    h.pump()
    assert [m.payload for m in h.broker.retained("r/#")] == [b"uno"]
    sub = h.connected("sub", V311)
    sub.conn.subscribe(["r/+"])
    h.pump()
    [message] = sub.take_messages()
    assert message.payload == b"uno" and message.retain  # [MQTT-3.3.1-9]


def test_retain_handling():
    h = BrokerHarness()
    pub = h.connected("pub")
    pub.conn.publish("r", b"x", retain=True)
    h.pump()
    sub = h.connected("sub")
    sub.conn.subscribe([Subscription("r", retain_handling=RetainHandling.DO_NOT_SEND)])
    h.pump()
    assert sub.take_messages() == []
    sub.conn.subscribe([Subscription("r", retain_handling=RetainHandling.SEND_IF_NEW_SUBSCRIPTION)])
    h.pump()
    assert sub.take_messages() == []  # not a new subscription
    sub.conn.unsubscribe(["r"])
    h.pump()
    sub.conn.subscribe([Subscription("r", retain_handling=RetainHandling.SEND_IF_NEW_SUBSCRIPTION)])
    h.pump()
    assert len(sub.take_messages()) == 1


def test_live_retain_flag_and_retain_as_published():
    h = BrokerHarness()
    plain = h.connected("plain")
    rap = h.connected("rap")
    plain.conn.subscribe(["t"])
    rap.conn.subscribe([Subscription("t", retain_as_published=True)])
    h.pump()
    pub = h.connected("pub")
    pub.conn.publish("t", b"x", retain=True)
    h.pump()
    assert [m.retain for m in plain.take_messages()] == [False]  # [MQTT-3.3.1-12]
    assert [m.retain for m in rap.take_messages()] == [True]  # [MQTT-3.3.1-13]


def test_retained_message_expiry():
    h = BrokerHarness()
    pub = h.connected("pub")
    pub.conn.publish("r", b"x", retain=True, message_expiry_interval=10)
    h.pump()
    h.advance(4)
    sub = h.connected("sub")
    sub.conn.subscribe(["r"])
    h.pump()
    [message] = sub.take_messages()
    assert message.message_expiry_interval == 6  # reduced by the time waited [MQTT-3.3.2-6]
    h.advance(7)
    late = h.connected("late")
    late.conn.subscribe(["r"])
    h.pump()
    assert late.take_messages() == []


def test_message_expiry_in_offline_queue():
    h = BrokerHarness()
    sub = h.connected("sub", clean_start=False, session_expiry_interval=100)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    sub.conn.disconnect()
    h.pump()
    pub = h.connected("pub")
    pub.conn.publish("t", b"short", qos=1, message_expiry_interval=5)
    pub.conn.publish("t", b"long", qos=1, message_expiry_interval=50)
    h.pump()
    h.advance(10)
    sub.connect(clean_start=False, session_expiry_interval=100)
    h.pump()
    [message] = sub.take_messages()
    assert message.payload == b"long"  # [MQTT-3.3.2-5]
    assert message.message_expiry_interval == 40


def test_shared_subscription_round_robin():
    h = BrokerHarness()
    members = [h.connected(f"m{i}") for i in range(3)]
    for member in members:
        member.conn.subscribe(["$share/g/jobs/+"])
    h.pump()
    pub = h.connected("pub")
    for i in range(6):
        pub.conn.publish(f"jobs/{i}", b"x")
    h.pump()
    assert [len(m.take_messages()) for m in members] == [2, 2, 2]


def test_shared_subscription_not_supported():
    h = BrokerHarness(BrokerConfig(shared_subscription_available=False))
    sub = h.connected("sub")
    sub.conn._limits = sub.conn._limits.__class__()  # ignore the server's announcement
    sub.conn.subscribe(["$share/g/t", "t"])
    h.pump()
    assert suback(sub) == (ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, ReasonCode.GRANTED_QOS_0)


def test_suback_failure_codes():
    config = BrokerConfig(
        wildcard_subscription_available=False,
        max_subscriptions_per_session=2,
        max_topic_levels=3,
    )
    h = BrokerHarness(config)
    sub = h.connected("sub")
    sub.conn._limits = sub.conn._limits.__class__()
    sub.conn.subscribe(["a/+", "a/b/c/d", "ok", "ok2", "ok3"])
    h.pump()
    assert suback(sub) == (
        ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED,
        ReasonCode.TOPIC_FILTER_INVALID,
        ReasonCode.GRANTED_QOS_0,
        ReasonCode.GRANTED_QOS_0,
        ReasonCode.QUOTA_EXCEEDED,
    )


def test_subscription_identifiers_not_supported():
    h = BrokerHarness(BrokerConfig(subscription_identifiers_available=False))
    sub = h.connected("sub")
    sub.conn._limits = sub.conn._limits.__class__()
    sub.conn.subscribe(["t"], subscription_identifier=7)
    h.pump()
    assert suback(sub) == (ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,)


def test_overlapping_subscriptions_one_message_max_qos_all_ids():
    h = BrokerHarness()
    sub = h.connected("sub")
    sub.conn.subscribe([Subscription("a/+", QoS.AT_MOST_ONCE)], subscription_identifier=1)
    sub.conn.subscribe([Subscription("a/#", QoS.AT_LEAST_ONCE)], subscription_identifier=2)
    h.pump()
    pub = h.connected("pub")
    pub.conn.publish("a/b", b"x", qos=2)
    h.pump()
    [message] = sub.take_messages()
    assert message.qos == QoS.AT_LEAST_ONCE
    assert sorted(message.subscription_identifiers) == [1, 2]  # [MQTT-3.3.4-5]


def test_no_local():
    h = BrokerHarness()
    client = h.connected("c")
    client.conn.subscribe([Subscription("t", no_local=True)])
    h.pump()
    client.conn.publish("t", b"mine")
    h.pump()
    assert client.take_messages() == []  # [MQTT-3.8.3-3]
    other = h.connected("other")
    other.conn.publish("t", b"theirs")
    h.pump()
    assert [m.payload for m in client.take_messages()] == [b"theirs"]


def test_receive_maximum_respected_towards_client():
    h = BrokerHarness()
    sub = h.client("sub")
    sub.connect(receive_maximum=2)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    sub.conn._auto_ack = False
    pub = h.connected("pub")
    for i in range(5):
        pub.conn.publish("t", bytes([i]), qos=1)
    h.pump()
    messages = sub.take_messages()
    assert len(messages) == 2  # [MQTT-3.3.4-7]
    assert h.broker.sessions()[0].queued == 3
    for message in messages:
        sub.conn.acknowledge(message.packet_id)
    h.pump()
    assert len(sub.take_messages()) == 2


def test_offline_queue_bound_quota_exceeded():
    h = BrokerHarness(BrokerConfig(max_queued_messages=2))
    sub = h.connected("sub", clean_start=False, session_expiry_interval=100)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    sub.conn.disconnect()
    h.pump()
    pub = h.connected("pub")
    codes = []
    for _ in range(3):
        pub.conn.publish("t", b"x", qos=1)
        h.pump()
        codes.append(puback(pub))
    assert codes == [ReasonCode.SUCCESS, ReasonCode.SUCCESS, ReasonCode.QUOTA_EXCEEDED]


def test_offline_queue_drops_oldest_qos0_first():
    h = BrokerHarness(BrokerConfig(max_queued_messages=2))
    sub = h.connected("sub", clean_start=False, session_expiry_interval=100)
    sub.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    sub.conn.disconnect()
    h.pump()
    pub = h.connected("pub")
    pub.conn.publish("t", b"q0")
    pub.conn.publish("t", b"q1", qos=1)
    pub.conn.publish("t", b"q1b", qos=1)
    h.pump()
    sub.connect(clean_start=False, session_expiry_interval=100)
    h.pump()
    assert [m.payload for m in sub.take_messages()] == [b"q1", b"q1b"]


def test_message_too_large_for_client_is_dropped():
    h = BrokerHarness()
    small = h.client("small")
    small.connect(maximum_packet_size=64)
    small.conn.subscribe(["t"])
    big = h.connected("big")
    big.conn.subscribe(["t"])
    h.pump()
    pub = h.connected("pub")
    pub.conn.publish("t", b"x" * 100)
    pub.conn.publish("t", b"y")
    h.pump()
    assert [m.payload for m in small.take_messages()] == [b"y"]  # [MQTT-3.1.2-25]
    assert len(big.take_messages()) == 2


def test_qos1_message_too_large_for_client_is_dropped_sent_or_queued():
    """[MQTT-3.1.2-25] at QoS 1 too: dropped when it would go out at once,
    and when a queued one gets its turn; what follows still goes."""
    h = BrokerHarness()
    small = h.client("small")
    small.connect(maximum_packet_size=64, receive_maximum=1)
    small.conn.subscribe([Subscription("t", QoS.AT_LEAST_ONCE)])
    h.pump()
    small.conn._auto_ack = False
    pub = h.connected("pub")
    for payload in (b"x" * 100, b"a", b"y" * 100, b"b"):
        pub.conn.publish("t", payload, qos=1)
    h.pump()
    # Reached, so acknowledged with success, though never sent.
    acks = [e.reason_code for e in pub.take() if isinstance(e, PublishAcknowledged)]
    assert acks == [ReasonCode.SUCCESS] * 4
    [first] = small.take_messages()
    assert first.payload == b"a"
    assert h.broker.messages_dropped == 1
    small.conn.acknowledge(first.packet_id)
    h.pump()
    [second] = small.take_messages()
    assert second.payload == b"b"
    assert h.broker.messages_dropped == 2
    small.conn.acknowledge(second.packet_id)
    h.pump()
    assert h.broker.sessions()[0].inflight == 0
    assert h.broker._held_bytes == 0


class DenyTopic:
    def authenticate(self, info):
        from mqttproto.auth import AuthResult

        return AuthResult.accept()

    def continue_authentication(self, info, data):
        raise AssertionError

    def may_publish(self, client_id, username, topic):
        return not topic.startswith("secret")

    def may_subscribe(self, client_id, username, topic_filter):
        return not topic_filter.startswith("secret")

    def may_receive(self, client_id, username, topic):
        return client_id != "blind"


def test_authorizer():
    h = BrokerHarness(authorizer=DenyTopic())
    sub = h.connected("sub")
    blind = h.connected("blind")
    sub.conn.subscribe(["secret/x", "open"])
    blind.conn.subscribe(["open"])
    h.pump()
    assert suback(sub) == (ReasonCode.NOT_AUTHORIZED, ReasonCode.GRANTED_QOS_0)
    v3 = h.connected("v3", V311)
    v3.conn.subscribe(["secret/y"])
    h.pump()
    assert suback(v3) == (ReasonCode.UNSPECIFIED_ERROR,)  # 0x80 on the wire
    pub5 = h.connected("pub5", V5)
    pub5.conn.publish("secret/x", b"x", qos=1)
    h.pump()
    assert puback(pub5) == ReasonCode.NOT_AUTHORIZED
    pub3 = h.connected("pub3", V311)
    pub3.conn.publish("secret/x", b"x", qos=1)
    h.pump()
    assert puback(pub3) == ReasonCode.SUCCESS  # acknowledged and dropped in 3.1.1
    pub5.conn.publish("open", b"hi")
    h.pump()
    assert [m.payload for m in sub.take_messages()] == [b"hi"]
    assert blind.take_messages() == []



def test_deny_reason_unspecified_does_not_reveal_the_acl():
    """``deny_reason="unspecified"``: refusals by the authorizer are 0x80
    Unspecified error, which a server uses when it "does not wish to reveal
    the reason" (MQTT 5.0 sections 3.4.2.1 and 3.9.3); other refusals keep
    their own codes."""
    h = BrokerHarness(BrokerConfig(deny_reason="unspecified"), authorizer=DenyTopic())
    sub = h.connected("sub")
    sub.conn.subscribe(["secret/x", "open"])
    h.pump()
    assert suback(sub) == (ReasonCode.UNSPECIFIED_ERROR, ReasonCode.GRANTED_QOS_0)
    pub = h.connected("pub", V5)
    pub.conn.publish("secret/x", b"x", qos=1)
    h.pump()
    assert puback(pub) == ReasonCode.UNSPECIFIED_ERROR
    pub.conn.publish("$SYS/broker/fake", b"x", qos=1)
    h.pump()
    assert puback(pub) == ReasonCode.UNSPECIFIED_ERROR
    pub.conn.publish("nobody/listens", b"x", qos=1)
    h.pump()
    assert puback(pub) == ReasonCode.NO_MATCHING_SUBSCRIBERS


def test_deny_reason_is_checked():
    with pytest.raises(ValueError, match="deny_reason"):
        BrokerConfig(deny_reason="maybe")

def test_sys_statistics():
    h = BrokerHarness(BrokerConfig(sys_interval=10))
    watcher = h.connected("watcher")
    watcher.conn.subscribe(["$SYS/broker/#"])
    h.pump()
    watcher.take_messages()
    h.advance(10)
    topics = {m.topic: m.payload for m in watcher.take_messages()}
    assert topics["$SYS/broker/clients/connected"] == b"1"
    assert topics["$SYS/broker/subscriptions/count"] == b"1"
    assert "$SYS/broker/uptime" in topics
    # '#' does not see $SYS [MQTT-4.7.2-1].
    other = h.connected("other")
    other.conn.subscribe(["#"])
    h.pump()
    assert other.take_messages() == []


def test_broker_publish_and_introspection():
    h = BrokerHarness()
    sub = h.connected("sub")
    sub.conn.subscribe([Subscription("x/#", QoS.AT_LEAST_ONCE)])
    h.pump()
    assert h.broker.subscribers("x/y") == [("sub", QoS.AT_LEAST_ONCE)]
    assert h.broker.subscriptions("sub")[0].topic_filter == "x/#"
    assert h.broker.publish("x/y", b"from server", qos=1, now=h.now) == 1
    h.pump()
    assert [m.payload for m in sub.take_messages()] == [b"from server"]


filters = st.lists(
    st.lists(st.sampled_from(["a", "b", "+", "$s", ""]), min_size=1, max_size=4)
    .map("/".join)
    .filter(bool)
    | st.lists(st.sampled_from(["a", "b", "+"]), max_size=3).map(lambda ls: "/".join([*ls, "#"])),
    min_size=1,
    max_size=12,
)
topics = (
    st.lists(st.sampled_from(["a", "b", "$s", ""]), min_size=1, max_size=4)
    .map("/".join)
    .filter(bool)
)


@given(filters, st.lists(topics, min_size=1, max_size=8))
def test_routing_agrees_with_topic_matches(subscription_filters, names):
    h = BrokerHarness()
    client_filters = {}
    for index, topic_filter in enumerate(subscription_filters):
        client_id = f"c{index % 4}"
        client_filters.setdefault(client_id, set()).add(topic_filter)
    router = h.broker._router
    from mqttproto.broker._router import Sub
    from mqttproto.broker._sessions import Session

    for client_id, fs in client_filters.items():
        session = Session(client_id, max_queued=10)
        for f in fs:
            router.add(Sub(session, f, 0))
    for name in names:
        expected = sorted(
            c for c, fs in client_filters.items() if any(topic_matches(f, name) for f in fs)
        )
        assert sorted(c for c, _ in h.broker.subscribers(name)) == expected
