"""The seed's headline workload: many connected clients sharing a QoS 0 rate.

IBM's figure in the design documents is 100,000 connected clients sharing
13,000 msg/s QoS 0. For each broker (this one, ``python -m mqttproto
broker``, and with ``--peer mosquitto`` mosquitto 2.0.11 in the same run,
each on a free 127.0.0.1 port):

1. ``--loaders`` load processes open ``--clients`` MQTT 5 connections in
   all (client ``c<n>`` subscribes at QoS 0 to ``scale/<n // fanout>``, so
   each topic has ``--fanout`` subscribers), bound to several loopback
   source addresses (127.0.0.2, 127.0.0.3, ...; bind before connect) so that
   the ephemeral ports of one address do not bound the count, with the file
   limit raised to its hard limit. The set-up rate is connections per second
   until every CONNACK and SUBACK is in.
2. For ``--duration`` seconds the load processes publish ``--rate`` msg/s
   in all, QoS 0, each message from the next of their own clients in turn to
   the topic of a random client, its send time (``CLOCK_MONOTONIC``, which
   all processes share) in the payload. Every client reads what it is sent.
3. After a drain of ``--drain`` seconds the counts are checked per
   subscriber: every message must reach each subscriber of its topic once
   (``lost`` and ``extra`` count the differences).

Reported: the broker's CPU % while publishing (``/proc/<pid>/stat``), its
RSS before and after the connections, latency p50/p99 (send to receive,
loopback, through the load processes' own loops), the broker's CPU time per
delivered message, the set-up rate, the publish rate achieved, the load
processes' CPU %, and which side saturated: a side over 90 % of a core; or,
when deliveries fell behind (more than 0.1 % lost, or a latency over 1 s),
the broker if it used more CPU than any load process ("CPU share" when that
was under a core: the machine is shared, see the load average printed).

The connection count is bounded by this machine: each broker connection is a
file descriptor of the broker process, so ``--clients`` must stay below the
hard ``RLIMIT_NOFILE`` (``ulimit -Hn``), which a process without
``CAP_SYS_RESOURCE`` cannot raise. The limits in force are printed first.

Run: ``python benchmarks/broker_scale.py --clients 20000 --rate 13000
--peer mosquitto``.
"""

from __future__ import annotations

import argparse
import random
import resource
import selectors
import socket
import statistics
import struct
import sys
import tempfile
import time
from array import array
from multiprocessing.connection import Connection
from pathlib import Path

from _processes import (
    BrokerProcess,
    available,
    cpu_seconds,
    machine_limits,
    open_clients,
    packets_in,
    raise_file_limit,
    rss_kib,
    start_loads,
)

from mqttproto import ProtocolVersion, PublishPacket, encode_packet

V5 = ProtocolVersion.MQTT_5_0
STAMP = struct.Struct(">d")
#: Connections per loopback source address (well under its ephemeral ports).
PER_ADDRESS = 10_000
#: Publishing ticks per second in each load process.
TICKS = 100


def _topic(n: int, fanout: int) -> str:
    return f"scale/{n // fanout}"


def _load(
    port: int, first: int, count: int, total: int, args: argparse.Namespace, pipe: Connection
) -> None:
    """One load process: its clients, its share of the rate, its counts."""
    fanout = args.fanout
    try:
        sockets = open_clients(
            port, first, count, lambda n: _topic(n, fanout), per_address=PER_ADDRESS, keep_alive=0
        )
    except (OSError, RuntimeError) as exc:
        pipe.send(f"error: {exc}")
        return
    pipe.send(len(sockets))
    rate, duration = pipe.recv()
    topics = (total + fanout - 1) // fanout
    selector = selectors.DefaultSelector()
    buffers: dict[socket.socket, tuple[int, bytearray]] = {}
    for index, sock in enumerate(sockets):
        sock.setblocking(False)
        buffers[sock] = (first + index, bytearray())
        selector.register(sock, selectors.EVENT_READ)
    sent = array("I", bytes(4 * topics))
    received = array("I", bytes(4 * count))
    latencies = array("d")
    rng = random.Random(first)
    padding = b"x" * max(0, args.payload - STAMP.size)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu_before = usage.ru_utime + usage.ru_stime
    start = time.monotonic()
    stop = start + duration
    end = stop + args.drain
    published = 0
    turn = 0
    blocked = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if now < stop:
            due = int((now - start) * rate)
            while published < due:
                topic = rng.randrange(topics)
                data = encode_packet(
                    PublishPacket(f"scale/{topic}", STAMP.pack(time.monotonic()) + padding),
                    version=V5,
                )
                sock = sockets[turn]
                turn = (turn + 1) % count
                try:
                    sent_bytes = sock.send(data)
                except BlockingIOError:
                    sent_bytes = 0
                if not sent_bytes:
                    # A full socket buffer (the broker does not keep up):
                    # counted as not sent.
                    blocked += 1
                    published += 1
                    continue
                if sent_bytes < len(data):
                    # Half a packet cannot be left: the rest waits.
                    sock.setblocking(True)
                    sock.sendall(data[sent_bytes:])
                    sock.setblocking(False)
                sent[topic] += 1
                published += 1
            wait = min(1 / TICKS, stop - now)
        else:
            wait = end - now
        for key, _ in selector.select(max(wait, 0)):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                chunk = sock.recv(262144)
            except BlockingIOError:
                continue
            if not chunk:
                selector.unregister(sock)
                continue
            n, buffer = buffers[sock]
            buffer += chunk
            arrived = time.monotonic()
            for first_byte, body in packets_in(buffer):
                if first_byte >> 4 != 3:
                    continue
                topic_length = int.from_bytes(body[:2], "big")
                # QoS 0: no packet id; then the properties' length (0 here).
                start_of_payload = 2 + topic_length + 1 + body[2 + topic_length]
                latencies.append(arrived - STAMP.unpack_from(body, start_of_payload)[0])
                received[n - first] += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    pipe.send((sent.tobytes(), received.tobytes(), latencies.tobytes(), cpu, blocked))
    pipe.recv()
    for sock in sockets:
        sock.close()


def run(name: str, args: argparse.Namespace) -> dict[str, object]:
    clients, loaders = args.clients, args.loaders
    with tempfile.TemporaryDirectory() as directory:
        broker = BrokerProcess(
            name, Path(directory), max_connections=clients + 100, backlog=args.backlog
        )
        try:
            broker.wait_ready()
            time.sleep(0.5)
            rss_before = rss_kib(broker.pid)
            started = time.monotonic()
            pipes, processes = start_loads(_load, broker.port, clients, loaders, clients, args)
            answers = [pipe.recv() for pipe in pipes]
            setup = time.monotonic() - started
            errors = [a for a in answers if isinstance(a, str)]
            if errors:
                for pipe in pipes:
                    pipe.send((0, 0.0))
                raise RuntimeError(errors[0])
            time.sleep(1.0)
            rss_connected = rss_kib(broker.pid)
            cpu_start, wall_start = cpu_seconds(broker.pid), time.monotonic()
            for pipe in pipes:
                pipe.send((args.rate / loaders, args.duration))
            time.sleep(args.duration)
            cpu_end, wall_end = cpu_seconds(broker.pid), time.monotonic()
            rss_after = rss_kib(broker.pid)
            results = [pipe.recv() for pipe in pipes]
            for pipe in pipes:
                pipe.send("close")
            for process in processes:
                process.join(60)
        finally:
            broker.stop()
    topics = (clients + args.fanout - 1) // args.fanout
    sent = [0] * topics
    received: list[int] = []
    latencies = array("d")
    loader_cpu = []
    blocked = 0
    for sent_bytes, received_bytes, latency_bytes, cpu, not_sent in results:
        for topic, count in enumerate(array("I", sent_bytes)):
            sent[topic] += count
        received.extend(array("I", received_bytes))
        latencies.frombytes(latency_bytes)
        loader_cpu.append(cpu / (args.duration + args.drain) * 100)
        blocked += not_sent
    lost = extra_ = 0
    for n, got in enumerate(received):
        expected = sent[n // args.fanout]
        lost += max(0, expected - got)
        extra_ += max(0, got - expected)
    published = sum(sent)
    ordered = sorted(latencies)
    broker_cpu = (cpu_end - cpu_start) / (wall_end - wall_start) * 100
    rate = published / args.duration
    delivered = published * args.fanout - lost
    behind = lost > 0.001 * published * args.fanout or (ordered and ordered[-1] > 1.0)
    if broker_cpu >= 90 or (behind and max(loader_cpu) < broker_cpu):
        # Behind without a full core: the core it was given by a machine
        # shared with other work (see the load average) was not enough.
        saturated = "broker" if broker_cpu >= 90 else "broker (CPU share)"
    elif max(loader_cpu) >= 90 or behind:
        saturated = "generator"
    elif rate < 0.95 * args.rate:
        saturated = "rate not held"
    else:
        saturated = "neither"
    return {
        "broker": name,
        "setup": clients / setup,
        "rss_before": rss_before,
        "rss_connected": rss_connected,
        "rss_after": rss_after,
        "cpu": broker_cpu,
        "cpu_per_message": (cpu_end - cpu_start) / max(delivered, 1) * 1e6,
        "rate": rate,
        "deliveries": published * args.fanout,
        "lost": lost,
        "extra": extra_,
        "not_sent": blocked,
        "p50": ordered[len(ordered) // 2] * 1e3 if ordered else float("nan"),
        "p99": ordered[int(len(ordered) * 0.99)] * 1e3 if ordered else float("nan"),
        "loader_cpu": max(loader_cpu),
        "saturated": saturated,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20_000, help="connections in all")
    parser.add_argument("--rate", type=float, default=13_000, help="QoS 0 msg/s in all")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of publishing")
    parser.add_argument("--drain", type=float, default=2.0, help="seconds to wait after")
    parser.add_argument("--fanout", type=int, default=1, help="subscribers per topic")
    parser.add_argument("--payload", type=int, default=64, help="bytes per message (>= 8)")
    parser.add_argument("--loaders", type=int, default=4, help="load processes")
    parser.add_argument("--backlog", type=int, default=4096, help="our broker's accept queue")
    parser.add_argument("--peer", default="", help="mosquitto: run it too, in the same run")
    parser.add_argument("--repeats", type=int, default=1, help="runs per broker (medians)")
    args = parser.parse_args()
    limit = raise_file_limit()
    names = ["ours", *(n for n in args.peer.split(",") if n)]
    for option, value, low in (
        ("--clients", args.clients, 1),
        ("--loaders", args.loaders, 1),
        ("--fanout", args.fanout, 1),
        ("--payload", args.payload, STAMP.size),
        ("--repeats", args.repeats, 1),
    ):
        if value < low:
            print(f"broker_scale.py: {option} must be at least {low}, not {value}", file=sys.stderr)
            return 1
    if args.clients + 64 > limit:
        print(
            f"broker_scale.py: --clients {args.clients} needs as many file descriptors in the "
            f"broker process; the hard limit here is {limit} (ulimit -Hn)",
            file=sys.stderr,
        )
        return 1
    if args.clients / args.loaders + 64 > limit:
        print(
            f"broker_scale.py: --loaders {args.loaders} leaves more than {limit} connections "
            f"to one load process; use more",
            file=sys.stderr,
        )
        return 1
    for name in names:
        if name not in ("ours", "mosquitto") or not available(name):
            print(f"broker_scale.py: --peer {name}: not available", file=sys.stderr)
            return 1
    print(
        f"{args.clients:,} clients, {args.rate:,.0f} msg/s QoS 0 in all for {args.duration:g} s, "
        f"{args.fanout} subscriber(s) per topic, {args.payload} B payload, "
        f"{args.loaders} load processes; median of {args.repeats}"
    )
    print("machine: " + ", ".join(f"{k} {v}" for k, v in machine_limits().items()))
    runs: dict[str, list[dict[str, object]]] = {name: [] for name in names}
    for _ in range(args.repeats):
        for name in names:  # interleaved: the peers see the same machine
            try:
                runs[name].append(run(name, args))
            except RuntimeError as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                return 1
    columns = [
        ("broker", "broker", "{}"),
        ("setup", "conn/s", "{:,.0f}"),
        ("rss_before", "RSS0 KiB", "{:,.0f}"),
        ("rss_connected", "RSS conn", "{:,.0f}"),
        ("rss_after", "RSS end", "{:,.0f}"),
        ("cpu", "CPU %", "{:.1f}"),
        ("cpu_per_message", "CPU µs/msg", "{:.1f}"),
        ("rate", "msg/s", "{:,.0f}"),
        ("lost", "lost", "{:,.0f}"),
        ("extra", "extra", "{:,.0f}"),
        ("not_sent", "unsent", "{:,.0f}"),
        ("p50", "p50 ms", "{:.2f}"),
        ("p99", "p99 ms", "{:.2f}"),
        ("loader_cpu", "gen CPU %", "{:.0f}"),
        ("saturated", "saturated", "{}"),
    ]
    print("  ".join(f"{title:>10}" for _, title, _ in columns))
    for results in runs.values():
        row = []
        for key, _, form in columns:
            values = [r[key] for r in results]
            value = (
                statistics.median(values)  # type: ignore[type-var]
                if isinstance(values[0], (int, float))
                else values[len(values) // 2]
            )
            row.append(f"{form.format(value):>10}")
        print("  ".join(row))
    for name, results in runs.items():
        per = [
            (r["rss_connected"] - r["rss_before"]) / args.clients  # type: ignore[operator]
            for r in results
        ]
        print(f"{name}: {statistics.median(per):.2f} KiB RSS per connected client")
    return 0


if __name__ == "__main__":
    sys.exit(main())
