"""Memory and time of delivering many retained messages to one new subscriber.

The broker holds ``N`` retained messages (20-byte payloads, QoS 1); one MQTT 5
client with a Receive Maximum of 10 subscribes to ``#`` at QoS 1 and
acknowledges everything it gets, until all ``N`` have arrived. Reported:
the Python heap (``tracemalloc``) the delivery takes above what the broker
held before the SUBSCRIBE (the peak, and what is left after), and the time
per message. Two shapes of the retained store: a hierarchy
(``site/<n // 100>/dev/<n % 100>``) and one flat level (``r/<n>``), where
the cursor holds one level's nodes still to visit (8 bytes each).

Run: ``python benchmarks/retained_delivery.py [N ...]`` (the codec in use;
default 20,000 and 100,000).
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc

from mqttproto import ProtocolVersion, QoS, Subscription
from mqttproto.broker import Broker
from mqttproto.client import ClientConnection
from mqttproto.codec import codec_implementation
from mqttproto.events import MessageReceived

V5 = ProtocolVersion.MQTT_5_0


def deliver(count: int, shape: str) -> tuple[int, int, float]:
    """(peak bytes, bytes left, µs per message) of one delivery."""
    broker = Broker()
    now = 0.0
    for n in range(count):
        topic = f"site/{n // 100}/dev/{n % 100}" if shape == "tree" else f"r/{n}"
        broker.publish(topic, b"v" * 20, qos=1, retain=True, now=now)
    client = ClientConnection(V5)
    conn = broker.open_connection(now)
    client.connect(client_id="sub", keep_alive=0, receive_maximum=10)
    broker.receive_data(conn, client.data_to_send(now), now)
    client.receive_data(broker.data_to_send(conn, now), now)
    list(client.events())
    client.subscribe([Subscription("#", QoS.AT_LEAST_ONCE)])
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    received = 0
    broker.receive_data(conn, client.data_to_send(now), now)
    for _ in range(10 * count):
        data = broker.data_to_send(conn, now)
        if not data:
            break
        client.receive_data(data, now)
        for event in client.events():
            received += isinstance(event, MessageReceived)
        broker.receive_data(conn, client.data_to_send(now), now)
    elapsed = time.perf_counter() - start
    current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert received == count, (received, count)
    return peak - base, current - base, elapsed / count * 1e6


def main() -> None:
    counts = [int(arg) for arg in sys.argv[1:]] or [20_000, 100_000]
    print(f"codec: {codec_implementation()}")
    for shape in ("tree", "flat"):
        for count in counts:
            peak, left, per = deliver(count, shape)
            print(
                f"{shape:4} {count:>7,} retained: peak +{peak / 1024:,.0f} KiB,"
                f" left +{left / 1024:,.0f} KiB, {per:.1f} µs/message"
            )


if __name__ == "__main__":
    main()
