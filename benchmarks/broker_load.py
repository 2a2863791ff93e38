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
    SubscribePacket,
    Subscription,
    encode_packet,
)

HOST = "127.0.0.1"
TOPIC = "bench/load"
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
    exact = all(r == target for r in received) and all(t == packet for t in tails)
    for sock in [*subs, publisher]:
        sock.close()
    return {
        "elapsed": elapsed,
        "delivered_per_s": subscribers * messages / elapsed,
        "published_per_s": messages / elapsed,
        "exact": exact,
    }


def worker_main(args: argparse.Namespace) -> int:
    async def bounded() -> dict[str, object]:
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
        if name == "ours":
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
        elif name == "mosquitto":
            if not os.access(MOSQUITTO, os.X_OK):
                print(f"skipping mosquitto: {MOSQUITTO} not found", file=sys.stderr)
                continue
            conf = directory / "mosquitto.conf"
            lines = [f"listener {port} {HOST}", "allow_anonymous true", "persistence false"]
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
    broker: BrokerProcess, subscribers: int, messages: int, args: argparse.Namespace
) -> dict[str, object]:
    argv = [
        sys.executable,
        __file__,
        "--worker",
        *("--port", str(broker.port)),
        *("--subscribers", str(subscribers)),
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
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--payload", type=int, default=64, help="payload bytes")
    parser.add_argument("--window", type=int, default=20_000, help="messages in flight at most")
    parser.add_argument("--chunk", type=int, default=500, help="messages per publisher write")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--brokers", default="ours,mosquitto,amqtt")
    parser.add_argument("--scenarios", default="1x1,1x4", help="publishers x subscribers")
    parser.add_argument(
        "--amqtt-messages",
        type=int,
        default=None,
        help="messages per run for amqtt (default: --messages / 10; rates are comparable)",
    )
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main(args)

    scenarios = [int(s.split("x")[1]) for s in args.scenarios.split(",")]
    with tempfile.TemporaryDirectory(prefix="mqttproto-load-") as tmp:
        brokers = start_brokers(args.brokers.split(","), Path(tmp))
        results: dict[tuple[str, int], list[float]] = {}
        errors: dict[tuple[str, int], list[str]] = {}
        try:
            for broker in brokers:
                run_worker(broker, 1, 5_000, args)  # warm-up, not counted
            for repeat in range(args.repeats):
                for subs in scenarios:
                    for broker in brokers:
                        messages = args.messages
                        if broker.name == "amqtt":
                            messages = args.amqtt_messages or max(1_000, args.messages // 10)
                        result = run_worker(broker, subs, messages, args)
                        key = (broker.name, subs)
                        if "error" in result or not result.get("exact"):
                            errors.setdefault(key, []).append(str(result))
                            line = f"ERROR {result}"
                        else:
                            rate = float(result["delivered_per_s"])  # type: ignore[arg-type]
                            results.setdefault(key, []).append(rate)
                            line = f"{rate:12,.0f} msg/s delivered"
                        print(
                            f"repeat {repeat + 1}/{args.repeats}  1x{subs}  "
                            f"{broker.name:<10} {messages:>8} msgs  {line}",
                            flush=True,
                        )
        finally:
            for broker in brokers:
                broker.stop()

    print()
    print(
        f"QoS 0, MQTT 3.1.1, {args.payload}-byte payload, window {args.window}; "
        f"median of {args.repeats} delivered msg/s (subscribers x messages / elapsed)"
    )
    names = [b.name for b in brokers]
    header = f"{'scenario':<10}" + "".join(f"{n:>14}" for n in names)
    ratio_names = [p for p in ("amqtt", "mosquitto") if p in names and "ours" in names]
    header += "".join(f"{'ours/' + p:>18}" for p in ratio_names)
    print(header)
    for subs in scenarios:
        medians = {
            n: statistics.median(results[(n, subs)]) for n in names if results.get((n, subs))
        }
        row = f"{'1x' + str(subs):<10}" + "".join(
            f"{medians[n]:>14,.0f}" if n in medians else f"{'failed':>14}" for n in names
        )
        for peer in ratio_names:
            if "ours" in medians and peer in medians:
                row += f"{medians['ours'] / medians[peer]:>18.2f}"
            else:
                row += f"{'-':>18}"
        print(row)
    for key, messages_ in errors.items():
        print(f"errors for {key[0]} 1x{key[1]}: {messages_}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
