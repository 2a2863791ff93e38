"""A load probe for authentication: does hashing passwords stall other clients?

:func:`burst_probe` keeps one authenticated MQTT 3.1.1 client pinging a
broker (PINGREQ → PINGRESP round trips, one at a time) while a burst of
CONNECTs for a user that does not exist arrives on other connections, and
reports the round-trip times seen during the burst. A broker that checks
passwords on its event loop answers the pings only between hashes: with
``mqttproto passwd``'s default scrypt cost (tens of milliseconds each), 300
CONNECTs hold a ping for seconds.

Import with ``from auth_probe import ...``. Everything connects to 127.0.0.1;
every wait is bounded and every socket is closed.
"""

from __future__ import annotations

import selectors
import socket
import statistics
import time

import attrs

from mqttproto import ProtocolVersion, encode_packet
from mqttproto.packets import ConnectPacket

HOST = "127.0.0.1"
V311 = ProtocolVersion.MQTT_3_1_1
PINGREQ = b"\xc0\x00"
PINGRESP = b"\xd0\x00"


def connect_bytes(client_id: str, username: str | None, password: bytes | None) -> bytes:
    """An MQTT 3.1.1 CONNECT (clean session, keep-alive 60 s)."""
    return encode_packet(
        ConnectPacket(client_id, V311, username=username, password=password), version=V311
    )


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    """``size`` bytes from a blocking socket with a timeout; b"" when it closes early."""
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return b""
        data += chunk
    return data


def open_client(port: int, username: str, password: bytes, timeout: float) -> socket.socket:
    """A connected, authenticated client; raises AssertionError if refused."""
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_bytes("prober", username, password))
    connack = recv_exactly(sock, 4)
    if connack != b"\x20\x02\x00\x00":
        sock.close()
        raise AssertionError(f"the prober was not accepted: {connack.hex()}")
    return sock


def ping(sock: socket.socket) -> float:
    """One PINGREQ → PINGRESP round trip, in seconds."""
    started = time.perf_counter()
    sock.sendall(PINGREQ)
    if recv_exactly(sock, 2) != PINGRESP:
        raise AssertionError("no PINGRESP")
    return time.perf_counter() - started


@attrs.frozen
class ProbeResult:
    """Round-trip times (seconds) before and during the burst, and what the burst got."""

    idle: list[float]
    during: list[float]
    #: CONNACK return codes the burst connections received (None: closed without one).
    answers: list[int | None]
    #: Seconds from the burst's first CONNECT to its last answer (or close).
    burst_seconds: float

    @property
    def worst(self) -> float:
        return max(self.during)

    @property
    def median(self) -> float:
        return statistics.median(self.during)


def burst_probe(
    port: int,
    username: str,
    password: bytes,
    *,
    connects: int = 300,
    timeout: float = 60.0,
    pause: float = 0.005,
) -> ProbeResult:
    """Ping as ``username`` while ``connects`` CONNECTs for an unknown user arrive.

    The burst connections are opened (TCP only) first, then all their
    CONNECTs are written back to back; the prober pings, one round trip at a
    time with ``pause`` seconds between them, until every burst connection
    has its CONNACK or was closed, or ``timeout`` seconds have passed.
    """
    prober = open_client(port, username, password, timeout)
    burst: list[socket.socket] = []
    selector = selectors.DefaultSelector()
    try:
        idle = [ping(prober) for _ in range(20)]
        for _ in range(connects):
            sock = socket.create_connection((HOST, port), timeout=timeout)
            burst.append(sock)
        for index, sock in enumerate(burst):
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, index)
        answers: list[int | None] = [None] * connects
        waiting = set(range(connects))
        started = time.perf_counter()
        for index, sock in enumerate(burst):
            sock.sendall(connect_bytes(f"burst-{index}", "nobody", b"guess"))
        during: list[float] = []
        buffers = [b""] * connects
        deadline = started + timeout
        finished_at = deadline
        while waiting and time.perf_counter() < deadline:
            during.append(ping(prober))
            for key, _ in selector.select(pause):
                index = key.data
                try:
                    chunk = burst[index].recv(64)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                buffers[index] += chunk
                if len(buffers[index]) >= 4 or not chunk:
                    if len(buffers[index]) >= 4:
                        answers[index] = buffers[index][3]
                    selector.unregister(burst[index])
                    waiting.discard(index)
            if not waiting:
                finished_at = time.perf_counter()
        if waiting:
            raise AssertionError(f"{len(waiting)} burst CONNECTs unanswered after {timeout} s")
        return ProbeResult(idle, during, answers, finished_at - started)
    finally:
        selector.close()
        for sock in burst:
            sock.close()
        prober.close()
