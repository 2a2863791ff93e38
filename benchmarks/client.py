"""Client machine benchmark: the cost ClientConnection adds over the bare codec.

Run: ``.venv/bin/python benchmarks/client.py`` (options ``--packets N --rounds R``;
``MQTTPROTO_PURE_PYTHON=1`` measures with the pure-Python codec).

Workloads (MQTT 3.1.1 and 5.0, topic ``sensors/building1/floor2/temp``,
64-byte payload):

- ``receive-qos0``: a stream of QoS 0 PUBLISH fed in 64 KiB reads; the client
  yields one MessageReceived per packet.
- ``receive-qos1``: the same at QoS 1; the client also queues one PUBACK per
  packet, drained by ``data_to_send`` after every read.
- ``send-qos0``: ``publish()`` of QoS 0 messages, ``data_to_send`` every 256.
- ``send-qos1``: ``publish()`` of QoS 1 messages and the PUBACK for each fed
  back in 64 KiB reads, so each message completes its whole flow.

The baseline for each is the bare codec doing the same wire work:
``PacketReader.feed`` over the same reads (plus ``encode_packet`` of each
PUBACK for QoS 1), or ``encode_packet`` of each PUBLISH (plus the reader over
the PUBACKs for QoS 1). Both run interleaved, round by round; the table shows
the medians per message and the ratio client / codec (goal: at most 2).
Timed with the garbage collector on, as an application runs (collected once
before each measure, so that one round's garbage is not the next one's).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mqttproto import (
    ConnAckPacket,
    PacketReader,
    ProtocolVersion,
    PubAckPacket,
    PublishPacket,
    QoS,
    codec_implementation,
    encode_packet,
)
from mqttproto.client import ClientConnection
from mqttproto.config import ClientConfig

TOPIC = "sensors/building1/floor2/temp"
PAYLOAD = bytes(range(64))
READ = 65536


def chunks(stream: bytes) -> list[bytes]:
    return [stream[i : i + READ] for i in range(0, len(stream), READ)]


def connected_client(version: ProtocolVersion) -> ClientConnection:
    # Topic aliases off: the codec baseline sends full topics too.
    client = ClientConnection(version, config=ClientConfig(auto_topic_alias=False))
    client.connect(client_id="bench", keep_alive=0)
    client.data_to_send(0.0)
    client.receive_data(encode_packet(ConnAckPacket(), version=version), 0.0)
    list(client.events())
    return client


def publish_stream(version: ProtocolVersion, qos: QoS, count: int) -> bytes:
    return b"".join(
        encode_packet(
            PublishPacket(TOPIC, PAYLOAD, qos, packet_id=(i % 65535 + 1) if qos else None),
            version=version,
        )
        for i in range(count)
    )


def receive_pair(
    version: ProtocolVersion, qos: QoS, count: int
) -> tuple[Callable[[], int], Callable[[], int]]:
    reads = chunks(publish_stream(version, qos, count))

    def client_run() -> int:
        client = connected_client(version)
        n = 0
        for data in reads:
            client.receive_data(data, 1.0)
            for _ in client.events():
                n += 1
            client.data_to_send(1.0)
        return n

    def codec_run() -> int:
        reader = PacketReader(version=version)
        n = 0
        for data in reads:
            for packet in reader.feed(data):
                n += 1
                if qos:
                    encode_packet(PubAckPacket(packet.packet_id), version=version)  # type: ignore[attr-defined]
        return n

    return client_run, codec_run


def send_pair(
    version: ProtocolVersion, qos: QoS, count: int
) -> tuple[Callable[[], int], Callable[[], int]]:
    acks = chunks(
        b"".join(
            encode_packet(PubAckPacket(i % 65535 + 1), version=version) for i in range(count)
        )
    )

    def client_run() -> int:
        client = connected_client(version)
        publish = client.publish
        for i in range(count):
            publish(TOPIC, PAYLOAD, qos=qos)
            if i % 256 == 255:
                client.data_to_send(1.0)
        client.data_to_send(1.0)
        if qos:
            for data in acks:
                client.receive_data(data, 1.0)
                client._events.clear()
        return count

    def codec_run() -> int:
        out = []
        for i in range(count):
            out.append(
                encode_packet(
                    PublishPacket(TOPIC, PAYLOAD, qos, packet_id=(i % 65535 + 1) if qos else None),
                    version=version,
                )
            )
        if qos:
            reader = PacketReader(version=version)
            for data in acks:
                reader.feed(data)
        return count

    return client_run, codec_run


def measure(fn: Callable[[], int], count: int) -> float:
    """ns per message of ``fn``, the garbage collector on, as a program runs."""
    gc.collect()
    start = time.perf_counter_ns()
    done = fn()
    elapsed = time.perf_counter_ns() - start
    assert done == count, (done, count)
    return elapsed / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--packets", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    count = args.packets
    print(f"codec implementation: {codec_implementation()}; {count} messages x {args.rounds} rounds")
    print(f"{'workload':<22}{'client ns/msg':>15}{'codec ns/msg':>15}{'ratio':>8}")
    for version, label in ((ProtocolVersion.MQTT_3_1_1, "v311"), (ProtocolVersion.MQTT_5_0, "v5")):
        for name, make, qos in (
            ("receive-qos0", receive_pair, QoS.AT_MOST_ONCE),
            ("receive-qos1", receive_pair, QoS.AT_LEAST_ONCE),
            ("send-qos0", send_pair, QoS.AT_MOST_ONCE),
            ("send-qos1", send_pair, QoS.AT_LEAST_ONCE),
        ):
            client_run, codec_run = make(version, qos, count)
            client_times, codec_times = [], []
            for _ in range(args.rounds):
                client_times.append(measure(client_run, count))
                codec_times.append(measure(codec_run, count))
            c, b = statistics.median(client_times), statistics.median(codec_times)
            print(f"{label + ' ' + name:<22}{c:>15,.0f}{b:>15,.0f}{c / b:>8.2f}")


if __name__ == "__main__":
    main()
