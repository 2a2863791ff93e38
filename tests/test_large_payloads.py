"""Large payloads with the default settings, on the wire: paho-mqtt publishes
1 MiB (and 8 MiB) at QoS 1 through ``python -m mqttproto broker`` and a
subscriber receives it, in MQTT 3.1.1 and 5.

With a default Maximum Packet Size of exactly 1 MiB a 1 MiB payload (plus
its fixed header and topic) was refused and paho never got its PUBACK; the
default is 16 MiB now (``BrokerConfig.max_packet_size``). Past the maximum
the connection still ends with 0x95 *Packet too large*.
"""

from __future__ import annotations

import time

import pytest
from test_interop_broker import VERSIONS, Paho, ProcessBroker

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def default_broker():
    with ProcessBroker() as broker:
        yield broker


@pytest.mark.parametrize("v5", VERSIONS)
@pytest.mark.parametrize("size", [MiB, 8 * MiB], ids=["1MiB", "8MiB"])
def test_paho_large_payload_round_trip_at_qos1(default_broker, v5: bool, size: int) -> None:
    payload = bytes(range(256)) * (size // 256)
    subscriber = Paho(default_broker.port, f"big-sub-{v5}", v5=v5).connect()
    publisher = Paho(default_broker.port, f"big-pub-{v5}", v5=v5).connect()
    try:
        subscriber.subscribe("big/data", 1)
        publisher.publish("big/data", payload, qos=1)  # waits for the PUBACK
        message = subscriber.receive()
        assert (message.topic, message.qos, len(message.payload)) == ("big/data", 1, size)
        assert message.payload == payload
    finally:
        publisher.disconnect()
        subscriber.disconnect()


def test_past_the_maximum_the_connection_ends_with_0x95() -> None:
    with ProcessBroker("--max-packet-size", str(MiB)) as broker:
        publisher = Paho(broker.port, "too-big", v5=True).connect()
        disconnected: list[object] = []
        publisher.client.on_disconnect = lambda client, userdata, flags, reason, props: (
            disconnected.append(reason)
        )
        try:
            publisher.client.publish("big/data", b"x" * MiB, qos=1)
            for _ in range(100):
                if disconnected:
                    break
                time.sleep(0.1)  # 10 s at most
        finally:
            publisher.client.loop_stop()
        assert [int(getattr(r, "value", -1)) for r in disconnected] == [0x95]
