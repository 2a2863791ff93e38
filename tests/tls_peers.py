"""TLS peers for the handshake tests: certificates, well-behaved clients, and
connections that start a TLS handshake and go silent.

Everything talks to 127.0.0.1 with blocking sockets that have a timeout, or
non-blocking ones polled within a deadline; every socket handed out is the
caller's to close. Import with ``from tls_peers import ...``.
"""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import ssl
import time
from pathlib import Path

import trustme

HOST = "127.0.0.1"
WAIT = 10.0
#: CONNECT 3.1.1, client id "tls"; CONNACK accepted is 20 02 00 00.
CONNECT = bytes.fromhex("100f00044d5154540402003c0003746c73")
CONNACK_ACCEPTED = bytes.fromhex("20020000")


class Pki:
    """A CA, a server context for 127.0.0.1 and a client context trusting it."""

    def __init__(self) -> None:
        self.ca = trustme.CA()
        self.server_cert = self.ca.issue_cert(HOST)
        self.server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.server_cert.configure_cert(self.server)
        self.client = ssl.create_default_context()
        self.ca.configure_trust(self.client)

    def write_server_files(self, directory: Path) -> tuple[Path, Path]:
        cert, key = directory / "cert.pem", directory / "key.pem"
        self.server_cert.cert_chain_pems[0].write_to_path(str(cert))
        self.server_cert.private_key_pem.write_to_path(str(key))
        return cert, key

    def client_hello(self) -> bytes:
        """The bytes of a real ClientHello, made without a socket."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = self.client.wrap_bio(incoming, outgoing, server_hostname=HOST)
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()
        return outgoing.read()


def mqtt_over_tls(port: int, context: ssl.SSLContext) -> bytes:
    """What a well-behaved TLS client gets for its CONNECT: the CONNACK, or
    the bytes before the server closed (b"" if it refused the connection)."""
    try:
        with (
            socket.create_connection((HOST, port), timeout=WAIT) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            tls.sendall(CONNECT)
            data = b""
            while len(data) < 4:
                chunk = tls.recv(4 - len(data))
                if not chunk:
                    break
                data += chunk
            return data
    except (ConnectionError, ssl.SSLError):
        return b""


def silent(port: int, first: bytes = b"") -> socket.socket:
    """A connection that sends ``first`` (nothing, part of a ClientHello...)
    and then nothing more."""
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    if first:
        sock.sendall(first)
    return sock


def wait_closed(sock: socket.socket, timeout: float = WAIT) -> tuple[float, bytes]:
    """Seconds until the server closes ``sock`` (EOF or reset), and what it
    sent before. Raises ``TimeoutError`` if it is still open after ``timeout``."""
    start = time.monotonic()
    received = b""
    sock.settimeout(0.05)
    while time.monotonic() - start < timeout:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except OSError:
            break
        if not chunk:
            break
        received += chunk
    else:
        raise TimeoutError(f"still open after {timeout} s")
    return time.monotonic() - start, received


def is_open(sock: socket.socket) -> bool:
    """Whether the server has not closed ``sock``, without waiting (records
    of a handshake the server went on with are read and are not a close)."""
    timeout = sock.gettimeout()
    sock.setblocking(False)
    try:
        while True:
            try:
                data = sock.recv(65536, socket.MSG_PEEK)
            except BlockingIOError:
                return True
            except OSError:
                return False
            if not data:
                return False
            sock.recv(len(data))
    finally:
        sock.settimeout(timeout)


def raise_file_limit(wanted: int) -> None:
    """Raise this process's soft limit of open files to ``wanted`` (at most
    the hard limit); a broker process started afterwards inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def open_many(
    port: int, count: int, first: bytes, rate: float = 2500.0, timeout: float = 30.0
) -> list[socket.socket]:
    """``count`` connections, each sending ``first`` when connected, begun
    at ``rate`` a second: faster, the broker's listen backlog (100 on
    asyncio, as mosquitto's) overflows and the kernel drops SYNs, which the
    client sends again only a second later."""
    selector = selectors.DefaultSelector()
    opened: list[socket.socket] = []
    connecting = 0
    start = time.monotonic()
    deadline = start + timeout
    try:
        while len(opened) < count or connecting:
            now = time.monotonic()
            if now > deadline:
                raise TimeoutError(f"{len(opened)} of {count} connections begun in {timeout} s")
            due = min(count, int((now - start) * rate) + 1)
            while len(opened) < due and connecting < 256:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                opened.append(sock)
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    sock.connect((HOST, port))
                selector.register(sock, selectors.EVENT_WRITE)
                connecting += 1
            for key, _ in selector.select(0.005):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                selector.unregister(sock)
                connecting -= 1
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
                    with contextlib.suppress(OSError):
                        sock.send(first)
    except BaseException:
        for sock in opened:
            sock.close()
        raise
    finally:
        selector.close()
    return opened


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")
