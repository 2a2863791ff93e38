"""What the broker keeps in memory, per thing an operator counts.

``--rss``: the process. This broker (``python -m mqttproto broker``) and
mosquitto 2.0.11 (a generated config), in the same run, each on a free
127.0.0.1 port: N idle MQTT 5 clients (clean start, keep-alive 600 s, one
QoS 0 subscription ``devices/<n>/cmd`` each) are connected from one or more
load processes, and the broker's resident set (``VmRSS`` in
``/proc/<pid>/status``) is read before and after; the growth divided by N is
the cost of an idle connection, everything included (the interpreter's
objects, the allocator's slack, the kernel's socket is not in RSS). The
median of ``--repeats`` runs, each with fresh brokers.

Without ``--rss``: Python heap bytes (``tracemalloc``) the sans-IO core
holds, divided by the count:

- ``connection``: an MQTT 5 client connected with one subscription
  (``devices/<n>/cmd``), idle;
- ``offline session``: the same client after its connection is lost, its
  session kept (Session Expiry Interval one hour);
- ``queued message``: one 100-byte QoS 1 message published to 1,000 offline
  sessions, counted per session it waits in (the second in each queue: the
  first also makes the queue, 760 bytes, which an idle session does not keep);
- ``retained message``: a 100-byte retained message on its own topic.

The heap of the broker process is more than this (the interpreter, the
adapter's transports and socket buffers): that is what ``--rss`` measures.

Run: ``python benchmarks/broker_memory.py`` (the codec in use), or
``python benchmarks/broker_memory.py --rss --connections 10000``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from _processes import (
    BrokerProcess,
    available,
    machine_limits,
    open_clients,
    raise_file_limit,
    rss_kib,
    start_loads,
)

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


def _queued_publish(packet_id: int) -> bytes:
    packet = PublishPacket("devices/all/cmd", b"x" * 100, QoS.AT_LEAST_ONCE, packet_id=packet_id)
    return encode_packet(packet, version=V5)


def offline_sessions_with_a_queue(broker: Broker) -> None:
    """The sessions of offline_wildcard_sessions, one message queued in each
    (so that the next one is counted alone, not the queue it starts)."""
    offline_wildcard_sessions(broker)
    _publish(broker, _queued_publish(1))


def queued(broker: Broker) -> None:
    _publish(broker, _queued_publish(2))


def retained(broker: Broker) -> None:
    _publish(
        broker,
        b"".join(
            encode_packet(PublishPacket(f"state/{n}", b"x" * 100, retain=True), version=V5)
            for n in range(COUNT)
        ),
    )


def _load(port: int, first: int, count: int, pipe: Connection) -> None:
    """A load process: connect its clients, say how many, hold them until told."""
    try:
        sockets = open_clients(port, first, count, lambda n: f"devices/c{n}/cmd")
    except (OSError, RuntimeError) as exc:
        pipe.send(f"error: {exc}")
        return
    pipe.send(len(sockets))
    pipe.recv()
    for sock in sockets:
        sock.close()


def rss_per_connection(name: str, connections: int, loaders: int) -> tuple[int, int, float]:
    """RSS of a fresh broker before and after ``connections`` idle clients
    (KiB), and the connect time in seconds."""
    with tempfile.TemporaryDirectory() as directory:
        broker = BrokerProcess(name, Path(directory), max_connections=connections + 100)
        try:
            broker.wait_ready()
            time.sleep(0.5)  # whatever start-up allocates lazily
            before = rss_kib(broker.pid)
            started = time.monotonic()
            pipes, processes = start_loads(_load, broker.port, connections, loaders)
            answers = [pipe.recv() for pipe in pipes]
            took = time.monotonic() - started
            errors = [a for a in answers if isinstance(a, str)]
            if errors:
                raise SystemExit(f"{name}: {errors[0]}")
            time.sleep(1.0)  # let the last answers' buffers go
            after = rss_kib(broker.pid)
            for pipe in pipes:
                pipe.send("close")
            for process in processes:
                process.join(60)
        finally:
            broker.stop()
    return before, after, took


def rss_main(args: argparse.Namespace) -> None:
    raise_file_limit()
    limits = machine_limits()
    print(
        f"{args.connections:,} idle MQTT 5 connections, 1 subscription each, "
        f"{args.loaders} load process(es); median of {args.repeats}"
    )
    print("machine: " + ", ".join(f"{k} {v}" for k, v in limits.items()))
    names = [n for n in args.brokers.split(",") if n]
    results: dict[str, list[tuple[int, int, float]]] = {n: [] for n in names}
    for _ in range(args.repeats):
        for name in names:  # interleaved: the peers see the same machine
            if not available(name):
                print(f"skipping {name}: not installed")
                continue
            results[name].append(rss_per_connection(name, args.connections, args.loaders))
    print(f"{'broker':<10} {'RSS before':>11} {'RSS after':>11} {'KiB/conn':>9} {'conn/s':>8}")
    per: dict[str, float] = {}
    for name, runs in results.items():
        if not runs:
            continue
        per[name] = statistics.median((a - b) / args.connections for b, a, _ in runs)
        before = statistics.median(b for b, _, _ in runs)
        after = statistics.median(a for _, a, _ in runs)
        rate = statistics.median(args.connections / t for _, _, t in runs)
        print(f"{name:<10} {before:>8,} KiB {after:>8,} KiB {per[name]:>9.2f} {rate:>8,.0f}")
    if "ours" in per and "mosquitto" in per and per["mosquitto"] > 0:
        print(f"ours / mosquitto: {per['ours'] / per['mosquitto']:.2f}x per connection")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rss", action="store_true", help="measure the broker process's RSS")
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--loaders", type=int, default=2, help="load processes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--brokers", default="ours,mosquitto")
    args = parser.parse_args()
    if args.rss:
        rss_main(args)
        return
    print(f"codec: {codec_implementation()}; bytes of Python heap in the core, per item")
    rows = [
        ("connection (v5, 1 subscription, idle)", _measure(lambda b: None, connections)),
        ("offline session (1 subscription)", _measure(lambda b: None, offline)),
        (
            "queued QoS 1 message, 100 B, per session",
            _measure(offline_sessions_with_a_queue, queued),
        ),
        ("retained message, 100 B", _measure(_publisher, retained)),
    ]
    for name, total in rows:
        print(f"  {name:<44} {total / COUNT:>8,.0f}")


if __name__ == "__main__":
    main()
