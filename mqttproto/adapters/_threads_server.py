"""The broker server for code without an event loop, re-exported by
:mod:`mqttproto.adapters.threads`: one I/O thread serves a sans-IO
:class:`~mqttproto.broker.Broker` over TCP, TLS, WebSocket and Unix sockets.

::

    with BrokerServer(port=0) as server:       # 0: the OS picks a port
        print("listening on", server.port)
        ...
    # leaving the block: DISCONNECT 0x8B to MQTT 5 clients, then close

or, for a program that only serves, ``serve("127.0.0.1", 1883)`` blocks
until :meth:`BrokerServer.close` is called (from another thread) or
Ctrl-C.

How the adapter drives the core
-------------------------------

One thread, one :mod:`selectors` selector over every socket (the listening
ones, the connections, and a socket pair that wakes the thread for
:meth:`~BrokerServer.close`); no thread per connection, and no lock: only
the I/O thread calls the broker. Each pass of the loop reads
:func:`time.monotonic` once after ``select`` and:

- accepts connections (finishing the TLS handshake before the broker hears
  of one: the client certificate's CN may be its username), reads what is
  ready into :meth:`Broker.receive_data` (EOF: :meth:`Broker.receive_eof`),
- calls :meth:`Broker.handle_timer` when the deadline of
  :meth:`Broker.get_timer` has passed (it is also ``select``'s timeout),
- then *once* collects :meth:`Broker.flush`: what every read of the pass
  produced for a connection goes out in one ``send`` (write coalescing), and
  closes what :meth:`Broker.connections_to_close` names after its last bytes.

Back-pressure and slow consumers
--------------------------------

Bytes a client does not read wait in its output buffer. Above
:data:`PAUSE_READING_ABOVE` bytes the server stops reading from that client
(it gets no service until it drains its side) and reports the buffer to
:meth:`Broker.output_backlog`, so the core holds deliveries for it past
``max_unsent_bytes`` (QoS 0 dropped, QoS 1/2 queued); above
``max_buffered_output``, a last resort, the connection is dropped as a slow
consumer (logged at WARNING) and the
broker told it was lost, as for a network failure: its will is published,
a persistent session keeps its QoS 1/2 messages. A connection closed by the
broker whose peer does not take its last bytes is dropped after
``close_timeout`` seconds. Logging is the asyncio server's (see there).
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import selectors
import socket
import ssl as _ssl
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..auth import Authenticator, Authorizer
from ..broker import Broker
from ..config import BrokerConfig
from ._auth_workers import AuthWorkers
from ._listener import Listener, certificate_common_name
from ._server_common import (
    PAUSE_READING_ABOVE,
    READ_SIZE,
    Endpoint,
    ServerBase,
    backlog_report,
    format_peer,
    remove_stale_socket,
    source_address,
)
from ._server_log import goodbye_reason, note_first_output
from ._tls_gate import (
    MAX_PLAINTEXT_RECORD,
    RECORD_HEADER,
    first_record_size,
    handshake_failure,
)

if TYPE_CHECKING:  # without importing wsproto at run time
    from ._websocket_server import ServerWebSocket

__all__ = ["PAUSE_READING_ABOVE", "BrokerServer", "serve"]

logger = logging.getLogger("mqttproto.broker")

#: Connections accepted per listener per pass (the rest wait for the next).
ACCEPTS_PER_PASS = 64

_WOULD_BLOCK = (BlockingIOError, InterruptedError, _ssl.SSLWantReadError, _ssl.SSLWantWriteError)


class _Conn:
    """One accepted socket; a broker connection once TLS (if any) is done."""

    __slots__ = (
        "accepted",
        "backlog",
        "close_reason",
        "closing",
        "conn",
        "dead",
        "deadline",
        "handshake_wants_write",
        "handshaking",
        "last_data",
        "last_pump",
        "listener",
        "lowat",
        "mask",
        "out",
        "peer",
        "sock",
        "started",
        "ws",
    )

    def __init__(self, sock: socket.socket, listener: Listener, peer: str) -> None:
        self.sock = sock
        self.listener = listener
        self.peer = peer
        self.conn = -1
        self.accepted = False
        self.close_reason: str | None = None
        #: No more input for the broker; the socket closes after its output.
        self.closing = False
        self.dead = False
        #: When a TLS handshake or a close must be over.
        self.deadline: float | None = None
        #: Accepted on a TLS listener and not yet a broker connection.
        self.handshaking = False
        #: Admitted by HandshakeGate.start: the TLS state exists.
        self.started = False
        #: While waiting for the first TLS record: the socket's SO_RCVLOWAT.
        self.lowat = 0
        self.handshake_wants_write = False
        self.last_data = b""
        self.last_pump = -1
        self.mask = 0
        self.out = bytearray()
        #: What Broker.output_backlog was last told.
        self.backlog = 0
        self.ws: ServerWebSocket | None = None


def _listening_sockets(listener: Listener) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for one listener."""
    if listener.transport == "unix":
        path = listener.path
        assert path is not None
        remove_stale_socket(path)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(path)
            sock.listen(128)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return [sock]
    hosts = listener.host if isinstance(listener.host, list) else [listener.host]
    infos = []
    for host in hosts:
        for info in socket.getaddrinfo(
            host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        ):
            if info not in infos:
                infos.append(info)
    sockets: list[socket.socket] = []
    try:
        for family, kind, proto, _, address in infos:
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(128)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


class BrokerServer(ServerBase):
    """A :class:`~mqttproto.broker.Broker` served by one I/O thread.

    The arguments are those of the asyncio
    :class:`mqttproto.adapters.asyncio.BrokerServer`: a broker (or its
    ``config``, ``authenticator`` and ``authorizer``), one TCP listener on
    ``host``/``port`` (TLS with ``ssl``) or several ``listeners``,
    ``max_buffered_output``, ``close_timeout``, ``tls_handshake_timeout``,
    ``max_tls_handshakes`` and ``auth_workers`` (the threads that compute
    deferred authentications, such as password hashes).

    Use it as ``with BrokerServer(...) as server:`` or call :meth:`start`
    and :meth:`close`. After :meth:`start` the broker belongs to the I/O
    thread: do not call it from other threads.
    """

    def __init__(self, broker: Broker | None = None, **options: Any) -> None:
        super().__init__(broker, **options)
        self._selector: selectors.BaseSelector | None = None
        self._listening: list[tuple[Listener, socket.socket]] = []
        self._thread: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._started = False
        self._stop_requested = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._stop_timeout = self.close_timeout
        #: A connection was lost during a pass: pump once more before sleeping.
        self._pump_again = False
        self._closed = threading.Event()
        #: Every accepted socket, and those with a broker connection by its id.
        self._conns: set[_Conn] = set()
        self._by_id: dict[int, _Conn] = {}
        self._timer_at: float | None = None
        self._pumps = 0
        self._auth: AuthWorkers | None = None
        #: Calls from the authentication workers, run on the I/O thread.
        self._callbacks: collections.deque[Callable[[], None]] = collections.deque()

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> None:
        """Listen on every listener and start the I/O thread.

        :raises OSError: a socket cannot be bound (nothing is left listening).
        :raises ImportError: a WebSocket listener without ``wsproto`` installed.
        """
        if self._started:
            raise RuntimeError("the server was already started")
        self._started = True
        if any(listener.transport == "websocket" for listener in self.listeners):
            try:
                from . import _websocket_server  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "a WebSocket listener needs wsproto: pip install 'mqttproto[websocket]'"
                ) from exc
        selector = selectors.DefaultSelector()
        try:
            for listener in self.listeners:
                sockets = _listening_sockets(listener)
                if listener.path is not None:
                    self._remember_socket_file(listener.path)
                for sock in sockets:
                    self._listening.append((listener, sock))
                    selector.register(sock, selectors.EVENT_READ, self._acceptor(listener, sock))
                logger.info(
                    "listening on %s (%s)",
                    ", ".join(str(e) for e in self._endpoints_now() if e.listener is listener),
                    listener.kind,
                )
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            selector.register(self._wake_r, selectors.EVENT_READ, self._woken)
        except BaseException:
            for _, sock in self._listening:
                sock.close()
            self._listening.clear()
            self._remove_socket_files()
            selector.close()
            self._closed.set()
            raise
        self._endpoints = self._endpoints_now()
        self._selector = selector
        self._auth = AuthWorkers(
            self.broker,
            self.auth_workers,
            call_soon_threadsafe=self._call_soon_threadsafe,
            clock=time.monotonic,
            answered=self._answered,
        )
        self._auth.start()
        self._thread = threading.Thread(target=self._run, name="mqttproto-broker", daemon=True)
        self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop listening, shut the broker down and close every connection.

        The broker's :meth:`~mqttproto.broker.Broker.shutdown` output (an MQTT 5
        client gets DISCONNECT 0x8B *Server shutting down*) is written first;
        connections still open after ``timeout`` seconds (default
        ``close_timeout``) are dropped. Returns when the I/O thread has ended.
        """
        if threading.current_thread() is self._thread:
            raise RuntimeError("close() cannot be called from the server's I/O thread")
        thread = self._thread
        if thread is None:
            self._closed.set()
            return
        if not self._stop_requested:
            self._stop_timeout = self.close_timeout if timeout is None else timeout
            self._stop_requested = True
            self._wake()
        thread.join(self._stop_timeout + 10.0)
        self._closed.wait(1.0)

    def serve_forever(self) -> None:
        """Start if needed, then block until :meth:`close` has finished."""
        if not self._started:
            self.start()
        self._closed.wait()

    def __enter__(self) -> BrokerServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- introspection --------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every listening socket with its listener (empty unless serving)."""
        return () if self._stop_requested or self._closed.is_set() else self._endpoints

    def _endpoints_now(self) -> tuple[Endpoint, ...]:
        found = []
        for listener, sock in self._listening:
            if listener.transport == "unix":
                found.append(Endpoint(listener, None, listener.path))
            else:
                name = sock.getsockname()
                found.append(Endpoint(listener, (str(name[0]), int(name[1]))))
        return tuple(found)

    @property
    def is_serving(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop_requested

    @property
    def connection_count(self) -> int:
        """Open connections (including ones still closing), as last counted."""
        return len(self._conns)

    # -- the I/O thread ---------------------------------------------------------------

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            assert self._wake_w is not None
            self._wake_w.send(b"\0")

    def _woken(self, mask: int, now: float) -> None:
        with contextlib.suppress(OSError):
            assert self._wake_r is not None
            self._wake_r.recv(4096)
        callbacks = self._callbacks
        while callbacks:
            callbacks.popleft()()

    def _call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the I/O thread (from an authentication worker)."""
        if self._closed.is_set():
            raise RuntimeError("the server is closed")
        self._callbacks.append(callback)
        self._wake()

    def _answered(self) -> None:
        # An authentication answer may have output: pump before sleeping.
        self._pump_again = True

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        try:
            while True:
                now = time.monotonic()
                for key, mask in selector.select(self._select_timeout(now)):
                    key.data(mask, time.monotonic())
                now = time.monotonic()
                if self._stop_requested and not self._stopping:
                    self._begin_shutdown(now)
                if self._timer_at is not None and now >= self._timer_at:
                    self._timer_at = None
                    try:
                        self.broker.handle_timer(now)
                    except Exception:
                        logger.exception("the broker core raised in handle_timer()")
                self._check_deadlines(now)
                self._pump(now)
                if self._stopping and (not self._conns or now >= self._stop_deadline):
                    break
        except Exception:
            logger.exception("the broker server's I/O thread failed")
        finally:
            now = time.monotonic()
            for c in list(self._conns):
                self._lost(c, now, c.close_reason or "server shut down")
            for _, sock in self._listening:
                sock.close()
            self._listening.clear()
            self._remove_socket_files()
            if self._auth is not None:
                self._auth.close()
            for wake in (self._wake_r, self._wake_w):
                if wake is not None:
                    wake.close()
            selector.close()
            logger.info("server closed")
            self._closed.set()

    def _select_timeout(self, now: float) -> float | None:
        if self._pump_again:
            return 0.0
        deadlines = [c.deadline for c in self._conns if c.deadline is not None]
        if self._timer_at is not None:
            deadlines.append(self._timer_at)
        if self._stopping:
            deadlines.append(self._stop_deadline)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _begin_shutdown(self, now: float) -> None:
        self._stopping = True
        self._stop_deadline = now + self._stop_timeout
        assert self._selector is not None
        for _, sock in self._listening:
            self._selector.unregister(sock)
            sock.close()
        self._listening.clear()
        self._remove_socket_files()
        self._tls_gate.close(now)
        try:
            self.broker.shutdown(now)
        except Exception:
            logger.exception("the broker core raised in shutdown()")
        self._pump(now)
        for c in list(self._conns):
            if not c.closing:
                self._close(c, now, "server shut down")

    def _check_deadlines(self, now: float) -> None:
        for c in [c for c in self._conns if c.deadline is not None and now >= c.deadline]:
            if c.handshaking:
                self._tls_gate.timed_out(now, c.peer)
                self._lost(c, now, "TLS handshake timed out")
            else:
                logger.warning(
                    "connection %d from %s: last bytes not sent within %.1f s; aborted",
                    c.conn,
                    c.peer,
                    self.close_timeout,
                )
                self._lost(c, now, c.close_reason or "close timed out")

    # -- accepting --------------------------------------------------------------------

    def _acceptor(self, listener: Listener, sock: socket.socket) -> Callable[[int, float], None]:
        def accept(mask: int, now: float) -> None:
            for _ in range(ACCEPTS_PER_PASS):
                try:
                    client, address = sock.accept()
                except _WOULD_BLOCK:
                    return
                except OSError as exc:
                    # EMFILE and friends: log, and try again on the next pass.
                    if exc.errno not in (errno.ECONNABORTED, errno.EPROTO):
                        logger.warning("accept() failed on %s: %s", listener.kind, exc)
                        return
                    continue
                self._accepted(listener, client, address, now)

        return accept

    def _accepted(
        self, listener: Listener, client: socket.socket, address: Any, now: float
    ) -> None:
        client.setblocking(False)
        if listener.transport == "unix":
            peer = f"unix:{listener.path}"
        else:
            peer = format_peer(address)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._stopping:
            client.close()
            return
        # The bounds first, before any TLS state (the gate logs and counts).
        if listener.ssl is not None and not self._tls_gate.admit(now, peer):
            client.close()
            return
        c = _Conn(client, listener, peer)
        self._conns.add(c)
        if listener.ssl is None:
            self._open(c, now)
        else:
            c.handshaking = True
            c.deadline = now + self.tls_handshake_timeout
            if listener.transport == "unix":
                # poll() ignores SO_RCVLOWAT on Unix sockets (see _peek_record).
                self._start_tls(c, now)
            else:
                c.lowat = 1
        if not c.dead:
            self._update_interest(c)

    def _peek_record(self, c: _Conn, now: float) -> None:
        """Wait, with no TLS state, until the client's first TLS record is in
        the socket's buffer: it is peeked at, not read, and SO_RCVLOWAT
        keeps select() quiet until the whole record is there (or the peer
        is gone), so a client that dribbles costs no wake-ups."""
        try:
            head = c.sock.recv(RECORD_HEADER + MAX_PLAINTEXT_RECORD, socket.MSG_PEEK)
        except _WOULD_BLOCK:
            return
        except OSError:
            head = b""
        size = first_record_size(head)
        if size is None:
            self._tls_gate.failed(now, c.peer, "not a TLS handshake")
            self._lost(c, now, "not a TLS handshake")
        elif not head or len(head) < size <= c.lowat:
            # Readable below the low-water mark: an EOF or an error.
            self._tls_gate.failed(now, c.peer, None)
            self._lost(c, now, "peer closed the connection")
        elif len(head) < size:
            try:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
                c.lowat = size
            except OSError:
                self._start_tls(c, now)  # no low-water mark: start with what there is
        else:
            if c.lowat > 1:
                c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, 1)
            self._start_tls(c, now)

    def _start_tls(self, c: _Conn, now: float) -> None:
        """Make the TLS state if the gate admits one more handshake, and start."""
        c.lowat = 0
        if not self._tls_gate.start(now, c.peer):
            c.handshaking = False  # no longer counted by the gate
            self._lost(c, now, "too many TLS handshakes")
            return
        c.started = True
        context = c.listener.ssl
        assert context is not None
        if c.mask and self._selector is not None:
            # The SSLSocket takes the file descriptor over from this object.
            self._selector.unregister(c.sock)
            c.mask = 0
        try:
            c.sock = context.wrap_socket(c.sock, server_side=True, do_handshake_on_connect=False)
        except (OSError, ValueError) as exc:
            logger.warning("connection from %s: TLS setup failed: %s", c.peer, exc)
            self._lost(c, now, "TLS setup failed")
            return
        self._handshake(c, now)

    def _handshake(self, c: _Conn, now: float) -> None:
        sock = c.sock
        assert isinstance(sock, _ssl.SSLSocket)
        try:
            sock.do_handshake()
        except _ssl.SSLWantReadError:
            c.handshake_wants_write = False
            return
        except _ssl.SSLWantWriteError:
            c.handshake_wants_write = True
            return
        except (OSError, ValueError) as exc:
            self._tls_gate.failed(now, c.peer, handshake_failure(exc))
            self._lost(c, now, "TLS handshake failed")
            return
        c.handshaking = False
        c.handshake_wants_write = False
        c.deadline = None
        self._tls_gate.succeeded()
        self._open(c, now)

    def _open(self, c: _Conn, now: float) -> None:
        listener = c.listener
        identity = None
        if listener.use_identity_as_username:
            assert isinstance(c.sock, _ssl.SSLSocket)
            identity = certificate_common_name(c.sock.getpeercert())
            if identity is None:
                logger.warning(
                    "connection from %s refused: no client certificate with a subject CN", c.peer
                )
                self._lost(c, now, "no client certificate CN")
                return
        if listener.transport == "websocket":
            from ._websocket_server import ServerWebSocket

            c.ws = ServerWebSocket(listener.websocket_path)
        try:
            try:
                address = source_address(listener, c.sock.getpeername())
            except OSError:
                address = source_address(listener, None)
            c.conn = self.broker.open_connection(
                now, peer=c.peer, username=identity, address=address
            )
        except Exception:
            logger.exception("the broker core raised in open_connection() for %s", c.peer)
            self._lost(c, now, "internal error in open_connection()")
            return
        self._by_id[c.conn] = c
        logger.info("connection %d opened from %s", c.conn, c.peer)

    # -- reading and writing ------------------------------------------------------------

    def _update_interest(self, c: _Conn) -> None:
        if c.dead:
            return
        if c.handshaking:
            mask = selectors.EVENT_WRITE if c.handshake_wants_write else selectors.EVENT_READ
        else:
            mask = 0
            if len(c.out) <= PAUSE_READING_ABOVE:
                mask |= selectors.EVENT_READ
            if c.out:
                mask |= selectors.EVENT_WRITE
        if mask == c.mask:
            return
        assert self._selector is not None
        if c.mask == 0:
            self._selector.register(c.sock, mask, lambda m, now: self._ready(c, m, now))
        elif mask == 0:
            self._selector.unregister(c.sock)
        else:
            self._selector.modify(c.sock, mask, lambda m, now: self._ready(c, m, now))
        c.mask = mask

    def _ready(self, c: _Conn, mask: int, now: float) -> None:
        if c.dead:
            return
        if c.lowat:
            self._peek_record(c, now)
        elif c.handshaking:
            self._handshake(c, now)
        else:
            if mask & selectors.EVENT_WRITE:
                self._write(c, now)
            if mask & selectors.EVENT_READ and not c.dead:
                self._read(c, now)
        self._update_interest(c)

    def _read(self, c: _Conn, now: float) -> None:
        sock = c.sock
        # A TLS socket may hold decrypted bytes the selector does not see.
        for _ in range(16):
            try:
                data = sock.recv(READ_SIZE)
            except _WOULD_BLOCK:
                return
            except OSError as exc:
                self._lost(c, now, f"connection lost: {exc}")
                return
            if not data:
                self._eof(c, now)
                return
            self._received(c, data, now)
            if c.dead or not (isinstance(sock, _ssl.SSLSocket) and sock.pending()):
                return

    def _received(self, c: _Conn, data: bytes, now: float) -> None:
        ws = c.ws
        if ws is not None:
            data = ws.receive(data)
            c.out += ws.data_to_send()
        if data and not c.closing:
            try:
                self.broker.receive_data(c.conn, data, now)
            except Exception:
                self._core_failed(c, "receive_data", now)
                return
        if ws is None:
            return
        if ws.failure is not None:
            logger.warning("connection %d from %s: %s", c.conn, c.peer, ws.failure)
            self._close(c, now, ws.failure)
        elif ws.client_closed is not None:
            if c.close_reason is None and not c.closing:
                c.close_reason = f"WebSocket closed by the client (code {ws.client_closed})"
            self._eof(c, now)
        elif c.closing:
            self._write(c, now)

    def _eof(self, c: _Conn, now: float) -> None:
        """The peer's stream ended: tell the broker, send what is left, close."""
        if c.closing:
            self._lost(c, now, c.close_reason or "peer closed the connection")
            return
        if c.close_reason is None:
            c.close_reason = "peer closed the connection"
        try:
            self.broker.receive_eof(c.conn, now)
        except Exception:
            self._core_failed(c, "receive_eof", now)
            return
        self._pump(now)
        if not c.dead and not c.closing:
            self._close(c, now, c.close_reason)

    def _write(self, c: _Conn, now: float) -> None:
        out = c.out
        while out:
            try:
                sent = c.sock.send(out)
            except _WOULD_BLOCK:
                break
            except OSError as exc:
                self._lost(c, now, f"connection lost: {exc}")
                return
            if sent <= 0:
                break
            del out[:sent]
        if c.closing and not out and (c.ws is None or not c.ws.awaiting_close):
            self._lost(c, now, c.close_reason or "closed by the broker")
            return
        backlog = backlog_report(len(out), c.backlog)
        if backlog is not None and not c.dead:
            # The core holds deliveries for a client that does not read.
            c.backlog = backlog
            try:
                self.broker.output_backlog(c.conn, backlog, now)
            except Exception:
                self._core_failed(c, "output_backlog", now)
                return
            self._pump_again = True  # what waited may be ready to go

    # -- driving the core -----------------------------------------------------------

    def _pump(self, now: float) -> None:
        """Write all pending output, close what the broker closed, re-arm the timer."""
        broker = self.broker
        self._pumps += 1
        pump = self._pumps
        self._pump_again = False
        try:
            output = broker.flush(now)
            to_close = broker.connections_to_close()
        except Exception:
            logger.exception("the broker core raised in flush()")
            return
        written: list[_Conn] = []
        for conn, data in output:
            c = self._by_id.get(conn)
            if c is None or c.dead or c.closing:
                continue
            if not c.accepted:
                note_first_output(c, data)
            c.last_data = data
            c.last_pump = pump
            c.out += data if c.ws is None else c.ws.send(data)
            written.append(c)
        for c in written:
            if not c.dead:
                self._write(c, now)
            if not c.dead and len(c.out) > self.max_buffered_output:
                self._drop_slow_consumer(c, now)
            self._update_interest(c)
        for conn in to_close:
            c = self._by_id.get(conn)
            if c is not None and not c.closing and not c.dead:
                self._close(c, now, goodbye_reason(c, pump))
        if self._auth is not None:
            self._auth.pump()
        try:
            self._timer_at = broker.get_timer()
        except Exception:
            logger.exception("the broker core raised in get_timer()")
            self._timer_at = None

    # -- closing connections ------------------------------------------------------

    def _close(self, c: _Conn, now: float, reason: str) -> None:
        """Close after the buffered output is sent; drop if that takes too long."""
        c.closing = True
        if c.close_reason is None:
            c.close_reason = reason
        c.deadline = now + self.close_timeout
        if c.ws is not None and c.ws.failure is None:
            c.out += c.ws.close()
        self._write(c, now)
        self._update_interest(c)

    def _drop_slow_consumer(self, c: _Conn, now: float) -> None:
        logger.warning(
            "connection %d from %s dropped: slow consumer (%d bytes unsent, limit %d)",
            c.conn,
            c.peer,
            len(c.out),
            self.max_buffered_output,
        )
        c.close_reason = "dropped as a slow consumer"
        self._lost(c, now, c.close_reason)

    def _core_failed(self, c: _Conn, method: str, now: float) -> None:
        logger.exception(
            "the broker core raised in %s() for connection %d from %s; dropping it",
            method,
            c.conn,
            c.peer,
        )
        self._lost(c, now, f"internal error in {method}()")

    def _lost(self, c: _Conn, now: float, reason: str) -> None:
        """Close the socket now and tell the broker the connection is gone."""
        if c.dead:
            return
        c.dead = True
        self._conns.discard(c)
        if c.handshaking:
            c.handshaking = False
            self._tls_gate.release(c.started)
        if c.mask and self._selector is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(c.sock)
        c.mask = 0
        with contextlib.suppress(OSError):
            c.sock.close()
        if self._by_id.pop(c.conn, None) is None:
            return
        logger.info("connection %d from %s closed: %s", c.conn, c.peer, c.close_reason or reason)
        # A will message or a session change may have output for others.
        self._pump_again = True
        try:
            self.broker.connection_lost(c.conn, now)
        except Exception:
            logger.exception("the broker core raised in connection_lost() for %d", c.conn)


def serve(
    host: str | list[str] | None = "127.0.0.1",
    port: int = 1883,
    *,
    broker: Broker | None = None,
    config: BrokerConfig | None = None,
    authenticator: Authenticator | None = None,
    authorizer: Authorizer | None = None,
    ssl: _ssl.SSLContext | None = None,
    ready: threading.Event | None = None,
    started: Callable[[BrokerServer], object] | None = None,
    **options: Any,
) -> None:
    """Serve until :meth:`BrokerServer.close` is called (or Ctrl-C), then shut down.

    ``ready`` is set, and ``started`` called with the server, once it
    listens: ``started`` is how a caller learns the port it got for 0 and
    the server to close from another thread.
    """
    server = BrokerServer(
        broker,
        host=host,
        port=port,
        config=config,
        authenticator=authenticator,
        authorizer=authorizer,
        ssl=ssl,
        **options,
    )
    server.start()
    try:
        if started is not None:
            started(server)
        if ready is not None:
            ready.set()
        server.serve_forever()
    finally:
        server.close()
