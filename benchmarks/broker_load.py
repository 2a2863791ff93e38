"""Broker load benchmark: QoS 0 messages per second through a broker, 1→1 and 1→4.

Run (all peers in one run, interleaved):
``.venv/bin/pip install -e '.[bench]' && .venv/bin/python benchmarks/broker_load.py``
(``--messages N --repeats R --brokers ours,mosquitto,amqtt --scenarios 1x1,1x4``).

What it does:

- Starts each broker as its own process on a free port of 127.0.0.1: ours
  (``python -m mqttproto broker``), mosquitto (``/usr/sbin/mosquitto -c conf``,
  persistence off) and amqtt (``amqtt -c conf``, anonymous, no $SYS, no
  packet logging). A broker that is not installed is reported and left out.
- For every repeat, scenario and broker (interleaved, so machine drift affects
  them alike) starts a *load process* (this file with ``--worker``): one asyncio
  loop on raw non-blocking sockets; the subscribers connect (MQTT 3.1.1, clean
  session, keep-alive off) and subscribe at QoS 0, then one publisher sends
  the same pre-encoded PUBLISH (topic ``bench/load``, ``--payload`` bytes) in
  chunks of ``--chunk`` messages.
- The publisher keeps at most ``--window`` messages ahead of the slowest
  subscriber, so the measure is sustained throughput, not how much a broker
  can buffer (and no broker has reason to drop QoS 0 messages).
- Measured at the subscribers: the clock runs from the first byte published
  to the moment every subscriber has received all ``--messages`` messages
  (counted in bytes, all messages being identical; the stream is checked to
  end on a whole packet). The result is delivered messages per second,
  ``subscribers * messages / elapsed``; the table shows the median over the
  repeats and the ratios of ours to the peers.
- Which side bounded each run: the broker's CPU time (``/proc/<pid>/stat``,
  read around the load process) and the load process's own
  (``time.process_time``), as % of one core over the measured time; a side
  at 90 % or more saturated. When the load process saturates, the figure is
  a floor for that broker: the machine has 2 cores, one for each side.
- ``--fresh`` starts new broker processes for every repeat (by default one
  process per broker serves all repeats): the same code runs a few per cent
  faster or slower in one process than in another, and a ratio of medians
  taken in one process each carries that difference whole.
- ``--brokers ...,ours-gc700`` adds our broker with Python's own garbage
  collector threshold (``--gc-threshold 700``), to show what the broker's
  default of 10,000 changes, in the same run.

Every wait is bounded (``--timeout`` per run) and every process is stopped
through its handle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mqttproto import (  # noqa: E402
    ConnectPacket,
    ProtocolVersion,
    PublishPacket,
    QoS,
    SubscribePacket,
    Subscription,
    encode_packet,
)

HOST = "127.0.0.1"
TOPIC = "bench/load"
TOPIC_QOS1 = "bench/load-q1"
V311 = ProtocolVersion.MQTT_3_1_1
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
AMQTT = shutil.which("amqtt") or str(Path(sys.executable).parent / "amqtt")


# --------------------------------------------------------------------------
# The load process


async def _recv_exactly(loop: asyncio.AbstractEventLoop, sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await loop.sock_recv(sock, size - len(data))
        if not chunk:
            raise ConnectionError("the broker closed the connection")
        data += chunk
    return data


async def _mqtt_connect(
    loop: asyncio.AbstractEventLoop, port: int, client_id: str
) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await loop.sock_connect(sock, (HOST, port))
    connect = ConnectPacket(
        client_id=client_id, protocol_version=V311, clean_start=True, keep_alive=0
    )
    await loop.sock_sendall(sock, encode_packet(connect, version=V311))
    connack = await _recv_exactly(loop, sock, 4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"CONNECT refused: {connack.hex()}")
    return sock


async def run_load(
    port: int, subscribers: int, messages: int, payload: int, window: int, chunk: int
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    packet = encode_packet(PublishPacket(TOPIC, bytes(payload)), version=V311)
    size = len(packet)
    target = size * messages
    subs = []
    for index in range(subscribers):
        sock = await _mqtt_connect(loop, port, f"bench-sub-{os.getpid()}-{index}")
        subscribe = SubscribePacket(1, (Subscription(TOPIC),))
        await loop.sock_sendall(sock, encode_packet(subscribe, version=V311))
        suback = await _recv_exactly(loop, sock, 5)
        if suback[0] != 0x90 or suback[4] != 0:
            raise ConnectionError(f"SUBSCRIBE refused: {suback.hex()}")
        subs.append(sock)
    publisher = await _mqtt_connect(loop, port, f"bench-pub-{os.getpid()}")

    received = [0] * subscribers
    tails = [b""] * subscribers
    progress = asyncio.Event()

    async def read(index: int, sock: socket.socket) -> None:
        buffer = bytearray(1 << 18)
        view = memoryview(buffer)
        count = 0
        while count < target:
            n = await loop.sock_recv_into(sock, buffer)
            if not n:
                raise ConnectionError("the broker closed a subscriber's connection")
            count += n
            received[index] = count
            if count >= target:
                tails[index] = bytes(view[max(0, n - size) : n])
            progress.set()

    chunk_data = packet * chunk
    start = time.perf_counter()
    cpu_start = time.process_time()
    readers = [asyncio.ensure_future(read(i, s)) for i, s in enumerate(subs)]
    sent = 0
    window_bytes = window * size
    while sent < messages:
        while sent * size - min(received) > window_bytes:
            progress.clear()
            await progress.wait()
            for reader in readers:
                if reader.done():
                    reader.result()
        count = min(chunk, messages - sent)
        await loop.sock_sendall(publisher, chunk_data if count == chunk else packet * count)
        sent += count
    await asyncio.gather(*readers)
    elapsed = time.perf_counter() - start
    load_cpu = time.process_time() - cpu_start
    exact = all(r == target for r in received) and all(t == packet for t in tails)
    for sock in [*subs, publisher]:
        sock.close()
    return {
        "elapsed": elapsed,
        "load_cpu": load_cpu,
        "delivered_per_s": subscribers * messages / elapsed,
        "published_per_s": messages / elapsed,
        "exact": exact,
    }


async def _mqtt_connect_persistent(
    loop: asyncio.AbstractEventLoop, port: int, client_id: str
) -> socket.socket:
    """A 3.1.1 connection with a persistent session (clean session 0)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await loop.sock_connect(sock, (HOST, port))
    connect = ConnectPacket(
        client_id=client_id, protocol_version=V311, clean_start=False, keep_alive=0
    )
    await loop.sock_sendall(sock, encode_packet(connect, version=V311))
    connack = await _recv_exactly(loop, sock, 4)
    if connack[0] != 0x20 or connack[3] != 0:
        raise ConnectionError(f"CONNECT refused: {connack.hex()}")
    return sock


async def run_load_qos1(
    port: int, publishers: int, subscribers: int, messages: int, payload: int, window: int
) -> dict[str, object]:
    """QoS 1: ``publishers`` x ``messages`` PUBLISH, each publisher at most
    ``window`` unacknowledged; persistent subscribers granted QoS 1 that
    acknowledge every message. Every PUBLISH a subscriber gets has the same
    size (no retransmissions happen), so the stream is cut by size and the
    packet identifiers read at a fixed offset."""
    loop = asyncio.get_running_loop()
    tag = f"{os.getpid()}-{time.monotonic_ns()}"
    # A topic of its own: the QoS 0 scenarios publish to TOPIC while these
    # persistent sessions are offline, and what they queued would come
    # before the next run's SUBACK.
    topic = TOPIC_QOS1
    sample = encode_packet(
        PublishPacket(topic, bytes(payload), QoS.AT_LEAST_ONCE, packet_id=1), version=V311
    )
    size = len(sample)
    pid_at = size - payload - 2
    total = publishers * messages
    subs = []
    for index in range(subscribers):
        # The same identifiers every run: each resumes its session (empty
        # again at the end of the previous run), so no session is left over
        # to receive the next run's messages too.
        sock = await _mqtt_connect_persistent(loop, port, f"bench-q1-sub-{index}")
        subscribe = SubscribePacket(1, (Subscription(topic, QoS.AT_LEAST_ONCE),))
        await loop.sock_sendall(sock, encode_packet(subscribe, version=V311))
        suback = await _recv_exactly(loop, sock, 5)
        if suback[0] != 0x90 or suback[4] != 1:
            raise ConnectionError(f"SUBSCRIBE refused: {suback.hex()}")
        subs.append(sock)
    pubs = [
        await _mqtt_connect(loop, port, f"bench-q1-pub-{tag}-{index}")
        for index in range(publishers)
    ]
    packets = [
        encode_packet(
            PublishPacket(topic, bytes(payload), QoS.AT_LEAST_ONCE, packet_id=pid), version=V311
        )
        for pid in range(1, 65536)
    ]
    received = [0] * subscribers

    async def subscriber(index: int, sock: socket.socket) -> None:
        pending = b""
        count = 0
        while count < total:
            data = await loop.sock_recv(sock, 1 << 18)
            if not data:
                raise ConnectionError("the broker closed a subscriber's connection")
            pending += data
            whole = len(pending) // size
            if not whole:
                continue
            puback = b"".join(
                b"\x40\x02" + pending[i * size + pid_at : i * size + pid_at + 2]
                for i in range(whole)
            )
            pending = pending[whole * size :]
            count += whole
            received[index] = count
            progress.set()
            await loop.sock_sendall(sock, puback)

    published = [0]
    progress = asyncio.Event()

    async def acks(sock: socket.socket) -> None:
        """Drain the PUBACKs (4 bytes each in 3.1.1), all of them."""
        count = 0
        while count < messages * 4:
            data = await loop.sock_recv(sock, 1 << 16)
            if not data:
                raise ConnectionError("the broker closed a publisher's connection")
            count += len(data)

    async def publisher(sock: socket.socket) -> None:
        # Bounded end to end: all publishers together stay at most
        # ``window`` x publishers messages ahead of the slowest subscriber
        # (a broker acknowledges a message when it is routed, not delivered).
        sent = next_id = 0
        limit = window * publishers
        while sent < messages:
            room = limit - (published[0] - min(received))
            if room <= 0:
                progress.clear()
                await progress.wait()
                continue
            burst = min(messages - sent, room, window)
            chunk = []
            for _ in range(burst):
                chunk.append(packets[next_id])
                next_id = (next_id + 1) % 65535
            published[0] += burst
            sent += burst
            await loop.sock_sendall(sock, b"".join(chunk))

    start = time.perf_counter()
    cpu_start = time.process_time()
    readers = [asyncio.ensure_future(subscriber(i, s)) for i, s in enumerate(subs)]
    await asyncio.gather(*(publisher(p) for p in pubs), *(acks(p) for p in pubs), *readers)
    elapsed = time.perf_counter() - start
    load_cpu = time.process_time() - cpu_start
    for sock in [*subs, *pubs]:
        sock.close()
    return {
        "elapsed": elapsed,
        "load_cpu": load_cpu,
        "delivered_per_s": subscribers * total / elapsed,
        "published_per_s": total / elapsed,
        "exact": all(r == total for r in received),
    }


def worker_main(args: argparse.Namespace) -> int:
    async def bounded() -> dict[str, object]:
        if args.qos:
            return await asyncio.wait_for(
                run_load_qos1(
                    args.port,
                    args.publishers,
                    args.subscribers,
                    args.messages,
                    args.payload,
                    args.qos_window,
                ),
                args.timeout,
            )
        return await asyncio.wait_for(
            run_load(
                args.port, args.subscribers, args.messages, args.payload, args.window, args.chunk
            ),
            args.timeout,
        )

    try:
        result = asyncio.run(bounded())
    except (TimeoutError, OSError) as exc:
        result = {"error": f"{type(exc).__name__}: {exc}"}
    print(json.dumps(result), flush=True)
    return 0


# --------------------------------------------------------------------------
# Brokers under test


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class BrokerProcess:
    def __init__(self, name: str, argv: list[str], port: int, log: Path) -> None:
        self.name = name
        self.port = port
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
            )

    def wait_ready(self, timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def cpu_seconds(self) -> float | None:
        """CPU time the broker process used so far (user + system; Linux
        /proc, else None): what a run costs the broker, whoever else shares
        the machine."""
        try:
            fields = Path(f"/proc/{self.process.pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            return None
        # utime and stime, the 14th and 15th fields (after "pid (comm)").
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_brokers(names: list[str], directory: Path) -> list[BrokerProcess]:
    brokers = []
    for name in names:
        port = free_port()
        log = directory / f"{name}.log"
        if name in ("ours", "ours-persist", "ours-gc700"):
            argv = [
                sys.executable,
                "-m",
                "mqttproto",
                "broker",
                "--host",
                HOST,
                "--port",
                str(port),
            ]
            if name == "ours-persist":
                # The durable broker, default sync mode ("normal").
                argv += ["--persist", str(directory / "ours.db")]
            elif name == "ours-gc700":
                # Python's own collector threshold instead of the broker's.
                argv += ["--gc-threshold", "700"]
        elif name == "mosquitto":
            if not os.access(MOSQUITTO, os.X_OK):
                print(f"skipping mosquitto: {MOSQUITTO} not found", file=sys.stderr)
                continue
            conf = directory / "mosquitto.conf"
            lines = [f"listener {port} {HOST}", "allow_anonymous true", "persistence false"]
            # No bound on a client's queue: with its default of 1,000 mosquitto
            # drops QoS 1 messages of the 4x4q1 scenario, which then never ends.
            lines.append("max_queued_messages 0")
            if os.getuid() == 0:
                lines.append("user root")
            conf.write_text("\n".join([*lines, "log_type error", ""]), encoding="utf-8")
            argv = [MOSQUITTO, "-c", str(conf)]
        elif name == "amqtt":
            if not os.access(AMQTT, os.X_OK):
                print(f"skipping amqtt: {AMQTT} not found (pip install amqtt)", file=sys.stderr)
                continue
            conf = directory / "amqtt.yaml"
            conf.write_text(
                "listeners:\n"
                "  default:\n"
                "    type: tcp\n"
                f"    bind: {HOST}:{port}\n"
                "plugins:\n"
                "  amqtt.plugins.authentication.AnonymousAuthPlugin:\n"
                "    allow_anonymous: true\n",
                encoding="utf-8",
            )
            argv = [AMQTT, "-c", str(conf)]
        else:
            raise SystemExit(f"unknown broker {name!r}")
        broker = BrokerProcess(name, argv, port, log)
        if broker.wait_ready():
            brokers.append(broker)
        else:
            broker.stop()
            print(f"skipping {name}: did not start; log:\n{log.read_text()}", file=sys.stderr)
    return brokers


def run_worker(
    broker: BrokerProcess,
    subscribers: int,
    messages: int,
    args: argparse.Namespace,
    *,
    publishers: int = 1,
    qos: int = 0,
) -> dict[str, object]:
    argv = [
        sys.executable,
        __file__,
        "--worker",
        *("--port", str(broker.port)),
        *("--subscribers", str(subscribers)),
        *("--publishers", str(publishers)),
        *("--qos", str(qos)),
        *("--qos-window", str(args.qos_window)),
        *("--messages", str(messages)),
        *("--payload", str(args.payload)),
        *("--window", str(args.window)),
        *("--chunk", str(args.chunk)),
        *("--timeout", str(args.timeout)),
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=args.timeout + 30, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": "load process overran its timeout"}
    try:
        result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return {"error": f"load process failed: {done.stderr.strip()[-500:]}"}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--subscribers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--publishers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--qos", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--qos-window", type=int, default=100, help="QoS 1: unacknowledged per publisher"
    )
    parser.add_argument(
        "--qos-messages", type=int, default=20_000, help="QoS 1: messages per publisher"
    )
    parser.add_argument(
        "--persist",
        action="store_true",
        help="also run ours with --persist (a SQLiteStore), as broker ours-persist",
    )
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="new broker processes for every repeat: the median is then over processes "
        "too (one process can run the same code a few per cent faster or slower than "
        "another)",
    )
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--payload", type=int, default=64, help="payload bytes")
    parser.add_argument("--window", type=int, default=20_000, help="messages in flight at most")
    parser.add_argument("--chunk", type=int, default=500, help="messages per publisher write")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--brokers", default="ours,mosquitto,amqtt")
    parser.add_argument(
        "--scenarios",
        default="1x1,1x4,4x4q1",
        help="publishers x subscribers, q1 for QoS 1 (QoS 0 runs have one publisher)",
    )
    parser.add_argument(
        "--amqtt-messages",
        type=int,
        default=None,
        help="messages per run for amqtt (default: --messages / 10; rates are comparable)",
    )
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)

    scenarios = [_scenario(text) for text in args.scenarios.split(",")]
    names = args.brokers.split(",")
    if args.persist and "ours-persist" not in names:
        names.insert(names.index("ours") + 1 if "ours" in names else 0, "ours-persist")
    with tempfile.TemporaryDirectory(prefix="mqttproto-load-") as tmp:
        brokers = start_brokers(names, Path(tmp))
        results: dict[tuple[str, str], list[float]] = {}
        #: Broker CPU µs per delivered message, per run.
        cpu: dict[tuple[str, str], list[float]] = {}
        #: Broker and load process CPU, % of one core while measured, per run.
        busy: dict[tuple[str, str], list[tuple[float, float]]] = {}
        errors: dict[tuple[str, str], list[str]] = {}
        try:
            for repeat in range(args.repeats):
                if args.fresh and repeat:
                    for broker in brokers:
                        broker.stop()
                    brokers = start_brokers(names, Path(tmp))
                if args.fresh or not repeat:
                    for broker in brokers:
                        run_worker(broker, 1, 5_000, args)  # warm-up, not counted
                for label, pubs, subs, qos in scenarios:
                    for broker in brokers:
                        if broker.name == "ours-persist" and not qos:
                            continue  # QoS 0 is never stored
                        messages = args.qos_messages if qos else args.messages
                        if broker.name == "amqtt":
                            messages = args.amqtt_messages or max(1_000, messages // 10)
                        cpu_before = broker.cpu_seconds()
                        result = run_worker(broker, subs, messages, args, publishers=pubs, qos=qos)
                        cpu_after = broker.cpu_seconds()
                        key = (broker.name, label)
                        if "error" in result or not result.get("exact"):
                            errors.setdefault(key, []).append(str(result))
                            line = f"ERROR {result}"
                        else:
                            rate = float(result["delivered_per_s"])  # type: ignore[arg-type]
                            results.setdefault(key, []).append(rate)
                            line = f"{rate:12,.0f} msg/s delivered"
                            elapsed = float(result["elapsed"])  # type: ignore[arg-type]
                            load = float(result["load_cpu"]) / elapsed * 100  # type: ignore[arg-type]
                            if cpu_before is not None and cpu_after is not None:
                                used = (cpu_after - cpu_before) / (rate * elapsed) * 1e6
                                cpu.setdefault(key, []).append(used)
                                # (The broker's CPU is read around the whole
                                # load process, connecting included: a little
                                # more than while measured.)
                                share = (cpu_after - cpu_before) / elapsed * 100
                                busy.setdefault(key, []).append((share, load))
                                line += f", broker CPU {used:6.2f} µs/msg, {share:3.0f} %"
                            line += f", load process CPU {load:3.0f} %"
                        print(
                            f"repeat {repeat + 1}/{args.repeats}  {label:<6} "
                            f"{broker.name:<12} {messages:>8} msgs  {line}",
                            flush=True,
                        )
        finally:
            for broker in brokers:
                broker.stop()

    print()
    print(
        f"MQTT 3.1.1, {args.payload}-byte payload; QoS 0 window {args.window}, QoS 1 window "
        f"{args.qos_window} per publisher (persistent subscribers); median of {args.repeats} "
        "delivered msg/s (subscribers x messages / elapsed)"
    )
    names = [b.name for b in brokers]
    header = f"{'scenario':<10}" + "".join(f"{n:>14}" for n in names)
    ratios = [(a, b) for a, b in RATIOS if a in names and b in names]
    header += "".join(f"{a + '/' + b:>24}" for a, b in ratios)
    print(header)
    for label, _, _, _ in scenarios:
        medians = {
            n: statistics.median(results[(n, label)]) for n in names if results.get((n, label))
        }
        row = f"{label:<10}" + "".join(
            f"{medians[n]:>14,.0f}" if n in medians else f"{'-':>14}" for n in names
        )
        for a, b in ratios:
            if a in medians and b in medians:
                row += f"{medians[a] / medians[b]:>24.2f}"
            else:
                row += f"{'-':>24}"
        print(row)
    if cpu:
        # Where the machine is shared (or the load generator saturates
        # first), the broker's CPU time per message says what it costs.
        print()
        print(f"broker CPU µs per delivered message, median of {args.repeats}")
        print(f"{'scenario':<10}" + "".join(f"{n:>14}" for n in names))
        for label, _, _, _ in scenarios:
            row = f"{label:<10}"
            for n in names:
                runs = cpu.get((n, label))
                row += f"{statistics.median(runs):>14.2f}" if runs else f"{'-':>14}"
            print(row)
    if busy:
        # A side at 90 % of a core or more is what bounds the run: the
        # broker, the load process (then the figure is a floor for the
        # broker), or both (2 cores: each has one).
        print()
        print(
            f"CPU % of one core while measured, broker / load process, median of "
            f"{args.repeats}; the side at 90 % or more saturated"
        )
        print(f"{'scenario':<10}" + "".join(f"{n:>22}" for n in names))
        for label, _, _, _ in scenarios:
            row = f"{label:<10}"
            for n in names:
                pairs = busy.get((n, label))
                if not pairs:
                    row += f"{'-':>22}"
                    continue
                broker_share = statistics.median(p[0] for p in pairs)
                load_share = statistics.median(p[1] for p in pairs)
                row += f"{_saturated(broker_share, load_share):>22}"
            print(row)
    for key, messages_ in errors.items():
        print(f"errors for {key[0]} {key[1]}: {messages_}", file=sys.stderr)
    return 1 if errors else 0


def _saturated(broker: float, load: float) -> str:
    """``broker% / load% side``: which of the two bounded the run."""
    sides = [name for name, share in (("broker", broker), ("load", load)) if share >= 90]
    side = " and ".join(sides) or "neither"
    return f"{broker:.0f}/{load:.0f} {side}"


#: The ratios the table shows, when both brokers ran.
RATIOS = (
    ("ours", "amqtt"),
    ("ours", "mosquitto"),
    ("ours-persist", "ours"),
    ("ours-persist", "mosquitto"),
    ("ours", "ours-gc700"),
)


def _scenario(text: str) -> tuple[str, int, int, int]:
    """``PxS`` (QoS 0) or ``PxSq1``: (label, publishers, subscribers, QoS)."""
    body, _, qos = text.partition("q")
    pubs, _, subs = body.partition("x")
    return text, int(pubs), int(subs), int(qos or 0)


if __name__ == "__main__":
    sys.exit(main())
