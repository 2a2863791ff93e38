"""Codec benchmark: decode and build + encode of PUBLISH streams, medians over rounds.

Run: ``.venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/codec.py``
(options ``--packets N --rounds R --part streams|fanout|all``). Peers are
measured when installed: paho-mqtt (in the ``dev`` extra) and the Rust-backed
``mqtt5`` (``bench``).

Workloads (topic ``sensors/building1/floor2/temp``, 64-byte payload, packet
identifiers counting from 1):

- ``v311-qos0``: MQTT 3.1.1, QoS 0;
- ``v311-qos1``: MQTT 3.1.1, QoS 1;
- ``v5-qos1``: MQTT 5.0, QoS 1 with message expiry 3600 and user property
  ``unit=celsius``;
- ``v311-unique``: MQTT 3.1.1, QoS 0, a different topic per packet
  (``sensors/building1/floor2/temp/<n>``), which defeats the codec's caches
  of recently seen topic names and shows their worst case.

What each operation times is what a user's program does:

- ``decode``: the stream arrives in 64 KiB chunks, as reads from a socket
  give it; each chunk goes to ``PacketReader.feed``, and each packet it
  returns is dropped once looked at. ``mqtt5`` has no incremental reader: its
  chunks are appended to a ``bytearray`` and ``mqtt5.read`` is called along
  it until it reports that the rest is incomplete, which is the loop its
  users write.
- ``decode, kept``: the same, with every packet kept in a list until the run
  ends (an application that queues what it receives).
- ``build+encode``: the packet object is built in the timed loop from the
  message's values, then encoded, and the bytes dropped:
  ``encode_packet(PublishPacket(...))`` here and ``PublishPacket(...).write()``
  for ``mqtt5``. Constant property values (the user property list) are built
  once, outside the loop, for every implementation.
- ``encode``: ``encode_packet`` of packets built beforehand (``write()`` of
  ``mqtt5``'s own packets), the encoder alone.

Implementations are measured interleaved, round by round, in one process,
so that drift of the machine affects all of them alike; the table shows the
median time per packet over the rounds and the ratio to the first
implementation. The time is the CPU time of the measuring thread
(``time.thread_time``), so that other processes sharing the machine do not
count; ``--clock wall`` measures elapsed time instead. Every run has the garbage collector on, as a user's program
does; the column ``GC off`` is the same operation measured in the same round
with ``gc.disable()``, for reference only. The pure-Python twin is measured
with PublishPacket's Python ``__init__`` (the compiled twin gives the class a
C constructor, which is taken back while the pure twin runs).

A second table measures the encoders a server uses (``--part fanout``), each next to ``encode_packet`` of the same packets:

- ``encode_ack`` for ``puback-v311`` (success), ``puback-v5-0x10`` (No
  matching subscribers) and ``pubrel-v5`` (success), against
  ``encode_packet`` of prebuilt ack packets, against building the packet
  and encoding it, which is what ``encode_ack`` replaces, and against
  ``bytes((...))`` of the 4 or 5 bytes in Python (no codec: the same code in
  both columns);
- ``encode_publish_split`` and ``PreparedPublish`` (which holds that split,
  for ``ServerConnection.publish_prepared``) for ``v311-qos0``,
  ``v311-qos1``, ``v5-qos1`` and ``v5-qos1-subid`` (``v5-qos1`` with
  Subscription Identifier 7, what a broker adds per subscription). Like
  every other operation, these keep all their results alive until the run
  ends; ``PreparedPublish, dropped`` frees each one as soon as it is built,
  as a broker's fan-out does (one per message, gone once it is written), so
  the garbage collector never has many of them to look at.
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

import attrs

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mqttproto import (
    PacketType,
    ProtocolVersion,
    PubAckPacket,
    PublishPacket,
    PubRelPacket,
    QoS,
    ReasonCode,
)

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
    if name == "v5-qos1-subid":
        _, packets = workload_packets("v5-qos1", count)
        return V5, [attrs.evolve(p, subscription_identifiers=(7,)) for p in packets]
    if name == "v311-unique":
        # Every topic different: the decoder's and encoder's topic caches miss.
        return V311, [PublishPacket(f"{TOPIC}/{i}", PAYLOAD) for i in range(count)]
    raise ValueError(name)


WORKLOADS = ("v311-qos0", "v311-qos1", "v5-qos1", "v311-unique")
OPS = ("decode", "decode, kept", "build+encode", "encode")
CHUNK = 64 * 1024  # what one read from a socket gives, at most
EXPIRY = 3600
USER_PROPERTIES = (("unit", "celsius"),)


def chunked(stream: bytes) -> list[bytes]:
    return [stream[i : i + CHUNK] for i in range(0, len(stream), CHUNK)]


def messages(packets: list[PublishPacket]) -> list[tuple[str, int | None]]:
    """What a program publishes per message: a topic and a packet identifier."""
    return [(p.topic, p.packet_id) for p in packets]


class Implementation:
    """One codec under test: a callable per workload and operation."""

    def __init__(self, name: str, module: Any) -> None:
        self.name = name
        self.module = module

    def supports(self, workload: str, op: str) -> bool:
        return True

    def __enter__(self) -> None:
        """Called around each measured run (see Pure)."""

    def __exit__(self, *exc: object) -> None:
        pass

    def case(
        self, op: str, version: ProtocolVersion, packets: list[PublishPacket], stream: bytes
    ) -> Callable[[], int]:
        if op == "decode":
            return self.decoder(version, chunked(stream), keep=False)
        if op == "decode, kept":
            return self.decoder(version, chunked(stream), keep=True)
        if op == "build+encode":
            return self.builder(version, packets)
        return self.encoder(version, packets)

    def decoder(
        self, version: ProtocolVersion, chunks: list[bytes], keep: bool
    ) -> Callable[[], int]:
        reader_class = self.module.PacketReader

        def run() -> int:
            reader = reader_class(version=version)
            done = 0
            for chunk in chunks:
                for _packet in reader.feed(chunk):
                    done += 1
            return done

        def run_kept() -> int:
            reader = reader_class(version=version)
            kept: list[Any] = []
            for chunk in chunks:
                kept.extend(reader.feed(chunk))
            return len(kept)

        return run_kept if keep else run

    def builder(self, version: ProtocolVersion, packets: list[PublishPacket]) -> Callable[[], int]:
        encode = self.module.encode_packet
        build = PublishPacket
        todo = messages(packets)
        qos = packets[0].qos

        def run() -> int:
            done = 0
            for topic, packet_id in todo:
                encode(build(topic, PAYLOAD, qos=qos, packet_id=packet_id), version=version)
                done += 1
            return done

        def run_properties() -> int:
            done = 0
            for topic, packet_id in todo:
                encode(
                    build(topic, PAYLOAD, qos=qos, packet_id=packet_id,
                          message_expiry_interval=EXPIRY, user_properties=USER_PROPERTIES),
                    version=version,
                )  # fmt: skip
                done += 1
            return done

        return run_properties if version == V5 else run

    def encoder(self, version: ProtocolVersion, packets: list[PublishPacket]) -> Callable[[], int]:
        encode = self.module.encode_packet

        def run() -> int:
            done = 0
            for packet in packets:
                encode(packet, version=version)
                done += 1
            return done

        return run


class Pure(Implementation):
    """The pure-Python twin, with PublishPacket's Python ``__init__``: the
    compiled twin, when imported by mqttproto, gives the class a C
    constructor; it is taken back for the pure twin's runs."""

    def __init__(self) -> None:
        from mqttproto import _codec_py

        super().__init__("mqttproto pure", _codec_py)
        self._restore: bool | None = None

    def __enter__(self) -> None:
        try:
            from mqttproto import _codec_c
        except ImportError:
            return
        self._restore = _codec_c._use_compiled_constructors(False)

    def __exit__(self, *exc: object) -> None:
        if self._restore is not None:
            from mqttproto import _codec_c

            _codec_c._use_compiled_constructors(self._restore)
            self._restore = None


class _MemorySocket:
    """Just enough of a socket for paho's reader: recv() slices a buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def recv(self, size: int) -> bytes:
        start = self.pos
        self.pos = start + size
        return bytes(self.data[start : self.pos])

    def close(self) -> None:
        self.data = memoryview(b"")


class Paho(Implementation):
    """paho-mqtt's own packet code, driven through its client internals.

    paho has no public codec. Decode runs its receive path
    (``Client._packet_read``: fixed header, body, PUBLISH parsing with
    properties, a message object and the on_message dispatch) over an
    in-memory socket; the PUBACK it would send is stubbed out. Build and
    encode runs ``Client._send_publish`` (the topic encoded to bytes, as
    ``publish()`` does, then the PUBLISH bytes built, properties packed by
    ``Properties.pack``) with the output queue stubbed to keep the bytes.
    paho is slow enough (15-80 us per packet) that only ``decode`` and
    ``build+encode`` are measured.
    """

    def __init__(self) -> None:
        import paho.mqtt.client as paho_client

        super().__init__("paho-mqtt", paho_client)

    def supports(self, workload: str, op: str) -> bool:
        return op in ("decode", "build+encode")

    def _client(self, version: ProtocolVersion) -> Any:
        from paho.mqtt.enums import CallbackAPIVersion

        protocol = self.module.MQTTv5 if version == V5 else self.module.MQTTv311
        client = self.module.Client(CallbackAPIVersion.VERSION2, protocol=protocol)
        client._send_puback = lambda mid: 0
        client._packet_queue = lambda command, packet, mid, qos, info=None: packet
        return client

    def decoder(
        self, version: ProtocolVersion, chunks: list[bytes], keep: bool
    ) -> Callable[[], int]:
        stream = b"".join(chunks)

        def run() -> int:
            client = self._client(version)
            received = []
            client.on_message = lambda client, userdata, message: received.append(None)
            client._sock = _MemorySocket(stream)
            read = client._packet_read
            while client._sock.pos < len(stream):
                if read():
                    raise RuntimeError("paho refused the stream")
            client._sock = None
            return len(received)

        return run

    def builder(self, version: ProtocolVersion, packets: list[PublishPacket]) -> Callable[[], int]:
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        client = self._client(version)
        todo = messages(packets)
        qos = int(packets[0].qos)
        # paho takes the properties as its own object, built once outside
        # the loop, as the constant properties of the others are.
        properties = None
        if version == V5:
            properties = Properties(PacketTypes.PUBLISH)
            properties.MessageExpiryInterval = EXPIRY
            properties.UserProperty = list(USER_PROPERTIES)

        def run() -> int:
            send = client._send_publish
            done = 0
            for topic, packet_id in todo:
                send(packet_id or 0, topic.encode(), PAYLOAD, qos, False, False, None, properties)
                done += 1
            return done

        return run


class Mqtt5(Implementation):
    """The Rust-backed ``mqtt5`` package (MQTT 5.0 only).

    It has no incremental reader: decode appends each chunk to a
    ``bytearray`` and calls ``mqtt5.read`` along it (it returns the packet
    and the bytes it used, and raises IndexError, "Not enough bytes", at an
    incomplete packet), then drops what it used. Build and encode is
    ``PublishPacket(...).write()``; encode alone is ``write()`` of packets
    built beforehand.
    """

    def __init__(self) -> None:
        import mqtt5

        super().__init__("mqtt5 (Rust)", mqtt5)

    def supports(self, workload: str, op: str) -> bool:
        return workload.startswith("v5")

    def decoder(
        self, version: ProtocolVersion, chunks: list[bytes], keep: bool
    ) -> Callable[[], int]:
        read = self.module.read

        def run() -> int:
            buffer = bytearray()
            kept: list[Any] = []
            done = 0
            for chunk in chunks:
                buffer += chunk
                view = memoryview(buffer)
                size = len(buffer)
                pos = 0
                while pos < size:
                    try:
                        packet, used = read(view[pos:])
                    except IndexError:  # the rest is an incomplete packet
                        break
                    pos += used
                    done += 1
                    if keep:
                        kept.append(packet)
                view.release()
                del buffer[:pos]
            return done

        return run

    def _qos(self, packets: list[PublishPacket]) -> Any:
        return {0: self.module.QoS.AT_MOST_ONCE, 1: self.module.QoS.AT_LEAST_ONCE}[
            int(packets[0].qos)
        ]

    def builder(self, version: ProtocolVersion, packets: list[PublishPacket]) -> Callable[[], int]:
        build = self.module.PublishPacket
        qos = self._qos(packets)
        todo = messages(packets)
        user_properties = list(USER_PROPERTIES)  # it takes a list, not a tuple

        def run() -> int:
            done = 0
            for topic, packet_id in todo:
                build(
                    topic=topic, payload=PAYLOAD, qos=qos, packet_id=packet_id,
                    message_expiry_interval=EXPIRY, user_properties=user_properties,
                ).write()  # fmt: skip
                done += 1
            return done

        return run

    def encoder(self, version: ProtocolVersion, packets: list[PublishPacket]) -> Callable[[], int]:
        build = self.module.PublishPacket
        qos = self._qos(packets)
        theirs = [
            build(
                topic=p.topic, payload=p.payload, qos=qos, packet_id=p.packet_id,
                message_expiry_interval=p.message_expiry_interval,
                user_properties=list(p.user_properties),
            )
            for p in packets
        ]  # fmt: skip

        def run() -> int:
            done = 0
            for packet in theirs:
                packet.write()
                done += 1
            return done

        return run


def implementations() -> list[Implementation]:
    found = []
    try:
        from mqttproto import _codec_c
    except ImportError:
        print("the compiled codec is not built: measuring without it\n")
    else:
        found.append(Implementation("mqttproto compiled", _codec_c))
    found.append(Pure())
    try:
        found.append(Paho())
    except ImportError:
        print("paho-mqtt is not installed: measuring without it\n")
    try:
        found.append(Mqtt5())
    except ImportError:
        print("mqtt5 is not installed (pip install '.[bench]'): measuring without it\n")
    return found


# The clock: the CPU time of this thread by default, so that other processes
# on a shared machine (which take the cores in turns) do not count in a run;
# --clock wall for elapsed time, which is what a quiet machine gives too.
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}
clock = CLOCKS["cpu"]


def measure(fn: Callable[[], int], count: int, collector: bool = True) -> float:
    """ns per item of one run of ``fn``; with the garbage collector on, as a
    user's program runs, unless ``collector`` is False (collected first
    either way, so that no run inherits another's garbage)."""
    gc.collect()
    if not collector:
        gc.disable()
    try:
        start = clock()
        done = fn()
        elapsed = clock() - start
    finally:
        gc.enable()
    assert done == count, (done, count)
    return elapsed / count * 1e9


# ---------------------------------------------------------------------------
# The encoders a server uses: encode_ack and encode_publish_split.

# (workload, packet type, reason code, version, packet class)
ACK_WORKLOADS: tuple[tuple[str, PacketType, ReasonCode, ProtocolVersion, type[Any]], ...] = (
    ("puback-v311", PacketType.PUBACK, ReasonCode.SUCCESS, V311, PubAckPacket),
    ("puback-v5-0x10", PacketType.PUBACK, ReasonCode.NO_MATCHING_SUBSCRIBERS, V5, PubAckPacket),
    ("pubrel-v5", PacketType.PUBREL, ReasonCode.SUCCESS, V5, PubRelPacket),
)
SPLIT_WORKLOADS = ("v311-qos0", "v311-qos1", "v5-qos1", "v5-qos1-subid")


def fanout_cases(module: Any, count: int) -> list[tuple[str, str, Callable[[], int]]]:
    """(workload, operation, run) for one codec module."""
    encode = module.encode_packet
    encode_ack = module.encode_ack
    split = module.encode_publish_split
    prepare = module.PreparedPublish
    ids = [i % 65535 + 1 for i in range(count)]
    cases: list[tuple[str, str, Callable[[], int]]] = []
    for name, kind, code, version, cls in ACK_WORKLOADS:
        acks = [cls(packet_id, code) for packet_id in ids]
        assert [encode_ack(kind, i, code, version=version) for i in ids[:3]] == [
            encode(a, version=version) for a in acks[:3]
        ]

        def run_ack(kind: Any = kind, code: Any = code, version: Any = version) -> int:
            return len([encode_ack(kind, i, code, version=version) for i in ids])

        def run_packet(acks: Any = acks, version: Any = version) -> int:
            return len([encode(a, version=version) for a in acks])

        def run_build(cls: Any = cls, code: Any = code, version: Any = version) -> int:
            return len([encode(cls(i, code), version=version) for i in ids])

        first = (kind << 4) | (0x02 if kind == PacketType.PUBREL else 0x00)
        number = int(code) if version == V5 else 0

        def run_by_hand(first: int = first, number: int = number) -> int:
            # The bytes packed by hand, as the server did before encode_ack.
            if number:
                return len([bytes((first, 3, i >> 8, i & 0xFF, number)) for i in ids])
            return len([bytes((first, 2, i >> 8, i & 0xFF)) for i in ids])

        cases.append((name, "encode_ack", run_ack))
        cases.append((name, "bytes((...)) by hand", run_by_hand))
        cases.append((name, "encode_packet", run_packet))
        cases.append((name, "build + encode_packet", run_build))
    for name in SPLIT_WORKLOADS:
        version, packets = workload_packets(name, count)
        head, tail = split(packets[0], version=version)
        packet_id = prepare.packet_id_bytes(1) if packets[0].qos else b""
        assert head + packet_id + tail == encode(packets[0], version=version)
        prepared = prepare(packets[0], version=version)
        assert (prepared.head, prepared.tail) == (head, tail)

        def run_split(packets: Any = packets, version: Any = version) -> int:
            return len([split(p, version=version) for p in packets])

        def run_prepare(packets: Any = packets, version: Any = version) -> int:
            return len([prepare(p, version=version) for p in packets])

        def run_prepare_dropped(packets: Any = packets, version: Any = version) -> int:
            done = 0
            for p in packets:
                prepare(p, version=version)
                done += 1
            return done

        def run_encode(packets: Any = packets, version: Any = version) -> int:
            return len([encode(p, version=version) for p in packets])

        cases.append((name, "encode_publish_split", run_split))
        cases.append((name, "PreparedPublish", run_prepare))
        cases.append((name, "PreparedPublish, dropped", run_prepare_dropped))
        cases.append((name, "encode_packet", run_encode))
    return cases


def fanout(count: int, rounds: int) -> None:
    from mqttproto import _codec_py

    modules = [("pure", _codec_py)]
    try:
        from mqttproto import _codec_c
    except ImportError:
        print("the compiled codec is not built: measuring the pure one alone\n")
    else:
        modules.insert(0, ("compiled", _codec_c))
    cases = [
        (workload, op, label, run)
        for label, module in modules
        for workload, op, run in fanout_cases(module, count)
    ]
    results: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(rounds):
        for workload, op, label, run in cases:
            results.setdefault((workload, op, label), []).append(measure(run, count))
    print(f"{count:,} calls per run, median of {rounds} interleaved rounds, garbage collector on\n")
    labels = [label for label, _ in modules]
    header = f"{'workload':<15} {'op':<25}" + "".join(f" {label + ' ns':>12}" for label in labels)
    print(header)
    print("-" * len(header))
    seen: list[tuple[str, str]] = []
    for workload, op, _, _ in cases:
        if (workload, op) not in seen:
            seen.append((workload, op))
    for workload, op in seen:
        cells = "".join(
            f" {statistics.median(results[(workload, op, label)]):>12,.0f}" for label in labels
        )
        print(f"{workload:<15} {op:<25}{cells}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--gc-off",
        action="store_true",
        help="also measure each stream operation with the garbage collector off, beside",
    )
    parser.add_argument(
        "--part",
        choices=("all", "streams", "fanout"),
        default="all",
        help="the PUBLISH stream table, the fan-out encoders' table, or both",
    )
    parser.add_argument(
        "--clock",
        choices=tuple(CLOCKS),
        default="cpu",
        help="CPU time of the measuring thread (default) or elapsed wall time",
    )
    args = parser.parse_args()
    global clock
    clock = CLOCKS[args.clock]
    print(f"clock: {args.clock} time\n")
    if args.part != "fanout":
        streams(args.packets, args.rounds, args.gc_off)
    if args.part != "streams":
        if args.part == "all":
            print()
        fanout(args.packets, args.rounds)


def streams(count: int, rounds: int, collector_off: bool) -> None:
    """The decode and encode table of the PUBLISH workloads, with the peers."""
    impls = implementations()
    from mqttproto._codec_py import encode_packet

    modes = (True, False) if collector_off else (True,)
    results: dict[tuple[str, str, str, bool], list[float]] = {}
    cases = []
    for workload in WORKLOADS:
        version, packets = workload_packets(workload, count)
        stream = b"".join(encode_packet(p, version=version) for p in packets)
        for op in OPS:
            for impl in impls:
                if impl.supports(workload, op):
                    cases.append((workload, op, impl, impl.case(op, version, packets, stream)))
    for _ in range(rounds):
        for workload, op, impl, fn in cases:
            for collector in modes:
                with impl:
                    ns = measure(fn, count, collector)
                results.setdefault((workload, op, impl.name, collector), []).append(ns)
    print(
        f"{count:,} packets per run, median of {rounds} interleaved rounds, garbage "
        f"collector on; ratio: to the first implementation"
        + ("; GC off: the same with gc.disable(), for reference" if collector_off else "")
        + "\n"
    )
    header = f"{'workload':<11} {'op':<13} {'implementation':<20} {'ns/packet':>10} {'ratio':>7}"
    if collector_off:
        header += f" {'GC off':>8}"
    print(header)
    print("-" * len(header))
    median: dict[tuple[str, str, str], float] = {}
    for workload in WORKLOADS:
        for op in OPS:
            base = None
            for impl in impls:
                times = results.get((workload, op, impl.name, True))
                if not times:
                    continue
                value = median[(workload, op, impl.name)] = statistics.median(times)
                base = base or value
                line = (
                    f"{workload:<11} {op:<13} {impl.name:<20} {value:>10,.0f} {value / base:>7.2f}"
                )
                if collector_off:
                    line += (
                        f" {statistics.median(results[(workload, op, impl.name, False)]):>8,.0f}"
                    )
                print(line)
    print_targets(median)


def print_targets(median: dict[tuple[str, str, str], float]) -> None:
    """The targets of issue 16, from this run's medians (GC on)."""
    compiled, pure, rust = "mqttproto compiled", "mqttproto pure", "mqtt5 (Rust)"
    rows = []
    for op, must, goal in (("build+encode", 1.0, 0.5), ("decode", 0.5, 0.5)):
        ours, theirs = median.get(("v5-qos1", op, compiled)), median.get(("v5-qos1", op, rust))
        if ours and theirs:
            rows.append(f"v5-qos1 {op}, compiled / mqtt5: {ours / theirs:.2f} "
                        f"(must be <= {must}, goal <= {goal})")  # fmt: skip
    for impl in (compiled, pure):
        qos0, qos1 = (
            median.get(("v311-qos0", "decode", impl)),
            median.get(("v311-qos1", "decode", impl)),
        )
        if qos0 and qos1:
            rows.append(f"v311 decode, QoS 1 / QoS 0, {impl}: {qos1 / qos0:.2f} (must be <= 1.5)")
    value = median.get(("v5-qos1", "decode", pure))
    if value:
        rows.append(f"v5-qos1 decode, {pure}: {value:,.0f} ns (must be <= 1,500)")
    if rows:
        print("\nTargets (issue 16), GC on, this run:")
        for row in rows:
            print("  " + row)


if __name__ == "__main__":
    main()
