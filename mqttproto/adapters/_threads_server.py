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

What the server does with the broker (the pump, the backlog, the slow
consumers, closing, the log) is the shared :class:`._driver.Driver`; this
module and :mod:`._threads_peers` are its I/O. One thread, one
:mod:`selectors` selector over every socket (the listening ones, the
connections, and a socket pair that wakes the thread for
:meth:`~BrokerServer.close` and the authentication workers); no thread per
connection, and no lock: only the I/O thread calls the driver. Each pass of
the loop reads :func:`time.monotonic` once after ``select`` and:

- accepts connections (finishing the TLS handshake before the broker hears
  of one: the client certificate's CN may be its username), and hands what
  is read to the driver;
- then pumps the driver *once*: what every read of the pass produced for a
  connection goes out in one ``send`` (write coalescing), and the broker's
  timer is handled when due (the driver's next deadline is also
  ``select``'s timeout).

Back-pressure and slow consumers
--------------------------------

Bytes a client does not read wait in its output buffer. Above
:data:`._driver.PAUSE_READING_ABOVE` bytes the driver stops reading from
that client (it gets no service until it drains its side) and reports the
buffer to :meth:`Broker.output_backlog`, so the core holds deliveries for it
past ``max_unsent_bytes`` (QoS 0 dropped, QoS 1/2 queued); above
``max_buffered_output``, a last resort, the connection is dropped as a slow
consumer (logged at WARNING) and the broker told it was lost, as for a
network failure: its will is published, a persistent session keeps its QoS
1/2 messages. A connection closed by the broker whose peer does not take its
last bytes is dropped after ``close_timeout`` seconds. Logging is the
asyncio server's (see there).
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
from typing import Any

from ..auth import Authenticator, Authorizer
from ..broker import Broker
from ..config import BrokerConfig
from ._listener import Listener
from ._server_common import Endpoint, ServerBase, listening_sockets, peer_name
from ._threads_peers import WOULD_BLOCK, _Peer

__all__ = ["BrokerServer", "serve"]

logger = logging.getLogger("mqttproto.broker")

#: Connections accepted per listener per pass (the rest wait for the next).
ACCEPTS_PER_PASS = 64


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
        #: The driver wants a pump: do not sleep in select() before it.
        self._pump_again = False
        self._closed = threading.Event()
        #: Every accepted socket, TLS handshakes included.
        self._conns: set[_Peer] = set()
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
        self._require_websocket()
        selector = selectors.DefaultSelector()
        endpoints: list[Endpoint] = []
        try:
            for listener in self.listeners:
                sockets = listening_sockets(listener, default_backlog=128)
                if listener.path is not None:
                    self._remember_socket_file(listener.path)
                for sock in sockets:
                    self._listening.append((listener, sock))
                    selector.register(sock, selectors.EVENT_READ, self._acceptor(listener, sock))
                endpoints.extend(self._announce(listener, sockets))
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
        self._endpoints = tuple(endpoints)
        self._selector = selector
        self._driver.start(
            self.auth_workers,
            call_soon_threadsafe=self._call_soon_threadsafe,
            clock=time.monotonic,
        )
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

    @property
    def is_serving(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stop_requested

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

    def _pump_soon(self) -> None:
        # Each pass pumps once at its end; this only keeps select() from sleeping.
        self._pump_again = True

    def _wake_at(self, deadline: float | None) -> None:
        # Nothing to arm: each pass reads driver.wakeup_at for select()'s timeout.
        return

    def _run(self) -> None:
        selector = self._selector
        assert selector is not None
        driver = self._driver
        try:
            while True:
                now = time.monotonic()
                for key, mask in selector.select(self._select_timeout(now)):
                    key.data(mask, time.monotonic())
                now = time.monotonic()
                if self._stop_requested and not self._stopping:
                    self._begin_shutdown(now)
                self._check_handshakes(now)
                self._pump_again = False
                driver.pump(now)
                if self._stopping and (not self._conns or now >= self._stop_deadline):
                    break
        except Exception:
            logger.exception("the broker server's I/O thread failed")
        finally:
            now = time.monotonic()
            for peer in list(self._conns):
                peer.close_now(now, "server shut down")
            for _, sock in self._listening:
                sock.close()
            self._listening.clear()
            self._remove_socket_files()
            driver.stop()
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
        if self._driver.wakeup_at is not None:
            deadlines.append(self._driver.wakeup_at)
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
        self._driver.shutdown(now)
        for peer in list(self._conns):
            if peer.handshaking:
                peer.close_now(now, "server shut down")

    def _check_handshakes(self, now: float) -> None:
        for peer in [c for c in self._conns if c.deadline is not None and now >= c.deadline]:
            self._tls_gate.timed_out(now, peer.peer)
            peer.close_now(now, "TLS handshake timed out")

    # -- accepting --------------------------------------------------------------------

    def _acceptor(self, listener: Listener, sock: socket.socket) -> Callable[[int, float], None]:
        def accept(mask: int, now: float) -> None:
            for _ in range(ACCEPTS_PER_PASS):
                try:
                    client, address = sock.accept()
                except WOULD_BLOCK:
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
        name = peer_name(listener, address)
        if listener.transport != "unix":
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._stopping:
            client.close()
            return
        # The bounds first, before any TLS state (the gate logs and counts).
        if listener.ssl is not None and not self._tls_gate.admit(now, name):
            client.close()
            return
        peer = _Peer(self, client, listener, name)
        self._conns.add(peer)
        peer.start(now, self.tls_handshake_timeout)


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
