"""A stateful model: publishers and a persistent subscriber that comes and goes.

QoS 1 messages reach the subscriber at least once and QoS 2 messages exactly
once, across its reconnects with clean_start=False (session expiry long
enough to keep the session), whatever the interleaving.
"""

from __future__ import annotations

from collections import Counter

from helpers import V5, V311, BrokerHarness
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from mqttproto import QoS, Subscription

SESSION = {"clean_start": False, "session_expiry_interval": 3600}


class PersistentDelivery(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.h = BrokerHarness()
        self.sub = self.h.connected("sub", **SESSION)
        self.sub.conn.subscribe([Subscription("data/#", QoS.EXACTLY_ONCE)])
        self.h.pump()
        self.pubs = [self.h.connected("p5", V5), self.h.connected("p3", V311)]
        self.sent: Counter[bytes] = Counter()
        self.qos: dict[bytes, int] = {}
        self.received: Counter[bytes] = Counter()
        self.counter = 0

    def collect(self) -> None:
        for message in self.sub.take_messages():
            self.received[message.payload] += 1

    @rule(which=st.integers(0, 1), qos=st.sampled_from([1, 2]), topic=st.sampled_from(["a", "b/c"]))
    def publish(self, which, qos, topic):
        pub = self.pubs[which]
        if pub.closed:
            pub.connect()
        self.counter += 1
        payload = f"m{self.counter}".encode()
        pub.conn.publish(f"data/{topic}", payload, qos=qos)
        self.sent[payload] += 1
        self.qos[payload] = qos
        self.h.pump()
        self.collect()

    @rule(steps=st.integers(0, 3))
    def publish_without_pumping(self, steps):
        # Messages in flight when the subscriber's network fails.
        pub = self.pubs[0]
        if pub.closed:
            pub.connect()
        for _ in range(steps):
            self.counter += 1
            payload = f"m{self.counter}".encode()
            pub.conn.publish("data/x", payload, qos=2)
            self.sent[payload] += 1
            self.qos[payload] = 2
        data = pub.conn.data_to_send(self.h.now)
        if data:
            self.h.broker.receive_data(pub.conn_id, data, self.h.now)

    @precondition(lambda self: not self.sub.closed)
    @rule()
    def subscriber_network_fails(self):
        self.sub.drop()

    @precondition(lambda self: not self.sub.closed)
    @rule()
    def subscriber_disconnects(self):
        self.sub.conn.disconnect()
        self.h.pump()
        self.collect()

    @precondition(lambda self: self.sub.closed)
    @rule(wait=st.integers(0, 100))
    def subscriber_reconnects(self, wait):
        self.h.advance(wait)
        events = self.sub.connect(**SESSION)
        assert any(getattr(e, "session_present", False) for e in events)
        self.h.pump()
        self.collect()

    @invariant()
    def never_duplicated_qos2(self):
        for payload, count in self.received.items():
            if self.qos[payload] == 2:
                assert count == 1, payload  # exactly once [MQTT-4.3.3]

    def teardown(self):
        # Settle: reconnect and let every flow complete, then everything
        # published has arrived (at least once / exactly once).
        if self.sub.closed:
            self.sub.connect(**SESSION)
        self.h.pump()
        for pub in self.pubs:
            if not pub.closed:
                self.h.pump()
        self.collect()
        for payload in self.sent:
            assert self.received[payload] >= 1, payload  # at least once [MQTT-4.3.2]
            if self.qos[payload] == 2:
                assert self.received[payload] == 1, payload


PersistentDelivery.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)
TestPersistentDelivery = PersistentDelivery.TestCase
