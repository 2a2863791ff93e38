"""The asyncio server's own transport for listeners without TLS
(``mqttproto/adapters/_asyncio_tcp.py``), on the wire: back-pressure on a
publisher that does not read (reading stops, resumes, nothing is lost), a
peer reset while output waits for it, the peer's EOF, a Unix socket, and
the same server on asyncio's transports where there is no epoll.

Every wait is bounded (``run``'s timeout, ``wait_until``'s deadline); the
servers are closed in ``finally``.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mqttproto import ProtocolVersion, QoS, encode_packet
from mqttproto.adapters.asyncio import BrokerServer, Listener, start_server
from mqttproto.packets import (
    ConnectPacket,
    PublishPacket,
    SubscribePacket,
    Subscription,
    Will,
)

T = TypeVar("T")
HOST = "127.0.0.1"
V5 = ProtocolVersion.MQTT_5_0

CONNACK, PUBLISH, PUBACK, SUBACK = 0x20, 0x30, 0x40, 0x90


def run(factory: Callable[[], Coroutine[Any, Any, T]], timeout: float = 60.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), timeout)

    return asyncio.run(bounded())


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


def connect(client_id: str, **kwargs: Any) -> bytes:
    return encode_packet(ConnectPacket(client_id, **kwargs), version=V5)


def subscribe(topic_filter: str, qos: QoS = QoS.AT_LEAST_ONCE) -> bytes:
    return encode_packet(SubscribePacket(1, [Subscription(topic_filter, qos)]), version=V5)


def publish(topic: str, payload: bytes, packet_id: int | None = None) -> bytes:
    qos = QoS.AT_MOST_ONCE if packet_id is None else QoS.AT_LEAST_ONCE
    return encode_packet(PublishPacket(topic, payload, qos, packet_id=packet_id), version=V5)


class PacketReader:
    """Whole MQTT packets (first byte, body) out of a non-blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def _take(self) -> tuple[int, bytes] | None:
        buffer = self.buffer
        length = shift = 0
        for pos in range(1, min(len(buffer), 5)):
            length |= (buffer[pos] & 0x7F) << shift
            shift += 7
            if not buffer[pos] & 0x80:
                end = pos + 1 + length
                if len(buffer) < end:
                    return None
                packet = buffer[0], bytes(buffer[pos + 1 : end])
                del buffer[:end]
                return packet
        return None

    async def packet(self) -> tuple[int, bytes] | None:
        """The next packet; None at the end of the stream."""
        loop = asyncio.get_running_loop()
        while True:
            found = self._take()
            if found is not None:
                return found
            chunk = await loop.sock_recv(self.sock, 65536)
            if not chunk:
                return None
            self.buffer += chunk


async def open_socket(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (HOST, port))
    return sock


async def client(port: int, client_id: str, *extra: bytes, **kwargs: Any) -> PacketReader:
    """A connected MQTT 5 client (CONNACK read), ``extra`` sent after the CONNECT."""
    sock = await open_socket(port)
    await asyncio.get_running_loop().sock_sendall(
        sock, connect(client_id, **kwargs) + b"".join(extra)
    )
    reader = PacketReader(sock)
    first = await reader.packet()
    assert first is not None and first[0] == CONNACK and first[1][1] == 0
    return reader


def puback_for(body: bytes) -> bytes:
    """The PUBACK that answers a QoS 1 PUBLISH body."""
    topic_end = 2 + struct.unpack("!H", body[:2])[0]
    return bytes([PUBACK, 2]) + body[topic_end : topic_end + 2]


def payload_of(body: bytes, qos: int) -> bytes:
    """The payload of a PUBLISH body with no properties but the length byte."""
    topic_end = 2 + struct.unpack("!H", body[:2])[0]
    pos = topic_end + (2 if qos else 0)
    return body[pos + 1 :]  # the v5 property length is 0


def test_a_publisher_that_does_not_read_is_paused_and_resumed_without_loss() -> None:
    """A publisher subscribed to its own topic that stops reading: its output
    grows, the broker stops reading from it, and once it reads again the
    broker resumes; it and another subscriber get every message, in order."""
    count, size = 800, 16384

    async def scenario() -> tuple[list[bytes], list[bytes], int]:
        server = await start_server(HOST, 0)
        loop = asyncio.get_running_loop()
        try:
            port = server.port
            watcher = await client(port, "watcher", subscribe("echo/#"))
            assert (await watcher.packet() or (0,))[0] == SUBACK
            sock = await open_socket(port, rcvbuf=4096)
            # QoS 0: not bounded by the in-flight window; 13 MB stays below
            # max_unsent_bytes (16 MB), where the core would drop QoS 0.
            await loop.sock_sendall(sock, connect("talker") + subscribe("echo/#", QoS.AT_MOST_ONCE))
            talker = PacketReader(sock)
            assert (await talker.packet() or (0,))[0] == CONNACK
            assert (await talker.packet() or (0,))[0] == SUBACK
            peer = server._peers[max(server._peers)]  # the talker's, opened last
            messages = [b"%05d" % n + b"x" * (size - 5) for n in range(count)]
            stream = b"".join(
                publish("echo/t", message, n + 1) for n, message in enumerate(messages)
            )
            sending = asyncio.create_task(loop.sock_sendall(sock, stream))
            await wait_until(lambda: peer.paused, "the broker to stop reading the talker")
            got: list[bytes] = []
            acks = 0
            while len(got) < count or acks < count:
                packet = await talker.packet()
                assert packet is not None
                kind = packet[0] & 0xF0
                if kind == PUBACK:
                    acks += 1
                elif kind == PUBLISH:
                    qos = (packet[0] >> 1) & 3
                    got.append(payload_of(packet[1], qos))
                    if qos:
                        await loop.sock_sendall(sock, puback_for(packet[1]))
            await sending
            seen: list[bytes] = []
            while len(seen) < count:
                packet = await watcher.packet()
                assert packet is not None
                if packet[0] & 0xF0 == PUBLISH:
                    qos = (packet[0] >> 1) & 3
                    seen.append(payload_of(packet[1], qos))
                    if qos:
                        await loop.sock_sendall(watcher.sock, puback_for(packet[1]))
            return got, seen, int(peer.paused)
        finally:
            await server.close()

    got, seen, paused = run(scenario)
    expected = [b"%05d" % n + b"x" * (size - 5) for n in range(count)]
    assert got == expected
    assert seen == expected
    assert not paused


def test_a_reset_while_output_waits_ends_the_connection_cleanly() -> None:
    """A subscriber that does not read has output waiting in the broker,
    then resets: the connection ends as lost (its will is published), and
    the broker serves on."""

    async def scenario() -> tuple[bytes, int]:
        server = await start_server(HOST, 0)
        loop = asyncio.get_running_loop()
        try:
            port = server.port
            heir = await client(port, "heir", subscribe("wills/#"))
            assert (await heir.packet() or (0,))[0] == SUBACK
            sock = await open_socket(port, rcvbuf=4096)
            will = Will("wills/sink", b"sink is gone", QoS.AT_LEAST_ONCE)
            await loop.sock_sendall(
                sock, connect("sink", will=will) + subscribe("flood/#", QoS.AT_MOST_ONCE)
            )
            sink = PacketReader(sock)
            assert (await sink.packet() or (0,))[0] == CONNACK
            peer = server._peers[max(server._peers)]  # the sink's, opened last
            pub = await client(port, "pub")
            chunk = publish("flood/x", b"f" * 16384) * 8
            for _ in range(400):  # bounded: at most 52 MB
                if peer.unsent():
                    break
                await loop.sock_sendall(pub.sock, chunk)
                await asyncio.sleep(0.001)
            assert peer.unsent() > 0  # output waits for the sink
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()  # a reset
            packet = None
            while packet is None or packet[0] & 0xF0 != PUBLISH:
                packet = await heir.packet()
                assert packet is not None
            await wait_until(lambda: peer.conn not in server._peers, "the sink to be gone")
            # Served on: a new client connects and subscribes.
            late = await client(port, "late", subscribe("x"))
            assert (await late.packet() or (0,))[0] == SUBACK
            return payload_of(packet[1], (packet[0] >> 1) & 3), server.connection_count
        finally:
            await server.close()

    will_payload, connections = run(scenario)
    assert will_payload == b"sink is gone"
    assert connections == 3  # heir, pub, late


def test_a_client_that_closes_its_side_gets_its_answers_then_the_end() -> None:
    """CONNECT, SUBSCRIBE and a QoS 1 PUBLISH, then the client's FIN in the
    same breath: the message is routed, the answers come back, then the
    broker's end of the stream; without a DISCONNECT the will goes out."""

    async def scenario() -> tuple[list[int], bytes, bytes]:
        server = await start_server(HOST, 0)
        loop = asyncio.get_running_loop()
        try:
            port = server.port
            other = await client(port, "other", subscribe("news/#"))
            assert (await other.packet() or (0,))[0] == SUBACK
            sock = await open_socket(port)
            will = Will("news/will", b"bye", QoS.AT_MOST_ONCE)
            await loop.sock_sendall(
                sock,
                connect("brief", will=will) + subscribe("mine") + publish("news/a", b"hello", 7),
            )
            sock.shutdown(socket.SHUT_WR)
            reader = PacketReader(sock)
            kinds = []
            for _ in range(10):
                packet = await reader.packet()
                if packet is None:
                    break
                kinds.append(packet[0] & 0xF0)
            payloads = []
            while len(payloads) < 2:
                packet = await other.packet()
                assert packet is not None
                if packet[0] & 0xF0 == PUBLISH:
                    payloads.append(payload_of(packet[1], (packet[0] >> 1) & 3))
            sock.close()
            return kinds, payloads[0], payloads[1]
        finally:
            await server.close()

    kinds, message, will = run(scenario)
    assert kinds == [CONNACK, SUBACK, PUBACK]  # and then the end of the stream
    assert message == b"hello"
    assert will == b"bye"


@pytest.mark.parametrize("slim", [True, False], ids=["own-transport", "asyncio-transports"])
def test_pub_sub_over_tcp_and_a_unix_socket(tmp_path: Path, slim: bool, monkeypatch: Any) -> None:
    """The same server on its own transport and, where there is no epoll,
    on asyncio's: a message from a TCP client to a Unix socket client."""
    monkeypatch.setattr(BrokerServer, "_slim", slim)
    path = str(tmp_path / "mqtt.sock")

    async def scenario() -> bytes:
        server = BrokerServer(listeners=[Listener(port=0), Listener(transport="unix", path=path)])
        await server.start()
        loop = asyncio.get_running_loop()
        try:
            assert (server._mux is not None) == slim
            local = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            local.setblocking(False)
            await loop.sock_connect(local, path)
            await loop.sock_sendall(local, connect("local") + subscribe("x/#"))
            reader = PacketReader(local)
            assert (await reader.packet() or (0,))[0] == CONNACK
            assert (await reader.packet() or (0,))[0] == SUBACK
            remote = await client(server.port, "remote")
            await loop.sock_sendall(remote.sock, publish("x/y", b"across"))
            packet = await reader.packet()
            assert packet is not None and packet[0] & 0xF0 == PUBLISH
            local.close()
            remote.sock.close()
            return payload_of(packet[1], (packet[0] >> 1) & 3)
        finally:
            await server.close()

    assert run(scenario) == b"across"
    assert not Path(path).exists()


def test_a_listener_out_of_descriptors_pauses_then_accepts_again(
    monkeypatch: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """accept() failing with EMFILE does not spin: the listener stops
    watching its socket, says so, and accepts the waiting client later."""
    from mqttproto.adapters import _asyncio_tcp

    monkeypatch.setattr(_asyncio_tcp, "ACCEPT_RETRY_DELAY", 0.05)

    class OutOfDescriptors:
        """A listening socket whose first accept() fails with EMFILE."""

        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock
            self.failures = 0

        def fileno(self) -> int:
            return self.sock.fileno()

        def accept(self) -> tuple[socket.socket, Any]:
            if not self.failures:
                self.failures += 1
                raise OSError(errno.EMFILE, "Too many open files")
            return self.sock.accept()

        def close(self) -> None:
            self.sock.close()

    async def scenario() -> tuple[int, list[str]]:
        loop = asyncio.get_running_loop()
        real = socket.socket()
        real.bind((HOST, 0))
        real.listen(8)
        real.setblocking(False)
        wrapped = OutOfDescriptors(real)
        accepted: list[socket.socket] = []
        listening = _asyncio_tcp.TcpListening(
            loop,
            Listener(port=0),
            [wrapped],  # type: ignore[list-item]
            lambda listener, sock, address: accepted.append(sock),
        )
        listening.start()
        try:
            sock = await open_socket(real.getsockname()[1])
            await wait_until(lambda: bool(accepted), "the client to be accepted")
            sock.close()
            for client_sock in accepted:
                client_sock.close()
            return wrapped.failures, [r.getMessage() for r in caplog.records]
        finally:
            listening.close()

    with caplog.at_level("ERROR", logger="mqttproto.broker"):
        failures, messages = run(scenario)
    assert failures == 1
    assert any("accept() failed on TCP" in m and "retrying" in m for m in messages)
