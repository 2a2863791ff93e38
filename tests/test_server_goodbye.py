"""The goodbye a client can read: after a DISCONNECT with a reason code the
servers half-close and drain instead of resetting the connection.

Closing a socket whose input was not read makes the kernel answer with a
reset, and a client that gets the reset may never read the DISCONNECT before
it (Paho's ``test_flow_control2``: *connection reset* instead of 0x93). The
shared driver (``mqttproto/adapters/_driver.py``) half-closes after the
goodbye, reads and throws away what the client still sends, and closes when
the client does, or after ``close_timeout`` or ``LINGER_BYTES``.

Each test runs against the asyncio, threads and trio servers, with a raw
socket client on 127.0.0.1; every wait is bounded.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from test_interop_broker import ThreadedBroker
from test_servers_trio_threads import HOST, WAIT, read_packet, serving

from mqttproto import BrokerConfig, ProtocolVersion, QoS, encode_packet
from mqttproto.adapters._driver import LINGER_BYTES
from mqttproto.packets import ConnectPacket, PublishPacket, SubscribePacket, Subscription

V5 = ProtocolVersion.MQTT_5_0
CONFIG = BrokerConfig(receive_maximum=2)


@contextmanager
def server_of(kind: str, **args: Any) -> Iterator[int]:
    """The port of a running server of ``kind`` with ``args``."""
    if kind == "asyncio":
        with ThreadedBroker(**args) as broker:
            yield broker.port
    else:
        with serving(kind, **args) as server:
            yield server.port


def publish(packet_id: int) -> bytes:
    return encode_packet(
        PublishPacket("q", b"x" * 100, QoS.EXACTLY_ONCE, packet_id=packet_id), version=V5
    )


def connected(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    sock.sendall(encode_packet(ConnectPacket("goodbye"), version=V5))
    connack = read_packet(sock)
    assert connack[0] == 0x20 and connack[3] == 0
    return sock


def is_disconnect_0x93(packet: bytes) -> bool:
    return packet[0] == 0xE0 and packet[2] == 0x93


def keep_sending(sock: socket.socket, burst: bytes, stop: threading.Event) -> None:
    """Send ``burst``, then 20 more QoS 2 PUBLISH packets (all of them past
    the Receive Maximum), one every 10 ms; stop at the first error."""
    try:
        sock.sendall(burst)
        for packet_id in range(100, 120):
            if stop.wait(0.01):
                return
            sock.sendall(publish(packet_id))
    except OSError:
        return


def read_until_eof(sock: socket.socket) -> list[bytes]:
    """Every packet until EOF (ECONNRESET or a timeout raises)."""
    packets = []
    for _ in range(1000):
        try:
            packets.append(read_packet(sock))
        except EOFError as eof:
            assert str(eof) == "EOF after b''", eof
            return packets
    raise AssertionError("more than 1000 packets")


@pytest.fixture(params=["asyncio", "threads", "trio"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_receive_maximum_exceeded_is_read_not_reset(kind: str) -> None:
    """[MQTT-3.3.4-9]: the third QoS 2 PUBLISH over Receive Maximum 2 gets
    DISCONNECT 0x93, and a busy client reads it, then EOF.

    The client is the kind that loses a goodbye to a reset: it has 1 MB of
    its own messages coming back to it through a small receive buffer, reads
    late, and goes on publishing after the violation. Had the server closed
    with that input unread, the reset would throw away what was still on
    its way, the DISCONNECT with it, and the client would read ECONNRESET.
    """
    with server_of(kind, config=CONFIG) as port:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WAIT)
        with sock:
            sock.connect((HOST, port))
            sock.sendall(encode_packet(ConnectPacket("goodbye"), version=V5))
            connack = read_packet(sock)
            assert connack[0] == 0x20 and connack[3] == 0  # CONNACK, accepted
            sock.sendall(encode_packet(SubscribePacket(1, (Subscription("t"),)), version=V5))
            assert read_packet(sock)[0] == 0x90  # SUBACK
            echo = encode_packet(PublishPacket("t", b"e" * 50_000), version=V5)
            burst = echo * 20 + publish(1) + publish(2) + publish(3)
            stop = threading.Event()
            sender = threading.Thread(target=keep_sending, args=(sock, burst, stop), daemon=True)
            sender.start()
            time.sleep(0.5)  # read late
            try:
                packets = read_until_eof(sock)
            finally:
                stop.set()
                sender.join(WAIT)
        assert packets[:20] == [echo] * 20
        # PUBREC 1 and 2 (0x10: no matching subscribers), then DISCONNECT 0x93
        # Receive Maximum exceeded (with a Reason String), then EOF.
        assert packets[20:22] == [b"\x50\x03\x00\x01\x10", b"\x50\x03\x00\x02\x10"]
        assert len(packets) == 23 and is_disconnect_0x93(packets[22]), packets[20:]


def test_a_peer_that_never_closes_is_closed_after_the_bound(kind: str) -> None:
    """After the goodbye the client neither closes nor stops: the server
    closes once ``close_timeout`` has passed."""
    with server_of(kind, config=CONFIG, close_timeout=0.5) as port, connected(port) as sock:
        sock.sendall(publish(1) + publish(2) + publish(3))
        assert read_packet(sock) == b"\x50\x03\x00\x01\x10"
        assert read_packet(sock) == b"\x50\x03\x00\x02\x10"
        assert is_disconnect_0x93(read_packet(sock))
        # Our FIN came; the client keeps its side open and goes on sending a
        # little (far below LINGER_BYTES) until the server closes.
        assert sock.recv(1) == b""
        closed = False
        for packet_id in range(4, 4 + 200):
            try:
                sock.sendall(publish(packet_id))
            except OSError:  # a reset: the server has closed
                closed = True
                break
            time.sleep(0.05)  # 200 x 50 ms = 10 s at most; the bound is 0.5 s
        assert closed


def test_a_peer_that_floods_after_the_goodbye_is_closed(kind: str) -> None:
    """More than ``LINGER_BYTES`` after the goodbye: closed without waiting."""
    with server_of(kind, config=CONFIG, close_timeout=30.0) as port, connected(port) as sock:
        sock.sendall(publish(1) + publish(2) + publish(3))
        assert is_disconnect_0x93(read_packet(sock) and read_packet(sock) and read_packet(sock))
        assert sock.recv(1) == b""
        flood = publish(9) * 100
        closed = False
        for _ in range(2 * LINGER_BYTES // len(flood) + 1):
            try:
                sock.sendall(flood)
            except OSError:
                closed = True
                break
        # Past the bound: the next small sends meet the closed socket (within
        # 5 s at most here; close_timeout is 30 s).
        for _ in range(100):
            if closed:
                break
            try:
                sock.sendall(publish(10))
            except OSError:
                closed = True
            time.sleep(0.05)
        assert closed
