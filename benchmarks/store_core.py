"""Benchmark of the sans-IO broker core on a durable store: QoS 1 through
persistent sessions, in memory and on a :class:`~mqttproto.store.SQLiteStore`.

The ``4x4q1`` scenario of ``broker_load.py`` without the sockets: four
MQTT 3.1.1 publishers, four persistent subscribers (clean session 0)
granted QoS 1 (a window of 100 messages in flight each). Each step feeds
the PUBACKs of half of the subscribers (in turn) for all they got, then
``--batch`` messages (spread over the publishers), and takes every output
with ``Broker.flush`` (on the SQLite store: the group commit, one
transaction): what one event-loop iteration of the servers does, the
subscribers not in step with each other, the publishers at most 400
messages ahead of the slowest of them (as in ``broker_load.py``). The result is µs per message (routed to four
sessions, delivered and acknowledged), median of ``--repeats`` runs, each
with the garbage collector on.

Run: ``python benchmarks/store_core.py [--batch 100] [--messages 20000]``;
``--profile`` prints a cProfile of one SQLite run instead.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mqttproto import (  # noqa: E402
    ProtocolVersion,
    PublishPacket,
    QoS,
    SQLiteStore,
    Subscription,
    encode_packet,
)
from mqttproto.broker import Broker  # noqa: E402
from mqttproto.client import ClientConnection  # noqa: E402
from mqttproto.codec import codec_implementation  # noqa: E402

sys.path.insert(0, str(ROOT / "benchmarks"))
from broker_core import _pubacks  # noqa: E402

V311 = ProtocolVersion.MQTT_3_1_1
TOPIC = "bench/load"
#: Messages the publishers keep ahead of the slowest subscriber, together.
WINDOW = 400


def _connect(broker: Broker, name: str, now: float, *, persistent: bool) -> int:
    client = ClientConnection(V311)
    conn = broker.open_connection(now)
    client.connect(client_id=name, keep_alive=0, clean_start=not persistent)
    broker.receive_data(conn, client.data_to_send(now), now)
    client.receive_data(broker.data_to_send(conn, now), now)
    list(client.events())
    if persistent:
        client.subscribe([Subscription(TOPIC, QoS.AT_LEAST_ONCE)])
        broker.receive_data(conn, client.data_to_send(now), now)
        broker.flush(now)
    return conn


def run(store_dir: str | None, messages: int, batch: int) -> float:
    """µs per message through a broker (on a SQLite store in ``store_dir``)."""
    store = None if store_dir is None else SQLiteStore(Path(store_dir) / "bench.db")
    broker = Broker(store=store)
    now = 0.0
    subs = {_connect(broker, f"sub{i}", now, persistent=True) for i in range(4)}
    pubs = [_connect(broker, f"pub{i}", now, persistent=False) for i in range(4)]
    payload = b"x" * 64
    # The n-th message is its publisher's n // 4-th.
    packets = [
        encode_packet(
            PublishPacket(TOPIC, payload, QoS.AT_LEAST_ONCE, packet_id=(n // 4) % 65535 + 1),
            version=V311,
        )
        for n in range(messages)
    ]
    # What each subscriber received and has not acknowledged, and how many
    # it acknowledged. As over a network, the subscribers are not in step
    # with each other nor with the publishers: each acknowledges in every
    # other step, half of them in the even steps, half in the odd ones,
    # before the step's messages come. The publishers keep at most WINDOW
    # messages ahead of the slowest subscriber (as broker_load.py does).
    unacked = dict.fromkeys(subs, b"")
    acked = dict.fromkeys(subs, 0)
    turn = {conn: index % 2 for index, conn in enumerate(sorted(subs))}
    published = step = 0
    start = time.perf_counter()
    while published < messages or any(unacked.values()):
        for conn, data in unacked.items():
            if data and (turn[conn] == step % 2 or published == messages):
                broker.receive_data(conn, data, now)
                acked[conn] += len(data) // 4
                unacked[conn] = b""
        count = min(batch, messages - published, WINDOW - (published - min(acked.values())))
        for index, conn in enumerate(pubs):
            mine = packets[published + index : published + count : len(pubs)]
            if mine:
                broker.receive_data(conn, b"".join(mine), now)
        published += count
        for conn, data in broker.flush(now):
            if conn in subs:
                unacked[conn] += _pubacks(data)
        step += 1
    elapsed = time.perf_counter() - start
    sent = broker.messages_sent
    if store is not None:
        store.close()
    assert sent == 4 * messages, sent
    return elapsed / messages * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=100, help="messages per step at most")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--only", choices=["memory", "sqlite"])
    args = parser.parse_args()
    if args.profile:
        with tempfile.TemporaryDirectory() as tmp:
            profiler = cProfile.Profile()
            profiler.runcall(run, tmp, args.messages, args.batch)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    memory: list[float] = []
    sqlite: list[float] = []
    for _ in range(args.repeats):
        if args.only != "sqlite":
            memory.append(run(None, args.messages, args.batch))
        if args.only != "memory":
            with tempfile.TemporaryDirectory() as tmp:
                sqlite.append(run(tmp, args.messages, args.batch))
    print(f"codec: {codec_implementation()}, {args.batch} messages per commit")
    if memory:
        print(f"  in memory: {statistics.median(memory):6.2f} us/message")
    if sqlite:
        print(f"  SQLite:    {statistics.median(sqlite):6.2f} us/message")
    if memory and sqlite:
        print(f"  ratio:     {statistics.median(memory) / statistics.median(sqlite):6.2f}")


if __name__ == "__main__":
    main()
