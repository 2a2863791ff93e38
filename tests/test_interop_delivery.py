"""What paho-mqtt clients get from ``python -m mqttproto broker`` (a subprocess):
every retained message of a large store on subscribe, and topic aliases."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from test_interop_broker import Paho, ProcessBroker

#: Bounds of the waits below, in seconds.
PUBLISH_WAIT = 60.0
RECEIVE_WAIT = 120.0


class Counter:
    """Counts the messages of a paho client (on its network thread)."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.retained = 0
        self.topics: set[str] = set()
        self.done = threading.Event()

    def on_message(self, client: Any, userdata: Any, message: Any) -> None:
        self.count += 1
        self.retained += bool(message.retain)
        self.topics.add(message.topic)
        if self.count >= self.expected:
            self.done.set()


def test_paho_client_gets_server_topic_aliases_only_when_it_accepts_them() -> None:
    # As Paho's interoperability test_server_topic_alias: Topic Alias Maximum
    # 1, then none; one message at each QoS to a topic the client subscribes to.
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    topic = "client_test5/TopicA"
    with ProcessBroker() as broker:
        for maximum in (1, 0):
            properties = Properties(PacketTypes.CONNECT)
            if maximum:
                properties.TopicAliasMaximum = maximum
            client = Paho(broker.port, f"alias-{maximum}", v5=True, properties=properties)
            client.connect()
            client.subscribe(topic, 2)
            for qos in range(3):
                client.publish(topic, b"topic alias 1", qos=qos)
            messages = [client.receive() for _ in range(3)]
            client.disconnect()
            aliases = [getattr(m.properties, "TopicAlias", None) for m in messages]
            if maximum:
                # The first sets alias 1 with the topic; the others use it
                # with an empty topic (paho does not resolve aliases itself).
                assert aliases == [1, 1, 1]
                assert [m.topic for m in messages] == [topic, "", ""]
            else:
                assert aliases == [None, None, None]
                assert [m.topic for m in messages] == [topic] * 3


@pytest.mark.parametrize("qos", [0, 1])
def test_paho_subscriber_with_a_small_receive_maximum_gets_20000_retained_messages(
    qos: int,
) -> None:
    # QoS 1: paced by the Receive Maximum; QoS 0: by a small high-water mark.
    with ProcessBroker("--max-unsent-bytes", "10000") as broker:
        # Two publishers: one client may keep 10,000 retained messages
        # (max_retained_messages_per_client).
        for half in range(2):
            publisher = Paho(broker.port, f"pub-{half}", v5=True)
            publisher.client.max_inflight_messages_set(500)
            publisher.connect()
            infos = [
                publisher.client.publish(
                    f"store/{half}/{n // 100}/{n % 100}", b"v" * 20, qos=1, retain=True
                )
                for n in range(10_000)
            ]
            infos[-1].wait_for_publish(timeout=PUBLISH_WAIT)
            assert all(info.is_published() for info in infos)
            publisher.disconnect()
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        properties = Properties(PacketTypes.CONNECT)
        properties.ReceiveMaximum = 10
        subscriber = Paho(broker.port, "sub", v5=True, properties=properties)
        counter = Counter(20_000)
        subscriber.client.on_message = counter.on_message
        subscriber.connect()
        subscriber.subscribe("#", qos)
        counter.done.wait(RECEIVE_WAIT)
        subscriber.disconnect()
    assert counter.count == 20_000
    assert counter.retained == 20_000
    assert len(counter.topics) == 20_000
