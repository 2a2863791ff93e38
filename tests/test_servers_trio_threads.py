"""The trio and threads broker servers, on the wire.

Each test runs against both servers (``kind``): the threads server directly,
the trio server in ``trio.run`` on a helper thread. Peers: raw sockets, the
threads :class:`~mqttproto.adapters.threads.Client`, paho-mqtt over
WebSocket. Everything listens on 127.0.0.1 port 0 (or a Unix socket in a
temporary directory); every wait is bounded.
"""

from __future__ import annotations

import queue
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
import trustme
from interop import import_paho

from mqttproto import BrokerConfig, PacketReader, ProtocolVersion, QoS, encode_packet
from mqttproto.adapters import threads as threads_adapter
from mqttproto.adapters import trio as trio_adapter
from mqttproto.adapters.threads import Client, Listener
from mqttproto.packets import (
    ConnectPacket,
    PubAckPacket,
    PublishPacket,
    SubscribePacket,
    Subscription,
    Will,
)

HOST = "127.0.0.1"
WAIT = 10.0
V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0

CONNECT_V311 = bytes.fromhex("100f00044d5154540402003c0003726177")
CONNACK_ACCEPTED = bytes.fromhex("20020000")
PINGREQ = bytes.fromhex("c000")
PINGRESP = bytes.fromhex("d000")

KINDS = ["threads", "trio"]


class Served:
    """A running server of one kind; ``server`` has ``port``/``port_of``."""

    def __init__(self, kind: str, **args: Any) -> None:
        self.kind = kind
        self.args = args
        self.server: Any = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> Any:
        if self.kind == "threads":
            self.server = threads_adapter.BrokerServer(**self.args)
            self.server.start()
            return self.server
        self._thread = threading.Thread(target=self._run_trio, daemon=True)
        self._thread.start()
        assert self._ready.wait(WAIT), "the trio server did not start"
        if self._error is not None:
            raise self._error
        return self.server

    def _run_trio(self) -> None:
        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    self.server = await nursery.start(self.server_task)
                    self._ready.set()

        try:
            trio.run(main)
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    async def server_task(self, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        await trio_adapter.serve(task_status=task_status, **self.args)

    def close(self) -> None:
        if self.kind == "threads":
            self.server.close()
            return
        assert self._token is not None and self._thread is not None
        trio.from_thread.run(self.server.close, trio_token=self._token)
        self._thread.join(WAIT)
        assert not self._thread.is_alive()
        assert self._error is None, self._error

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serving(kind: str, **args: Any) -> Served:
    args.setdefault("port", 0)
    if "listeners" in args:
        args.pop("port")
    return Served(kind, **args)


def read_packet(sock: socket.socket) -> bytes:
    """One whole MQTT packet, fixed header included (the socket has a timeout)."""

    def exactly(count: int) -> bytes:
        data = b""
        while len(data) < count:
            chunk = sock.recv(count - len(data))
            if not chunk:
                raise EOFError(f"EOF after {data!r}")
            data += chunk
        return data

    header = exactly(1)
    length = shift = 0
    for _ in range(4):
        byte = exactly(1)[0]
        header += bytes([byte])
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return header + exactly(length)


def raw_connect(port: int, packet: bytes = CONNECT_V311) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    sock.sendall(packet)
    return sock


def first_message(client: Client) -> Any:
    for message in client.messages(timeout=WAIT):
        return message
    raise AssertionError("no message within the timeout")


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


# -- raw bytes -------------------------------------------------------------------


def test_connect_connack_and_ping_bytes(kind: str) -> None:
    with serving(kind) as server, raw_connect(server.port) as sock:
        assert read_packet(sock) == CONNACK_ACCEPTED
        sock.sendall(PINGREQ)
        assert read_packet(sock) == PINGRESP


def test_shutdown_sends_disconnect_0x8b_to_a_v5_client(kind: str) -> None:
    served = serving(kind)
    server = served.__enter__()
    try:
        packet = encode_packet(ConnectPacket("v5raw", V5), version=V5)
        sock = raw_connect(server.port, packet)
    except BaseException:
        served.close()
        raise
    with sock:
        connack = read_packet(sock)
        assert connack[0] == 0x20 and connack[3] == 0x00
        served.close()
        goodbye = read_packet(sock)
        assert goodbye[0] == 0xE0
        assert goodbye[2] == 0x8B  # Server shutting down
        assert sock.recv(1) == b""


# -- clients ---------------------------------------------------------------------


@pytest.mark.parametrize("version", [V311, V5], ids=["3.1.1", "5.0"])
def test_pub_sub_round_trip_at_each_qos(kind: str, version: ProtocolVersion) -> None:
    with (
        serving(kind) as server,
        Client(HOST, server.port, client_id="sub", version=version) as sub,
        Client(HOST, server.port, client_id="pub", version=version) as pub,
    ):
        sub.subscribe("rt/#", qos=2)
        for qos in (0, 1, 2):
            pub.publish(f"rt/{qos}", f"payload {qos}".encode(), qos=qos)
            message = first_message(sub)
            assert (message.topic, message.payload, message.qos) == (
                f"rt/{qos}",
                f"payload {qos}".encode(),
                qos,
            )


def test_retained_message_reaches_a_later_subscriber(kind: str) -> None:
    with serving(kind) as server:
        with Client(HOST, server.port, client_id="pub") as pub:
            pub.publish("keep/this", b"kept", qos=1, retain=True)
        with Client(HOST, server.port, client_id="late") as late:
            late.subscribe("keep/#", qos=1)
            message = first_message(late)
            assert (message.topic, message.payload, message.retain) == (
                "keep/this",
                b"kept",
                True,
            )


def test_will_is_published_when_a_client_vanishes(kind: str) -> None:
    will = Will("wills/raw", b"gone", QoS.AT_LEAST_ONCE)
    connect = encode_packet(ConnectPacket("doomed", V311, will=will), version=V311)
    with (
        serving(kind) as server,
        Client(HOST, server.port, client_id="watcher") as watcher,
    ):
        watcher.subscribe("wills/#", qos=1)
        sock = raw_connect(server.port, connect)
        assert read_packet(sock) == CONNACK_ACCEPTED
        # An abrupt close: RST, no DISCONNECT.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        sock.close()
        message = first_message(watcher)
        assert (message.topic, message.payload) == ("wills/raw", b"gone")


# -- transports ------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def test_tls_with_a_client_certificate_as_username(kind: str, ca: trustme.CA) -> None:
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca.configure_trust(server_context)
    server_context.verify_mode = ssl.CERT_REQUIRED
    listener = Listener(port=0, ssl=server_context, use_identity_as_username=True)

    def client_context(common_name: str) -> ssl.SSLContext:
        context = ssl.create_default_context()
        ca.configure_trust(context)
        ca.issue_cert(f"{common_name}.example", common_name=common_name).configure_cert(context)
        return context

    with serving(kind, listeners=[listener]) as server:
        port = server.port_of(listener)
        with (
            Client(HOST, port, client_id="s", tls=client_context("alice")) as sub,
            Client(HOST, port, client_id="p", tls=client_context("bob")) as pub,
        ):
            sub.subscribe("tls/#", qos=1)
            pub.publish("tls/x", b"secret", qos=1)
            assert first_message(sub).payload == b"secret"
            sessions = {s.client_id: s.username for s in server.broker.sessions()}
            assert sessions == {"s": "alice", "p": "bob"}
        # A plain TCP client gets no CONNACK from a TLS listener.
        with socket.create_connection((HOST, port), timeout=WAIT) as sock:
            sock.sendall(CONNECT_V311)
            with pytest.raises((EOFError, ConnectionError, OSError)):
                read_packet(sock)


def test_paho_over_websocket(kind: str) -> None:
    paho = import_paho()
    listener = Listener(transport="websocket", port=0)
    with serving(kind, listeners=[listener]) as server:
        port = server.port_of(listener)
        for protocol in (paho.MQTTv311, paho.MQTTv5):
            received: queue.Queue[tuple[str, bytes]] = queue.Queue()
            subscribed: queue.Queue[int] = queue.Queue()
            client = paho.Client(
                paho.CallbackAPIVersion.VERSION2,
                client_id=f"paho-ws-{protocol}",
                transport="websockets",
                protocol=protocol,
            )
            client.ws_set_options(path="/mqtt")
            client.on_message = lambda c, u, m, got=received: got.put((m.topic, m.payload))
            client.on_subscribe = lambda c, u, mid, codes, props, acks=subscribed: acks.put(mid)
            client.connect(HOST, port, keepalive=30)
            client.loop_start()
            try:
                client.subscribe("ws/#", qos=1)
                subscribed.get(timeout=WAIT)
                client.publish("ws/one", b"first", qos=1).wait_for_publish(timeout=WAIT)
                client.publish("ws/two", b"x" * 70000, qos=0)
                got = [received.get(timeout=WAIT), received.get(timeout=WAIT)]
            finally:
                client.disconnect()
                client.loop_stop()
            assert got == [("ws/one", b"first"), ("ws/two", b"x" * 70000)]


def test_websocket_refuses_a_wrong_path(kind: str) -> None:
    listener = Listener(transport="websocket", port=0, websocket_path="/mqtt")
    request = (
        b"GET /other HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
    )
    with (
        serving(kind, listeners=[listener]) as server,
        socket.create_connection((HOST, server.port_of(listener)), timeout=WAIT) as sock,
    ):
        sock.sendall(request)
        answer = b""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 404")


def test_unix_socket(kind: str, tmp_path: Path) -> None:
    path = str(tmp_path / "mqtt.sock")
    with (
        serving(kind, listeners=[Listener(transport="unix", path=path)]),
        Client(path, client_id="us", transport="unix") as sub,
        Client(path, client_id="up", transport="unix") as pub,
    ):
        sub.subscribe("unix/#", qos=1)
        pub.publish("unix/x", b"local", qos=1)
        assert first_message(sub).payload == b"local"
    assert not Path(path).exists()


# -- back-pressure ---------------------------------------------------------------


@contextmanager
def slow_subscriber(port: int) -> Iterator[socket.socket]:
    """A raw 3.1.1 subscriber to ``flood/#`` with a tiny receive buffer that never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(WAIT)
    try:
        sock.connect((HOST, port))
        sock.sendall(CONNECT_V311)
        assert read_packet(sock) == CONNACK_ACCEPTED
        subscribe = SubscribePacket(1, [Subscription("flood/#", QoS.AT_MOST_ONCE)])
        sock.sendall(encode_packet(subscribe, version=V311))
        assert read_packet(sock)[0] == 0x90
        yield sock
    finally:
        sock.close()


def test_a_slow_consumer_is_dropped_and_others_keep_working(kind: str) -> None:
    limit = 64 * 1024
    with (
        serving(kind, max_buffered_output=limit) as server,
        slow_subscriber(server.port) as slow,
        Client(HOST, server.port, client_id="fast") as fast,
        Client(HOST, server.port, client_id="flooder") as flooder,
    ):
        fast.subscribe("done", qos=1)
        chunk = b"z" * 16384
        # Far more than the socket buffers and the limit can hold (bounded).
        for _ in range(400):
            flooder.publish("flood/x", chunk, qos=0)
        flooder.publish("done", b"still here", qos=1)
        assert first_message(fast).payload == b"still here"
        # The slow subscriber's connection was closed: draining it ends in
        # EOF or a reset, well before everything published could arrive.
        total = 0
        deadline = time.monotonic() + WAIT
        ended = False
        while time.monotonic() < deadline:
            try:
                data = slow.recv(65536)
            except ConnectionResetError:
                ended = True
                break
            if not data:
                ended = True
                break
            total += len(data)
        assert ended
        assert total < 400 * len(chunk)


def test_a_slow_reader_is_held_by_the_core_and_loses_no_qos1(kind: str) -> None:
    """With the core's high-water mark below the drop limit, a subscriber that
    stops reading stays connected: the server reports its backlog, the core
    drops QoS 0 messages for it and queues QoS 1 ones; once it reads again,
    every QoS 1 message arrives, in order."""
    config = BrokerConfig(max_unsent_bytes=512 * 1024)
    with serving(kind, config=config) as server:
        lazy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lazy.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        lazy.settimeout(WAIT)
        with lazy, Client(HOST, server.port, client_id="flooder") as flooder:
            lazy.connect((HOST, server.port))
            connect = ConnectPacket("lazy", clean_start=False, keep_alive=0, protocol_version=V311)
            lazy.sendall(encode_packet(connect, version=V311))
            assert read_packet(lazy) == bytes.fromhex("20020000")
            subscribe = SubscribePacket(1, [Subscription("flood/#", QoS.AT_LEAST_ONCE)])
            lazy.sendall(encode_packet(subscribe, version=V311))
            assert read_packet(lazy)[0] == 0x90
            chunk = b"z" * 16384
            # 13 MB of QoS 0 for a client that reads nothing, 40 QoS 1 among it.
            marks = [b"q%02d" % i for i in range(40)]
            for i in range(800):
                flooder.publish("flood/x", chunk, qos=0)
                if i % 20 == 19:
                    flooder.publish("flood/q", marks[i // 20], qos=1)
            sessions = {info.client_id: info for info in server.broker.sessions()}
            assert sessions["lazy"].connected
            assert sessions["lazy"].queued > 0  # held by the core, not dropped
            # It reads again: every QoS 1 message arrives, in order.
            reader = PacketReader(version=V311)
            got: list[bytes] = []
            flood = 0
            deadline = time.monotonic() + WAIT
            while len(got) < len(marks) and time.monotonic() < deadline:
                for packet in reader.feed(lazy.recv(65536)):
                    assert isinstance(packet, PublishPacket)
                    if packet.qos:
                        got.append(packet.payload)
                        lazy.sendall(encode_packet(PubAckPacket(packet.packet_id), version=V311))
                    else:
                        flood += 1
            assert got == marks
            assert flood < 800  # QoS 0 messages were dropped while it did not read
