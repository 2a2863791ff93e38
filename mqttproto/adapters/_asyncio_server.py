"""The asyncio broker server, re-exported by :mod:`mqttproto.adapters.asyncio`:
serve a sans-IO :class:`~mqttproto.broker.Broker` over TCP, TLS, WebSocket
and Unix sockets (:class:`Listener`; one server can have several).

::

    server = await start_server(host="127.0.0.1", port=0)   # 0: the OS picks a port
    print("listening on", server.port)
    ...
    await server.close()        # DISCONNECT 0x8B to MQTT 5 clients, then close

or, for a process that only serves, ``await serve("127.0.0.1", 1883)`` until
it is cancelled.

How the adapter drives the core
-------------------------------

One :class:`asyncio.Protocol` per TCP connection (no streams: one callback per
read and no task per connection). Every callback reads the loop's monotonic
clock once (``loop.time()``) and hands it to the broker as ``now``:

- ``data_received`` → :meth:`Broker.receive_data`; ``eof_received`` →
  :meth:`Broker.receive_eof`; ``connection_lost`` → :meth:`Broker.connection_lost`.
- Output is *coalesced*: input only schedules one flush per loop iteration
  (``call_soon``), so everything the reads of one iteration produced for a
  subscriber goes out in one ``transport.write``. The flush writes
  :meth:`Broker.flush` to each transport, closes the transports of
  :meth:`Broker.connections_to_close` (after their last bytes) and re-arms the
  single timer from :meth:`Broker.get_timer` with ``loop.call_at``.

Back-pressure and slow consumers
--------------------------------

A client that does not read what the broker sends it makes its transport's
write buffer grow. Above the transport's high-water mark asyncio calls
``pause_writing``: the adapter stops *reading* from that client (it gets no
more service until it drains its side) and resumes at ``resume_writing``.
That does not stop other clients publishing to it, so while it is paused
the adapter reports the transport's buffer to :meth:`Broker.output_backlog`:
above ``BrokerConfig.max_unsent_bytes`` the core drops QoS 0 messages for
that client and queues QoS 1/2 ones in its session until it drains, and the
client stays connected. As a last resort, once more than
``max_buffered_output`` bytes are waiting anyway, the connection is dropped
(aborted, logged at WARNING as a slow consumer) and the broker is told the
connection was lost, exactly as for a network failure: its will is
published, and a persistent session keeps its QoS 1/2 messages
for the next connection. A transport the broker closed but whose peer does
not read its last bytes is aborted after ``close_timeout`` seconds.

Logging
-------

The core does not log; the adapter logs what it sees on the
``mqttproto.broker`` logger: connections opened, accepted, refused and closed
at INFO; a goodbye with a failure reason code (MQTT 5 DISCONNECT ≥ 0x80 from
the broker, i.e. a protocol error of the client), a refused CONNECT and a slow
consumer at WARNING; an exception escaping the core at ERROR (with traceback;
the connection is dropped, the server carries on).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl as _ssl
from collections.abc import Callable, Sequence
from typing import Any

from ..auth import Authenticator, Authorizer
from ..broker import Broker
from ..config import BrokerConfig
from ._asyncio_peers import _Peer
from ._asyncio_tls import TlsLayer, protocol_factory
from ._auth_workers import AuthWorkers
from ._listener import Listener, certificate_common_name
from ._server_common import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_BUFFERED_OUTPUT,
    DEFAULT_MAX_TLS_HANDSHAKES,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    Endpoint,
    ServerBase,
    format_peer,
    source_address,
)
from ._server_log import goodbye_reason, note_first_output

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_BUFFERED_OUTPUT",
    "BrokerServer",
    "Endpoint",
    "serve",
    "start_server",
]

logger = logging.getLogger("mqttproto.broker")


class BrokerServer(ServerBase):
    """A :class:`~mqttproto.broker.Broker` served on one or more listeners.

    By default one TCP listener on ``host``/``port`` (TLS with ``ssl``); pass
    ``listeners`` to serve the same broker over several sockets at once: TCP,
    TLS, WebSocket (``wss`` too) and Unix sockets (see :class:`Listener`)::

        server = BrokerServer(listeners=[
            Listener(port=1883),
            Listener(port=8883, ssl=server_ssl_context("cert.pem", "key.pem")),
            Listener(transport="websocket", port=8080),
            Listener(transport="unix", path="/run/mqtt.sock"),
        ])

    :param broker: the core to serve; a new ``Broker(config,
        authenticator=..., authorizer=...)`` if None (pass either a broker or
        those arguments, not both).
    :param host: the address to listen on (a name, an IP address, or a list
        of them as :meth:`asyncio.loop.create_server` accepts).
    :param port: the TCP port; 0 lets the OS choose (read :attr:`port`).
    :param ssl: an :class:`ssl.SSLContext` to serve MQTT over TLS.
    :param listeners: what to listen on, instead of ``host``, ``port`` and
        ``ssl`` (which are then not used; passing ``ssl`` too is an error).
    :param max_buffered_output: per connection, the bytes of unsent output
        above which the connection is dropped as a slow consumer (a last
        resort: keep it above ``max_unsent_bytes`` plus a largest packet,
        where the core starts holding messages back).
    :param close_timeout: seconds a closing connection may take to send its
        last bytes (also the longest :meth:`close` waits) before it is aborted.
    :param tls_handshake_timeout: seconds a TLS handshake may take.
    :param max_tls_handshakes: TLS handshakes under way at once; a connection
        past it, or past the broker's ``max_connections`` counting them, is
        closed before its handshake (see :attr:`tls_handshakes`).
    :param auth_workers: threads that compute deferred authentications
        (password hashes) off the event loop; None: the CPUs less one, at
        least 1 and at most 4 (see ``docs/broker-auth.rst``).

    Use it with ``async with BrokerServer(...) as server:`` (start, then
    close), or call :meth:`start` and :meth:`close` yourself. All methods
    must be called from the loop the server runs on.
    """

    def __init__(
        self,
        broker: Broker | None = None,
        *,
        host: str | list[str] | None = "127.0.0.1",
        port: int = 1883,
        config: BrokerConfig | None = None,
        authenticator: Authenticator | None = None,
        authorizer: Authorizer | None = None,
        ssl: _ssl.SSLContext | None = None,
        listeners: Sequence[Listener] | None = None,
        max_buffered_output: int = DEFAULT_MAX_BUFFERED_OUTPUT,
        close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
        tls_handshake_timeout: float = DEFAULT_TLS_HANDSHAKE_TIMEOUT,
        max_tls_handshakes: int = DEFAULT_MAX_TLS_HANDSHAKES,
        auth_workers: int | None = None,
    ) -> None:
        super().__init__(
            broker,
            host=host,
            port=port,
            config=config,
            authenticator=authenticator,
            authorizer=authorizer,
            ssl=ssl,
            listeners=listeners,
            max_buffered_output=max_buffered_output,
            close_timeout=close_timeout,
            tls_handshake_timeout=tls_handshake_timeout,
            max_tls_handshakes=max_tls_handshakes,
            auth_workers=auth_workers,
        )
        self.host = host
        self.ssl = ssl
        self._loop: asyncio.AbstractEventLoop | None = None
        self._started = False
        self._servers: list[tuple[Listener, asyncio.Server]] = []
        self._peers: dict[int, _Peer] = {}
        #: Connections to TLS listeners still in their handshake.
        self._handshaking: set[TlsLayer] = set()
        self._flush_pending = False
        self._pumps = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._all_gone = asyncio.Event()
        self._auth: AuthWorkers | None = None

    # -- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Listen on every listener; returns once all of them accept connections.

        If one cannot listen (an address in use, a missing ``wsproto``), the
        ones already listening are closed again and the error propagates.

        :raises OSError: a socket cannot be bound.
        :raises ImportError: a WebSocket listener without ``wsproto`` installed.
        """
        if self._started:
            raise RuntimeError("the server was already started")
        if self._closing:
            raise RuntimeError("the server was closed")
        self._started = True
        self._loop = loop = asyncio.get_running_loop()
        self._auth = AuthWorkers(
            self.broker,
            self.auth_workers,
            call_soon_threadsafe=loop.call_soon_threadsafe,
            clock=loop.time,
            answered=self._schedule_flush,
        )
        self._auth.start()
        try:
            for listener in self.listeners:
                server = await self._listen(listener)
                self._servers.append((listener, server))
                logger.info(
                    "listening on %s (%s)",
                    ", ".join(str(e) for e in self._endpoints_of(listener, server)),
                    listener.kind,
                )
        except BaseException:
            for _, server in self._servers:
                server.close()
            self._servers.clear()
            self._remove_socket_files()
            self._auth.close()
            raise

    async def _listen(self, listener: Listener) -> asyncio.Server:
        loop = self._loop
        assert loop is not None
        # The sockets are plain: TLS is the protocol's business (TlsLayer).
        factory = protocol_factory(self, listener)
        if listener.transport == "unix":
            path = listener.path
            assert path is not None
            # A stale socket file is replaced (asyncio does that itself).
            server = await loop.create_unix_server(factory, path)
            self._remember_socket_file(path)
            return server
        return await loop.create_server(factory, listener.host, listener.port, reuse_address=True)

    async def serve_forever(self) -> None:
        """Start if needed, then wait until :meth:`close` has finished."""
        if not self._started and not self._closing:
            await self.start()
        await self._closed.wait()

    async def close(self, timeout: float | None = None) -> None:
        """Stop listening, shut the broker down and close every connection.

        The broker's :meth:`~mqttproto.broker.Broker.shutdown` output (an MQTT 5
        client gets DISCONNECT 0x8B *Server shutting down*) is written first;
        connections that have not closed after ``timeout`` seconds (default
        ``close_timeout``) are aborted. Calling it again waits for the first call.
        """
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        servers, loop = [server for _, server in self._servers], self._loop
        try:
            if not servers or loop is None:
                return
            for server in servers:
                server.close()
            self._remove_socket_files()
            for layer in list(self._handshaking):
                layer.abort()
            now = loop.time()
            self._tls_gate.close(now)
            try:
                self.broker.shutdown(now)
            except Exception:
                logger.exception("the broker core raised in shutdown()")
            self._pump(now)
            for peer in list(self._peers.values()):
                if not peer.closing:
                    self._close_peer(peer, "server shut down")
            if self._peers:
                try:
                    await asyncio.wait_for(
                        self._all_gone.wait(),
                        self.close_timeout if timeout is None else timeout,
                    )
                except TimeoutError:
                    for peer in list(self._peers.values()):
                        if peer.transport is not None:
                            peer.transport.abort()
                    # abort() reports connection_lost on the next iteration.
                    await asyncio.sleep(0)
            self._cancel_timer()
            for server in servers:
                await server.wait_closed()
            logger.info("server closed")
        finally:
            if self._auth is not None:
                self._auth.close()
            self._closed.set()

    async def __aenter__(self) -> BrokerServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- introspection --------------------------------------------------------------

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        """The listening sockets (empty before :meth:`start` and after :meth:`close`)."""
        if self._closing:
            return ()
        return tuple(sock for _, server in self._servers for sock in server.sockets)

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every listening socket with its listener, in the listeners' order."""
        if self._closing:
            return ()
        return tuple(
            endpoint
            for listener, server in self._servers
            for endpoint in self._endpoints_of(listener, server)
        )

    @staticmethod
    def _endpoints_of(listener: Listener, server: asyncio.Server) -> list[Endpoint]:
        if listener.transport == "unix":
            return [Endpoint(listener, None, listener.path)]
        found = []
        for sock in server.sockets:
            name = sock.getsockname()
            found.append(Endpoint(listener, (str(name[0]), int(name[1]))))
        return found

    @property
    def is_serving(self) -> bool:
        return bool(self._servers) and all(s.is_serving() for _, s in self._servers)

    @property
    def connection_count(self) -> int:
        """Open TCP connections (including ones still closing)."""
        return len(self._peers)

    # -- transport callbacks (called by _Peer) -------------------------------------

    def _now(self) -> float:
        loop = self._loop
        assert loop is not None
        return loop.time()

    def _connection_made(self, peer: _Peer, transport: asyncio.Transport) -> None:
        peer.transport = transport
        listener = peer.listener
        if listener.transport == "unix":
            peer.peer = f"unix:{listener.path}"
        else:
            peer.peer = format_peer(transport.get_extra_info("peername"))
        if self._closing:
            # Accepted in the instant the listener was closing.
            transport.abort()
            return
        identity = None
        if listener.use_identity_as_username:
            identity = certificate_common_name(transport.get_extra_info("peercert"))
            if identity is None:
                # Nobody to be: refuse before MQTT starts (mosquitto refuses too).
                logger.warning(
                    "connection from %s refused: no client certificate with a subject CN",
                    peer.peer,
                )
                transport.abort()
                return
        try:
            peer.conn = self.broker.open_connection(
                self._now(),
                peer=peer.peer,
                username=identity,
                address=source_address(listener, transport.get_extra_info("peername")),
            )
        except Exception:
            logger.exception("the broker core raised in open_connection() for %s", peer.peer)
            transport.abort()
            return
        self._peers[peer.conn] = peer
        logger.info("connection %d opened from %s", peer.conn, peer.peer)

    def _data_received(self, peer: _Peer, data: bytes) -> None:
        if peer.closing:
            return
        try:
            self.broker.receive_data(peer.conn, data, self._now())
        except Exception:
            self._core_failed(peer, "receive_data")
            return
        self._schedule_flush()

    def _report_backlog(self, peer: _Peer) -> None:
        """Tell the core what the transport has not written, so that its
        ``max_unsent_bytes`` policy (QoS 0 dropped, QoS 1/2 queued) applies
        to a client that reads slowly. Reported while writing is paused and
        once when it resumes, the only times it can matter."""
        transport = peer.transport
        if transport is None or peer.closing:
            return
        backlog = transport.get_write_buffer_size()
        if backlog == peer.backlog:
            return
        peer.backlog = backlog
        try:
            self.broker.output_backlog(peer.conn, backlog, self._now())
        except Exception:
            self._core_failed(peer, "output_backlog")
            return
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_pending:
            self._flush_pending = True
            loop = self._loop
            assert loop is not None
            loop.call_soon(self._scheduled_flush)

    def _eof_received(self, peer: _Peer) -> None:
        if peer.conn not in self._peers:
            return
        if peer.close_reason is None:
            peer.close_reason = "peer closed the connection"
        now = self._now()
        try:
            self.broker.receive_eof(peer.conn, now)
        except Exception:
            self._core_failed(peer, "receive_eof")
            return
        self._pump(now)

    def _connection_lost(self, peer: _Peer, exc: Exception | None) -> None:
        if peer.close_timer is not None:
            peer.close_timer.cancel()
            peer.close_timer = None
        if self._peers.pop(peer.conn, None) is None:
            return
        reason = peer.close_reason
        if reason is None:
            reason = f"connection lost: {exc}" if exc is not None else "peer closed the connection"
        logger.info("connection %d from %s closed: %s", peer.conn, peer.peer, reason)
        now = self._now()
        try:
            self.broker.connection_lost(peer.conn, now)
        except Exception:
            logger.exception("the broker core raised in connection_lost() for %d", peer.conn)
        # A will message or a session change may have output for others.
        self._pump(now)
        if self._closing and not self._peers:
            self._all_gone.set()

    # -- driving the core ---------------------------------------------------------

    def _scheduled_flush(self) -> None:
        self._flush_pending = False
        self._pump(self._now())

    def _pump(self, now: float) -> None:
        """Write all pending output, close what the broker closed, re-arm the timer."""
        broker = self.broker
        peers = self._peers
        self._pumps += 1
        pump = self._pumps
        limit = self.max_buffered_output
        try:
            output = broker.flush(now)
            to_close = broker.connections_to_close()
        except Exception:
            logger.exception("the broker core raised in flush()")
            return
        for conn, data in output:
            peer = peers.get(conn)
            if peer is None or peer.transport is None or peer.transport.is_closing():
                continue
            if not peer.accepted:
                note_first_output(peer, data)
            peer.send(data)
            peer.last_data = data
            peer.last_pump = pump
            if peer.writing_paused:
                if peer.transport.get_write_buffer_size() > limit:
                    self._drop_slow_consumer(peer)
                else:
                    self._report_backlog(peer)
        for conn in to_close:
            peer = peers.get(conn)
            if peer is not None and not peer.closing:
                self._close_peer(peer, goodbye_reason(peer, pump))
        if self._auth is not None:
            self._auth.pump()
        self._arm_timer()

    def _arm_timer(self) -> None:
        try:
            deadline = self.broker.get_timer()
        except Exception:
            logger.exception("the broker core raised in get_timer()")
            deadline = None
        if deadline == self._timer_at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        if deadline is None:
            self._timer = None
        else:
            loop = self._loop
            assert loop is not None
            self._timer = loop.call_at(deadline, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._timer_at = None

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        now = self._now()
        try:
            self.broker.handle_timer(now)
        except Exception:
            logger.exception("the broker core raised in handle_timer()")
        self._pump(now)

    # -- closing connections ------------------------------------------------------

    def _close_peer(self, peer: _Peer, reason: str) -> None:
        """Close after the buffered output is sent; abort if that takes too long."""
        peer.closing = True
        if peer.close_reason is None:
            peer.close_reason = reason
        if peer.transport is None:
            return
        peer.close_transport()
        loop = self._loop
        assert loop is not None
        peer.close_timer = loop.call_later(self.close_timeout, self._close_overdue, peer)

    def _close_overdue(self, peer: _Peer) -> None:
        peer.close_timer = None
        if peer.transport is not None and peer.conn in self._peers:
            logger.warning(
                "connection %d from %s: last bytes not sent within %.1f s; aborted",
                peer.conn,
                peer.peer,
                self.close_timeout,
            )
            peer.transport.abort()

    def _drop_slow_consumer(self, peer: _Peer) -> None:
        assert peer.transport is not None
        logger.warning(
            "connection %d from %s dropped: slow consumer (%d bytes unsent, limit %d)",
            peer.conn,
            peer.peer,
            peer.transport.get_write_buffer_size(),
            self.max_buffered_output,
        )
        peer.closing = True
        peer.close_reason = "dropped as a slow consumer"
        # connection_lost (and so Broker.connection_lost) follows on the next
        # loop iteration.
        peer.transport.abort()

    def _core_failed(self, peer: _Peer, method: str) -> None:
        logger.exception(
            "the broker core raised in %s() for connection %d from %s; dropping it",
            method,
            peer.conn,
            peer.peer,
        )
        peer.closing = True
        peer.close_reason = f"internal error in {method}()"
        if peer.transport is not None:
            peer.transport.abort()


async def start_server(
    host: str | list[str] | None = "127.0.0.1",
    port: int = 1883,
    *,
    broker: Broker | None = None,
    config: BrokerConfig | None = None,
    authenticator: Authenticator | None = None,
    authorizer: Authorizer | None = None,
    ssl: _ssl.SSLContext | None = None,
    **options: Any,
) -> BrokerServer:
    """Create and start a :class:`BrokerServer`; ``options`` go to its constructor."""
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
    await server.start()
    return server


async def serve(
    host: str | list[str] | None = "127.0.0.1",
    port: int = 1883,
    *,
    broker: Broker | None = None,
    config: BrokerConfig | None = None,
    authenticator: Authenticator | None = None,
    authorizer: Authorizer | None = None,
    ssl: _ssl.SSLContext | None = None,
    ready: asyncio.Event | None = None,
    started: Callable[[BrokerServer], object] | None = None,
    **options: Any,
) -> None:
    """Serve until cancelled, then shut down cleanly (see :meth:`BrokerServer.close`).

    ``ready`` is set, and ``started`` called with the server, once it
    listens (``started`` is how a caller that asked for port 0 learns the port).
    """
    server = await start_server(
        host,
        port,
        broker=broker,
        config=config,
        authenticator=authenticator,
        authorizer=authorizer,
        ssl=ssl,
        **options,
    )
    try:
        if started is not None:
            started(server)
        if ready is not None:
            ready.set()
        await server.serve_forever()
    finally:
        await asyncio.shield(server.close())
