"""What an idle connection costs, and the accept queue of a busy listener.

- The broker process (``python -m mqttproto broker``) with 2,000 idle MQTT 5
  clients, one subscription each: its RSS grows by a bounded amount per
  connection (``benchmarks/broker_memory.py --rss`` measures it at 10,000,
  with mosquitto).
- The sans-IO core: the Python heap an idle connection, and a session whose
  queue has drained, keep (``tracemalloc``).
- ``--backlog`` / ``Listener(backlog=...)``: the listening socket's accept
  queue, as the kernel reports it (``ss``), and the errors of a bad value.
"""

from __future__ import annotations

import gc
import resource
import shutil
import socket
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest
from test_interop_broker import ProcessBroker

from mqttproto import (
    ConnectPacket,
    ProtocolVersion,
    PublishPacket,
    QoS,
    SubscribePacket,
    Subscription,
    encode_packet,
)
from mqttproto.adapters.asyncio import Listener
from mqttproto.broker import Broker
from mqttproto.cli import main
from mqttproto.client import ClientConnection

HOST = "127.0.0.1"
V5 = ProtocolVersion.MQTT_5_0
NOW = 0.0


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _read_answers(sock: socket.socket, count: int) -> bytes:
    """Read until ``count`` packets (small ones: one length byte) are in."""
    data = b""
    while True:
        pos = seen = 0
        while pos + 2 <= len(data):
            pos += 2 + data[pos + 1]
            seen += 1
        if seen >= count and pos <= len(data):
            return data
        chunk = sock.recv(4096)
        assert chunk, "the broker closed the connection"
        data += chunk


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_an_idle_connection_costs_the_broker_process_under_7_kib() -> None:
    """2,000 idle MQTT 5 clients with one subscription each; the broker's
    RSS before and after. Each CONNACK and SUBACK is checked."""
    count = 2000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count + 100:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, count + 200), hard))
    with ProcessBroker("--max-connections", str(count + 10)) as broker:
        assert broker.process is not None
        sockets: list[socket.socket] = []
        try:
            # One client first: what start-up allocates lazily is not counted.
            for warm_up in range(2):
                sock = socket.create_connection((HOST, broker.port), timeout=10)
                sock.sendall(_hello(f"warm{warm_up}"))
                _read_answers(sock, 2)
                sockets.append(sock)
            before = _rss_kib(broker.process.pid)
            for n in range(count):
                sock = socket.create_connection((HOST, broker.port), timeout=10)
                sock.sendall(_hello(f"idle{n}"))
                sockets.append(sock)
            for sock in sockets[2:]:
                answers = _read_answers(sock, 2)
                assert answers[:1] == b"\x20" and answers[3] == 0  # CONNACK, success
                assert answers[-6:] == b"\x90\x04\x00\x01\x00\x00"  # SUBACK, QoS 0
            after = _rss_kib(broker.process.pid)
        finally:
            for sock in sockets:
                sock.close()
    per_connection = (after - before) / count
    print(f"broker RSS: {before} KiB -> {after} KiB, {per_connection:.2f} KiB per connection")
    # 8.8 KiB before idle connections stopped holding empty deques and
    # their handled packets; 5 to 6 KiB since.
    assert per_connection < 7.0, per_connection


def _hello(client_id: str) -> bytes:
    return encode_packet(
        ConnectPacket(client_id=client_id, keep_alive=600), version=V5
    ) + encode_packet(SubscribePacket(1, [Subscription(f"devices/{client_id}/cmd")]), version=V5)


def _client(broker: Broker, client_id: str, topic_filter: str) -> tuple[int, ClientConnection]:
    client = ClientConnection(V5)
    conn = broker.open_connection(NOW)
    client.connect(
        client_id=client_id, keep_alive=60, clean_start=False, session_expiry_interval=60
    )
    broker.receive_data(conn, client.data_to_send(NOW), NOW)
    client.receive_data(broker.data_to_send(conn, NOW), NOW)
    client.subscribe([Subscription(topic_filter, QoS.AT_LEAST_ONCE)])
    broker.receive_data(conn, client.data_to_send(NOW), NOW)
    client.receive_data(broker.data_to_send(conn, NOW), NOW)
    list(client.events())
    return conn, client


def _heap_per_client(count: int, work: object) -> float:
    assert callable(work)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = work()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / count


def test_an_idle_connection_keeps_under_3_kb_of_python_heap_in_the_core() -> None:
    """1,000 MQTT 5 clients connected with one subscription each, idle.
    (6.9 kB when each still held two empty deques and its handled packets;
    4.2 kB with its empty tables; about 2.5 kB since: see test_memory_layout.)"""
    _heap_per_client(10, lambda: _connect_many(Broker(), 10))  # lazy imports, caches
    broker = Broker()
    per_client = _heap_per_client(1000, lambda: _connect_many(broker, 1000))
    assert per_client < 3000, per_client


def _connect_many(broker: Broker, count: int) -> list[int]:
    """The clients' side is let go: only the broker's is counted."""
    return [_client(broker, f"c{n}", f"devices/c{n}/cmd")[0] for n in range(count)]


def test_a_drained_queue_is_given_back() -> None:
    """A client sent 250 QoS 1 messages, 150 more than its window (100)
    holds, that acknowledged them all keeps no more heap than before: the
    queue and the in-flight tables the burst needed are released once
    drained. Every message arrived once, in order."""
    broker = Broker()
    conn, client = _client(broker, "sub", "load/#")
    pub = broker.open_connection(NOW)
    publisher = ClientConnection(V5)
    publisher.connect(client_id="pub", keep_alive=0)
    broker.receive_data(pub, publisher.data_to_send(NOW), NOW)
    broker.flush(NOW)

    received: list[bytes] = []

    def one_round() -> None:
        data = b"".join(
            encode_packet(
                PublishPacket("load/x", b"%d" % i, QoS.AT_LEAST_ONCE, packet_id=i + 1), version=V5
            )
            for i in range(250)
        )
        broker.receive_data(pub, data, NOW)
        for _ in range(10):
            output = dict(broker.flush(NOW))
            if conn not in output:
                break
            client.receive_data(output[conn], NOW)
            for event in client.events():
                received.append(event.payload)  # type: ignore[attr-defined]
            broker.receive_data(conn, client.data_to_send(NOW), NOW)

    one_round()  # the first round makes what stays (the packet-id table...)
    assert received == [b"%d" % i for i in range(250)]
    received.clear()
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        one_round()
        delivered = received == [b"%d" % i for i in range(250)]
        received.clear()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert delivered
    # The 150 messages that waited needed a queue (760 bytes and more), and
    # the 100 in flight tables of 9 kB each: all given back, nothing grew.
    assert after - before < 1024, after - before


# -- the accept queue -------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
def test_backlog_sets_the_listening_sockets_accept_queue() -> None:
    """``--backlog 1000``: the kernel reports 1000 as the listener's Send-Q
    (the queue's size); without it, asyncio's 100."""
    for args, expected in ((("--backlog", "1000"), "1000"), ((), "100")):
        with ProcessBroker(*args) as broker:
            listing = subprocess.run(
                ["ss", "-ltnH", f"sport = :{broker.port}"],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.split()
            # State, Recv-Q, Send-Q (the backlog), local address, peer.
            assert listing[0] == "LISTEN", listing
            assert listing[2] == expected, listing


def test_a_bad_backlog_exits_1_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text("backlog = 0\n", encoding="utf-8")
    assert main(["broker", "--port", "0", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err == "mqttproto broker: backlog must be at least 1, not 0\n"
    result = subprocess.run(
        [sys.executable, "-m", "mqttproto", "broker", "--backlog", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("mqttproto broker: error: argument --backlog")
    with pytest.raises(ValueError, match="backlog must be at least 1, not -5"):
        Listener(backlog=-5)
