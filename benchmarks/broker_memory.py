"""What the sans-IO broker core keeps in memory, per thing an operator counts.

Python heap bytes (``tracemalloc``) the core holds, divided by the count:

- ``connection``: an MQTT 5 client connected with one subscription
  (``devices/<n>/cmd``), idle;
- ``offline session``: the same client after its connection is lost, its
  session kept (Session Expiry Interval one hour);
- ``queued message``: one 100-byte QoS 1 message published to 1,000 offline
  sessions, counted per session it waits in;
- ``retained message``: a 100-byte retained message on its own topic.

The heap of the broker process is more than this (the interpreter, the
adapter's transports and socket buffers): ``tests/test_hostile.py`` measures
the RSS of ``python -m mqttproto broker`` across 2,000 connections.

Run: ``python benchmarks/broker_memory.py`` (the codec in use).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

from mqttproto import ProtocolVersion, PublishPacket, QoS, Subscription, encode_packet
from mqttproto.broker import Broker
from mqttproto.client import ClientConnection
from mqttproto.codec import codec_implementation

V5 = ProtocolVersion.MQTT_5_0
COUNT = 1000
NOW = 0.0


def _connect(broker: Broker, client_id: str, topic_filter: str | None = None) -> int:
    """A persistent MQTT 5 client with one subscription; returns its connection."""
    client = ClientConnection(V5)
    conn = broker.open_connection(NOW)
    client.connect(
        client_id=client_id, keep_alive=60, clean_start=False, session_expiry_interval=3600
    )
    broker.receive_data(conn, client.data_to_send(NOW), NOW)
    client.receive_data(broker.data_to_send(conn, NOW), NOW)
    topic_filter = topic_filter or f"devices/{client_id}/cmd"
    client.subscribe([Subscription(topic_filter, QoS.AT_LEAST_ONCE)])
    broker.receive_data(conn, client.data_to_send(NOW), NOW)
    broker.data_to_send(conn, NOW)
    return conn


def _publisher(broker: Broker) -> None:
    conn = broker.open_connection(NOW)
    client = ClientConnection(V5)
    client.connect(client_id="pub", keep_alive=0)
    broker.receive_data(conn, client.data_to_send(NOW), NOW)
    broker.data_to_send(conn, NOW)


def _publish(broker: Broker, data: bytes) -> None:
    pub = max(broker._conns)  # the publisher connected last
    broker.receive_data(pub, data, NOW)
    broker.flush(NOW)


def _measure(setup: Callable[[Broker], None], work: Callable[[Broker], None]) -> int:
    """Heap bytes ``work`` leaves allocated, on a broker prepared by ``setup``."""
    # Once before, so that lazy imports and caches are not counted.
    warm = Broker()
    setup(warm)
    work(warm)
    broker = Broker()
    setup(broker)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    work(broker)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return after - before


def connections(broker: Broker) -> None:
    for n in range(COUNT):
        _connect(broker, f"c{n}")
    broker.flush(NOW)


def offline(broker: Broker) -> None:
    conns = [_connect(broker, f"c{n}") for n in range(COUNT)]
    for conn in conns:
        broker.connection_lost(conn, NOW)
    broker.flush(NOW)


def offline_wildcard_sessions(broker: Broker) -> None:
    """Offline sessions subscribed to devices/+/cmd, and a publisher."""
    for n in range(COUNT):
        broker.connection_lost(_connect(broker, f"w{n}", "devices/+/cmd"), NOW)
    _publisher(broker)
    broker.flush(NOW)


def queued(broker: Broker) -> None:
    packet = PublishPacket("devices/all/cmd", b"x" * 100, QoS.AT_LEAST_ONCE, packet_id=1)
    _publish(broker, encode_packet(packet, version=V5))


def retained(broker: Broker) -> None:
    _publish(
        broker,
        b"".join(
            encode_packet(PublishPacket(f"state/{n}", b"x" * 100, retain=True), version=V5)
            for n in range(COUNT)
        ),
    )


def main() -> None:
    print(f"codec: {codec_implementation()}; bytes of Python heap in the core, per item")
    rows = [
        ("connection (v5, 1 subscription, idle)", _measure(lambda b: None, connections)),
        ("offline session (1 subscription)", _measure(lambda b: None, offline)),
        ("queued QoS 1 message, 100 B, per session", _measure(offline_wildcard_sessions, queued)),
        ("retained message, 100 B", _measure(_publisher, retained)),
    ]
    for name, total in rows:
        print(f"  {name:<44} {total / COUNT:>8,.0f}")


if __name__ == "__main__":
    main()
