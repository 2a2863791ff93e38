"""Bridge benchmark: QoS 1 messages per second from an edge broker, across its
bridge, to a subscriber of a central mosquitto; ours against mosquitto's own
bridge in the same run.

Run: ``.venv/bin/python benchmarks/bridge.py`` (``--messages N --repeats R``).

What it does:

- Starts a central mosquitto (persistence off) and two edge brokers on free
  ports of 127.0.0.1, each bridged to the central one with the topic line
  ``bench/# out 1``: ours (``python -m mqttproto broker --config`` with a
  ``[[bridge]]`` table, MQTT 3.1.1 with the bridge flag, the defaults) and
  mosquitto (a ``connection`` section, its defaults). Each bridge is waited
  for on its notification topic.
- For every repeat and edge (interleaved, so machine drift affects both
  alike) one asyncio process of this file's clients (``mqttproto``'s asyncio
  ``Client``, MQTT 5): a subscriber of ``bench/#`` at QoS 1 on the central
  broker, and a publisher on the edge that keeps ``--window`` QoS 1 messages
  unacknowledged (PUBACK from the edge) at most, and at most ``--ahead``
  messages ahead of the subscriber: the measure is what crosses the bridge,
  sustained, not what the edge can queue for it (its queue for the bridge
  holds 1000 messages by default; past it the publisher would be refused).
- Measured at the subscriber: from the first publish to the last of
  ``--messages`` messages received (each counted once; a duplicate would be
  reported). The table shows the median over the repeats and the ratio.

Every wait is bounded and every process is stopped through its handle.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
MOSQUITTO = "/usr/sbin/mosquitto"
ROOT = Path(__file__).resolve().parent.parent
STATE = "$SYS/broker/connection/{}/state"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((HOST, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def mosquitto(directory: Path, name: str, lines: list[str]) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = directory / f"{name}.conf"
    config.write_text(
        "\n".join([f"listener {port} {HOST}", "allow_anonymous true", "persistence false", *lines])
        + "\n"
    )
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_port(port)
    return process, port


def ours(directory: Path, central: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    config = directory / "edge.toml"
    config.write_text(
        f'port = {port}\n[[bridge]]\nname = "central"\naddress = "{HOST}:{central}"\n'
        f'client_id = "edge-ours"\ntopics = ["bench/# out 1"]\n'
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "mqttproto", "broker", "--config", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )
    wait_port(port)
    return process, port


async def bridged(central: int, client_id: str) -> None:
    """Until the bridge of ``client_id`` says 1 on the central broker."""
    from mqttproto.adapters.asyncio import Client

    async with Client(HOST, central) as watch:
        await watch.subscribe(STATE.format(client_id), qos=1)
        async with asyncio.timeout(30):
            async for message in watch.messages():
                if message.payload == b"1":
                    return


async def run_once(
    edge: int, central: int, messages: int, window: int, ahead: int, payload: int
) -> float:
    from mqttproto.adapters.asyncio import Client

    body = b"x" * payload
    seen: set[bytes] = set()
    duplicates = 0
    async with Client(HOST, central, max_queued_messages=messages + 10) as subscriber:
        await subscriber.subscribe("bench/#", qos=1)
        async with Client(HOST, edge) as publisher:
            done = asyncio.Event()
            progress = asyncio.Event()

            async def receive() -> None:
                nonlocal duplicates
                async for message in subscriber.messages():
                    key = message.payload[:12]
                    if key in seen:
                        duplicates += 1
                    seen.add(key)
                    progress.set()
                    if len(seen) == messages:
                        done.set()
                        return

            reader = asyncio.create_task(receive())
            start = time.perf_counter()
            pending: set[asyncio.Task[None]] = set()
            for number in range(messages):
                while number - len(seen) >= ahead:
                    progress.clear()
                    async with asyncio.timeout(60):
                        await progress.wait()
                data = b"%012d" % number + body[12:]
                pending.add(asyncio.create_task(publisher.publish("bench/t", data, qos=1)))
                if len(pending) >= window:
                    _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if pending:
                await asyncio.wait(pending)
            async with asyncio.timeout(120):
                await done.wait()
            elapsed = time.perf_counter() - start
            await reader
    if duplicates:
        print(f"  ({duplicates} duplicates)")
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--ahead", type=int, default=500)
    parser.add_argument("--payload", type=int, default=64)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        processes = []
        try:
            central_process, central = mosquitto(directory, "central", [])
            processes.append(central_process)
            edge_process, edge_ours = ours(directory, central)
            processes.append(edge_process)
            edge_process, edge_mosquitto = mosquitto(
                directory,
                "edge",
                [
                    "connection edge-mosquitto",
                    f"address {HOST}:{central}",
                    "remote_clientid edge-mosquitto",
                    "topic bench/# out 1",
                ],
            )
            processes.append(edge_process)
            asyncio.run(bridged(central, "edge-ours"))
            asyncio.run(bridged(central, "edge-mosquitto"))
            results: dict[str, list[float]] = {"ours": [], "mosquitto": []}
            for repeat in range(args.repeats):
                for label, port in (("ours", edge_ours), ("mosquitto", edge_mosquitto)):
                    rate = asyncio.run(
                        run_once(
                            port, central, args.messages, args.window, args.ahead, args.payload
                        )
                    )
                    results[label].append(rate)
                    print(f"repeat {repeat + 1} {label}: {rate:,.0f} msg/s", flush=True)
        finally:
            for process in processes:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
    ours_median = statistics.median(results["ours"])
    theirs = statistics.median(results["mosquitto"])
    print(
        f"QoS 1 across a bridge to mosquitto, {args.messages} messages, median of {args.repeats}:"
    )
    print(f"  mqttproto edge   {ours_median:>10,.0f} msg/s")
    print(f"  mosquitto edge   {theirs:>10,.0f} msg/s")
    print(f"  ratio            {ours_median / theirs:>10.2f}x")


if __name__ == "__main__":
    main()
