"""Codec benchmark: decode and encode of PUBLISH streams, medians over rounds.

Run: ``.venv/bin/python benchmarks/codec.py [--packets N] [--rounds R]``

Workloads (topic ``sensors/building1/floor2/temp``, 64-byte payload):

- ``v311-qos0``: MQTT 3.1.1, QoS 0;
- ``v311-qos1``: MQTT 3.1.1, QoS 1;
- ``v5-qos1``: MQTT 5.0, QoS 1 with message expiry 3600 and user property
  ``unit=celsius``;
- ``v311-unique``: MQTT 3.1.1, QoS 0, a different topic per packet
  (``sensors/building1/floor2/temp/<n>``), which defeats the codec's caches
  of recently seen topic names and shows their worst case.

Decode means one ``PacketReader.feed(stream)`` call over the whole stream,
producing fully validated packet objects; encode means ``encode_packet`` over
a list of packet objects. Implementations are measured interleaved, round by
round, so that drift of the machine affects all of them alike; the table shows
the median time per packet and the ratio to the first implementation.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mqttproto import ProtocolVersion, PublishPacket, QoS

TOPIC = "sensors/building1/floor2/temp"
PAYLOAD = bytes(range(64))
V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0


def workload_packets(name: str, count: int) -> tuple[ProtocolVersion, list[PublishPacket]]:
    if name == "v311-qos0":
        return V311, [PublishPacket(TOPIC, PAYLOAD) for _ in range(count)]
    if name == "v311-qos1":
        return V311, [
            PublishPacket(TOPIC, PAYLOAD, qos=QoS.AT_LEAST_ONCE, packet_id=i % 65535 + 1)
            for i in range(count)
        ]
    if name == "v5-qos1":
        return V5, [
            PublishPacket(
                TOPIC,
                PAYLOAD,
                qos=QoS.AT_LEAST_ONCE,
                packet_id=i % 65535 + 1,
                message_expiry_interval=3600,
                user_properties=(("unit", "celsius"),),
            )
            for i in range(count)
        ]
    if name == "v311-unique":
        # Every topic different: the decoder's and encoder's topic caches miss.
        return V311, [PublishPacket(f"{TOPIC}/{i}", PAYLOAD) for i in range(count)]
    raise ValueError(name)


WORKLOADS = ("v311-qos0", "v311-qos1", "v5-qos1", "v311-unique")


class Implementation:
    """One codec under test: a decode and an encode callable per workload."""

    def __init__(self, name: str, module: Any) -> None:
        self.name = name
        self.module = module

    def supports(self, workload: str) -> bool:
        return True

    def decoder(self, version: ProtocolVersion, stream: bytes) -> Callable[[], int]:
        reader_class = self.module.PacketReader

        def run() -> int:
            return len(reader_class(version=version).feed(stream))

        return run

    def encoder(
        self, version: ProtocolVersion, packets: list[PublishPacket]
    ) -> Callable[[], int]:
        encode = self.module.encode_packet

        def run() -> int:
            return len([encode(p, version=version) for p in packets])

        return run


def implementations() -> list[Implementation]:
    from mqttproto import _codec_py

    found = []
    try:
        from mqttproto import _codec_c  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:
        found.append(Implementation("mqttproto compiled", _codec_c))
    found.append(Implementation("mqttproto pure", _codec_py))
    return found


def measure(fn: Callable[[], int], count: int) -> float:
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter()
        done = fn()
        elapsed = time.perf_counter() - start
    finally:
        gc.enable()
    assert done == count, (done, count)
    return elapsed / count * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    impls = implementations()
    from mqttproto._codec_py import encode_packet

    results: dict[tuple[str, str, str], list[float]] = {}
    cases = []
    for workload in WORKLOADS:
        version, packets = workload_packets(workload, args.packets)
        stream = b"".join(encode_packet(p, version=version) for p in packets)
        for impl in impls:
            if impl.supports(workload):
                cases.append((workload, "decode", impl, impl.decoder(version, stream)))
                cases.append((workload, "encode", impl, impl.encoder(version, packets)))
    for _ in range(args.rounds):
        for workload, op, impl, fn in cases:
            results.setdefault((workload, op, impl.name), []).append(measure(fn, args.packets))
    print(f"{args.packets:,} packets per run, median of {args.rounds} interleaved rounds\n")
    header = f"{'workload':<11} {'op':<7} {'implementation':<22} {'ns/packet':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for workload in WORKLOADS:
        for op in ("decode", "encode"):
            base = None
            for impl in impls:
                times = results.get((workload, op, impl.name))
                if not times:
                    continue
                median = statistics.median(times)
                base = base or median
                print(
                    f"{workload:<11} {op:<7} {impl.name:<22} {median:>10,.0f} {median / base:>7.2f}"
                )


if __name__ == "__main__":
    main()
