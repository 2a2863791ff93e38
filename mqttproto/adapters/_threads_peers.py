"""One socket of :class:`~mqttproto.adapters.threads.BrokerServer`.

:class:`_Peer` is an accepted socket on the server's selector: its output
buffer, what it asks the selector for, its reads and writes, and, on a TLS
listener, its handshake under the server's :class:`._tls_gate.HandshakeGate`.
Once the handshake (if any) is done it is the :class:`._driver.Peer` whose
I/O the server's :class:`._driver.Driver` drives. Everything here runs on
the server's I/O thread.

A connection to a TLS listener is accepted as a plain socket. Until the
client's first TLS record has arrived whole it holds no TLS state: the
record is peeked at, not read, and ``SO_RCVLOWAT`` keeps the selector quiet
until it is all there; then the gate is asked again and only then is the
socket wrapped (:meth:`ssl.SSLContext.wrap_socket`) and the handshake done
without blocking, as the selector says the socket is ready.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import ssl as _ssl
import time
from typing import Any, Protocol

from ._driver import Driver, Peer
from ._listener import Listener
from ._server_common import READ_SIZE
from ._tls_gate import (
    MAX_PLAINTEXT_RECORD,
    RECORD_HEADER,
    HandshakeGate,
    first_record_size,
    handshake_failure,
)

__all__ = ["WOULD_BLOCK", "PeerOwner", "_Peer"]

logger = logging.getLogger("mqttproto.broker")

WOULD_BLOCK = (BlockingIOError, InterruptedError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError)


class PeerOwner(Protocol):
    """What a :class:`_Peer` uses of its server (the threads ``BrokerServer``),
    named here so that this module does not import it."""

    _driver: Driver
    _selector: selectors.BaseSelector | None
    _tls_gate: HandshakeGate
    #: Every accepted socket, handshaking ones included.
    _conns: set[_Peer]


class _Peer(Peer):
    """One accepted socket; a broker connection once TLS (if any) is done."""

    __slots__ = (
        "dead",
        "deadline",
        "finishing",
        "half_closing",
        "handshake_wants_write",
        "handshaking",
        "lowat",
        "mask",
        "out",
        "server",
        "sock",
        "started",
    )

    def __init__(self, server: PeerOwner, sock: socket.socket, listener: Listener, peer: str):
        super().__init__(listener, peer)
        self.server = server
        self.sock = sock
        #: Closed: nothing more is read or written.
        self.dead = False
        #: The socket closes once the output is written.
        self.finishing = False
        #: The socket's write side is shut once the output is written.
        self.half_closing = False
        #: When the TLS handshake must be over.
        self.deadline: float | None = None
        #: Accepted on a TLS listener and not yet a broker connection.
        self.handshaking = False
        #: Admitted by HandshakeGate.start: the TLS state exists.
        self.started = False
        #: While waiting for the first TLS record: the socket's SO_RCVLOWAT.
        self.lowat = 0
        self.handshake_wants_write = False
        #: The events the selector watches for (0: not registered).
        self.mask = 0
        self.out = bytearray()

    def start(self, now: float, handshake_timeout: float) -> None:
        """The socket was just accepted (and admitted by the gate on a TLS listener)."""
        if self.listener.ssl is None:
            self._open(now)
        else:
            self.handshaking = True
            self.deadline = now + handshake_timeout
            if self.listener.transport == "unix":
                # poll() ignores SO_RCVLOWAT on Unix sockets (see _peek_record).
                self._start_tls(now)
            else:
                self.lowat = 1
        self.update_interest()

    # -- the driver's I/O ---------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if not self.dead:
            self.out += data
            self._send()
            self.update_interest()

    def unsent(self) -> int:
        return len(self.out)

    def pause_reading(self) -> None:
        self.update_interest()

    def resume_reading(self) -> None:
        self.update_interest()

    def half_close(self) -> None:
        self.half_closing = True
        self._send()
        self.update_interest()

    def finish(self) -> None:
        self.finishing = True
        self._send()
        self.update_interest()

    def abort(self) -> None:
        self.close_now(time.monotonic(), "aborted")

    def peercert(self) -> dict[str, Any] | None:
        sock = self.sock
        return sock.getpeercert() if isinstance(sock, _ssl.SSLSocket) else None

    # -- the selector -------------------------------------------------------------------

    def ready(self, mask: int, now: float) -> None:
        """The selector's callback: the socket is readable or writable."""
        if self.dead:
            return
        if self.lowat:
            self._peek_record(now)
        elif self.handshaking:
            self._handshake(now)
        else:
            if mask & selectors.EVENT_WRITE:
                self._send()
                if not self.dead:
                    self.server._driver.output_changed(self, now)
            if mask & selectors.EVENT_READ and not self.dead:
                self._read(now)
        self.update_interest()

    def update_interest(self) -> None:
        if self.dead:
            return
        if self.handshaking:
            mask = selectors.EVENT_WRITE if self.handshake_wants_write else selectors.EVENT_READ
        else:
            mask = 0 if self.paused else selectors.EVENT_READ
            if self.out:
                mask |= selectors.EVENT_WRITE
        if mask == self.mask:
            return
        selector = self.server._selector
        assert selector is not None
        if self.mask == 0:
            selector.register(self.sock, mask, self.ready)
        elif mask == 0:
            selector.unregister(self.sock)
        else:
            selector.modify(self.sock, mask, self.ready)
        self.mask = mask

    def close_now(self, now: float, reason: str) -> None:
        """Close the socket now and tell the driver the connection is gone."""
        if self.dead:
            return
        self.dead = True
        server = self.server
        server._conns.discard(self)
        if self.handshaking:
            self.handshaking = False
            server._tls_gate.release(self.started)
        if self.mask and server._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                server._selector.unregister(self.sock)
        self.mask = 0
        with contextlib.suppress(OSError):
            self.sock.close()
        server._driver.lost(self, now, reason)

    # -- reading and writing ------------------------------------------------------------

    def _read(self, now: float) -> None:
        sock = self.sock
        driver = self.server._driver
        # A TLS socket may hold decrypted bytes the selector does not see.
        for _ in range(16):
            try:
                data = sock.recv(READ_SIZE)
            except WOULD_BLOCK:
                return
            except OSError as exc:
                self.close_now(now, f"connection lost: {exc}")
                return
            if not data:
                if self.closing:
                    # A socket at EOF stays readable: no waiting for the close.
                    self.close_now(now, "peer closed the connection")
                else:
                    driver.eof(self, now)
                return
            driver.received(self, data, now)
            if self.dead or not (isinstance(sock, _ssl.SSLSocket) and sock.pending()):
                return

    def _send(self) -> None:
        out = self.out
        while out and not self.dead:
            try:
                sent = self.sock.send(out)
            except WOULD_BLOCK:
                break
            except OSError as exc:
                self.close_now(time.monotonic(), f"connection lost: {exc}")
                return
            if sent <= 0:
                break
            del out[:sent]
        if out or self.dead:
            return
        if self.finishing:
            self.close_now(time.monotonic(), "closed by the broker")
        elif self.half_closing:
            # The goodbye is out: FIN, and _read drains until EOF. A TLS
            # socket cannot half-close (shutdown() would end TLS too) and
            # only goes on reading.
            self.half_closing = False
            if not isinstance(self.sock, _ssl.SSLSocket):
                with contextlib.suppress(OSError):
                    self.sock.shutdown(socket.SHUT_WR)

    def _open(self, now: float) -> None:
        try:
            address = self.sock.getpeername()
        except OSError:
            address = None
        if not self.server._driver.open(self, now, address):
            self.close_now(now, "refused")

    # -- the TLS handshake --------------------------------------------------------------

    def _peek_record(self, now: float) -> None:
        """Wait, with no TLS state, until the client's first TLS record is in
        the socket's buffer: it is peeked at, not read, and SO_RCVLOWAT
        keeps select() quiet until the whole record is there (or the peer
        is gone), so a client that dribbles costs no wake-ups."""
        gate = self.server._tls_gate
        try:
            head = self.sock.recv(RECORD_HEADER + MAX_PLAINTEXT_RECORD, socket.MSG_PEEK)
        except WOULD_BLOCK:
            return
        except OSError:
            head = b""
        size = first_record_size(head)
        if size is None:
            gate.failed(now, self.peer, "not a TLS handshake")
            self.close_now(now, "not a TLS handshake")
        elif not head or len(head) < size <= self.lowat:
            # Readable below the low-water mark: an EOF or an error.
            gate.failed(now, self.peer, None)
            self.close_now(now, "peer closed the connection")
        elif len(head) < size:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
                self.lowat = size
            except OSError:
                self._start_tls(now)  # no low-water mark: start with what there is
        else:
            if self.lowat > 1:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            self._start_tls(now)

    def _start_tls(self, now: float) -> None:
        """Make the TLS state if the gate admits one more handshake, and start."""
        self.lowat = 0
        server = self.server
        if not server._tls_gate.start(now, self.peer):
            self.handshaking = False  # no longer counted by the gate
            self.close_now(now, "too many TLS handshakes")
            return
        self.started = True
        context = self.listener.ssl
        assert context is not None
        if self.mask and server._selector is not None:
            # The SSLSocket takes the file descriptor over from this object.
            server._selector.unregister(self.sock)
            self.mask = 0
        try:
            self.sock = context.wrap_socket(
                self.sock, server_side=True, do_handshake_on_connect=False
            )
        except (OSError, ValueError) as exc:
            logger.warning("connection from %s: TLS setup failed: %s", self.peer, exc)
            self.close_now(now, "TLS setup failed")
            return
        self._handshake(now)

    def _handshake(self, now: float) -> None:
        sock = self.sock
        assert isinstance(sock, _ssl.SSLSocket)
        try:
            sock.do_handshake()
        except _ssl.SSLWantReadError:
            self.handshake_wants_write = False
            return
        except _ssl.SSLWantWriteError:
            self.handshake_wants_write = True
            return
        except (OSError, ValueError) as exc:
            self.server._tls_gate.failed(now, self.peer, handshake_failure(exc))
            self.close_now(now, "TLS handshake failed")
            return
        self.handshaking = False
        self.handshake_wants_write = False
        self.deadline = None
        self.server._tls_gate.succeeded()
        self._open(now)
