"""What ``broker_memory.py --rss`` and ``broker_scale.py`` share: the broker
processes (this broker and mosquitto, each on a free 127.0.0.1 port), their
RSS and CPU time read from ``/proc``, the file limit, and many idle MQTT 5
clients opened from plain non-blocking sockets (the wire bytes built by the
project's codec), bound to several loopback source addresses so that more
connections fit than one address's ephemeral ports allow.

Not a benchmark of its own (the leading underscore); run the two above.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

from mqttproto import (
    ConnectPacket,
    ProtocolVersion,
    QoS,
    SubscribePacket,
    Subscription,
    encode_packet,
)

HOST = "127.0.0.1"
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
V5 = ProtocolVersion.MQTT_5_0
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
#: Linux's IP_BIND_ADDRESS_NO_PORT (not named by the socket module of 3.11).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)


def start_loads(
    target: Callable[..., None], port: int, total: int, loaders: int, *extra: object
) -> tuple[list[Connection], list[multiprocessing.Process]]:
    """``total`` clients spread over ``loaders`` processes, each running
    ``target(port, first, count, *extra, pipe)``; their pipes and processes."""
    share, rest = divmod(total, loaders)
    pipes, processes, first = [], [], 0
    for n in range(loaders):
        count = share + (n < rest)
        mine, theirs = multiprocessing.Pipe()
        process = multiprocessing.Process(target=target, args=(port, first, count, *extra, theirs))
        process.start()
        pipes.append(mine)
        processes.append(process)
        first += count
    return pipes, processes


def raise_file_limit() -> int:
    """Raise this process's open-file limit to its hard limit (children
    inherit it); the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def machine_limits() -> dict[str, str]:
    """What bounds the connection count: the file limits, the ephemeral
    ports, the accept queue."""

    def read(path: str) -> str:
        try:
            return Path(path).read_text(encoding="ascii").split("\n")[0].replace("\t", "-")
        except OSError:
            return "?"

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return {
        "nofile": f"{soft}/{hard}",
        "ip_local_port_range": read("/proc/sys/net/ipv4/ip_local_port_range"),
        "somaxconn": read("/proc/sys/net/core/somaxconn"),
        "tcp_max_syn_backlog": read("/proc/sys/net/ipv4/tcp_max_syn_backlog"),
        "loadavg": " ".join(read("/proc/loadavg").split()[:3]),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def rss_kib(pid: int) -> int:
    """The process's resident set (VmRSS), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of the process, seconds (/proc/<pid>/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


class BrokerProcess:
    """A broker listening on a free 127.0.0.1 port: ``ours`` (``python -m
    mqttproto broker``) or ``mosquitto`` (a generated config)."""

    def __init__(
        self, name: str, directory: Path, *, max_connections: int, backlog: int = 4096
    ) -> None:
        self.name = name
        self.port = port = free_port()
        self.log = directory / f"{name}.log"
        if name == "ours":
            argv = [
                sys.executable,
                "-m",
                "mqttproto",
                "broker",
                *("--host", HOST, "--port", str(port)),
                *("--max-connections", str(max_connections)),
                *("--backlog", str(backlog)),
                # A loaded machine may starve the load processes between
                # connecting and sending CONNECT: not what is measured.
                *("--connect-timeout", "60"),
            ]
        elif name == "mosquitto":
            conf = directory / "mosquitto.conf"
            lines = [
                f"listener {port} {HOST}",
                "allow_anonymous true",
                "persistence false",
                "max_connections -1",
                "log_type error",
            ]
            if os.getuid() == 0:
                lines.append("user root")
            conf.write_text("\n".join([*lines, ""]), encoding="utf-8")
            argv = [MOSQUITTO, "-c", str(conf)]
        else:
            raise SystemExit(f"unknown broker {name!r}")
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        self.pid = self.process.pid

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection((HOST, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        log = self.log.read_text(encoding="utf-8", errors="replace")
        raise SystemExit(f"{self.name} did not start; its log:\n{log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def available(name: str) -> bool:
    return name == "ours" or os.access(MOSQUITTO, os.X_OK)


def source_addresses(count: int, per_address: int = 20_000) -> Iterator[str]:
    """127.0.0.2, 127.0.0.3, ... for ``count`` connections, ``per_address``
    on each (well under the ephemeral port range, which is per source
    address and destination)."""
    for n in range(count):
        yield f"127.0.0.{2 + n // per_address}"


def hello(client_id: str, topic_filter: str, keep_alive: int = 600) -> bytes:
    """CONNECT (MQTT 5, clean start) and SUBSCRIBE (QoS 0) in one write."""
    return encode_packet(
        ConnectPacket(client_id=client_id, keep_alive=keep_alive, clean_start=True), version=V5
    ) + encode_packet(
        SubscribePacket(1, [Subscription(topic_filter, QoS.AT_MOST_ONCE)]), version=V5
    )


def packets_in(buffer: bytearray) -> Iterator[tuple[int, bytes]]:
    """Complete packets at the start of ``buffer`` (removed from it): the
    first byte and the body. Just enough framing for a load generator."""
    while len(buffer) >= 2:
        length = multiplier = 0
        pos = 1
        while True:
            if pos >= len(buffer):
                return
            byte = buffer[pos]
            length += (byte & 0x7F) << multiplier
            multiplier += 7
            pos += 1
            if not byte & 0x80:
                break
        if len(buffer) < pos + length:
            return
        first, body = buffer[0], bytes(buffer[pos : pos + length])
        del buffer[: pos + length]
        yield first, body


def open_clients(
    port: int,
    first: int,
    count: int,
    topic_of: Callable[[int], str],
    *,
    window: int = 256,
    timeout: float = 300.0,
    per_address: int = 20_000,
    keep_alive: int = 600,
) -> list[socket.socket]:
    """Connect clients ``first`` .. ``first + count - 1`` (client id
    ``c<n>``, subscribed to ``topic_of(n)``), at most ``window`` of them in
    their handshake at once; return their sockets, in client order, once
    every CONNACK and SUBACK is in. Raises RuntimeError on a refusal or a timeout."""
    selector = selectors.DefaultSelector()
    done: dict[int, socket.socket] = {}
    pending: dict[socket.socket, list[object]] = {}
    addresses = source_addresses(first + count, per_address)
    for _ in range(first):
        next(addresses)
    todo = iter(range(first, first + count))
    deadline = time.monotonic() + timeout

    def start_one() -> bool:
        n = next(todo, None)
        if n is None:
            return False
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # The port is chosen at connect(), for the 4-tuple: a bind() to port
        # 0 alone would search the address's free ports, slower with each.
        sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
        sock.bind((next(addresses), 0))
        sock.setblocking(False)
        sock.connect_ex((HOST, port))
        # [state, hello bytes, input, answers, n]: state 0 connecting, 1
        # waiting for CONNACK and SUBACK.
        pending[sock] = [0, hello(f"c{n}", topic_of(n), keep_alive), bytearray(), 0, n]
        selector.register(sock, selectors.EVENT_WRITE)
        return True

    while len(pending) < window and start_one():
        pass
    while pending:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(pending)} clients still connecting after {timeout} s")
        for key, _ in selector.select(1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            state = pending[sock]
            if state[0] == 0:
                error = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if error:
                    raise RuntimeError(f"connect failed: {os.strerror(error)}")
                data = state[1]
                assert isinstance(data, bytes)
                sock.sendall(data)  # small: fits an empty send buffer
                state[0] = 1
                selector.modify(sock, selectors.EVENT_READ)
                continue
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the broker closed a connection during its handshake")
            buffer = state[2]
            assert isinstance(buffer, bytearray)
            buffer += chunk
            for first_byte, body in packets_in(buffer):
                kind = first_byte >> 4
                if kind == 2 and body[1] != 0:  # CONNACK with a failure code
                    raise RuntimeError(f"CONNACK refused: reason code {body[1]:#x}")
                if kind == 9 and body[-1] >= 0x80:
                    raise RuntimeError(f"SUBACK refused: reason code {body[-1]:#x}")
                if kind in (2, 9):
                    count_answers = state[3]
                    assert isinstance(count_answers, int)
                    state[3] = count_answers + 1
            if state[3] == 2:
                selector.unregister(sock)
                del pending[sock]
                sock.setblocking(True)
                number = state[4]
                assert isinstance(number, int)
                done[number] = sock
                start_one()
    selector.close()
    return [done[n] for n in sorted(done)]
