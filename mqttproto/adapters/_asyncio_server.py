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

What the server does with the broker (the pump, the backlog, the slow
consumers, closing, the log) is the shared :class:`._driver.Driver`; this
module is its asyncio I/O. On Linux, the connections to listeners without
TLS (TCP, WebSocket, Unix sockets) are served by the server's own transport
(:mod:`._asyncio_tcp`: one ``epoll`` for all of them on the loop, one
shared read buffer, no asyncio transport, handle or task per connection);
those to TLS listeners, and all of them where there is no ``epoll``, by one
:class:`asyncio.Protocol` per connection over asyncio's transports (no
streams, no task per connection). Either hands the driver what the socket
reports, with the loop's monotonic clock (``loop.time()``) as ``now``; the
driver writes, closes and aborts through it. Output is *coalesced*: input
only schedules one pump per loop iteration (``call_soon``), so everything
the reads of one iteration produced for a subscriber goes out in one
write. The driver's deadlines (the broker's timer, the keep-alives, close
timeouts) are one ``loop.call_at`` for the whole server.

Back-pressure and slow consumers
--------------------------------

A client that does not read what the broker sends it makes its unsent
output grow. Above the high-water mark (asyncio's, 64 KiB, on both
transports) the driver stops *reading* from that client (it gets no more
service until it drains its side) until it is back at the low-water mark
(16 KiB). That does
not stop other clients publishing to it, so while it is paused the driver
reports the transport's buffer to :meth:`Broker.output_backlog`: above
``BrokerConfig.max_unsent_bytes`` the core drops QoS 0 messages for that
client and queues QoS 1/2 ones in its session until it drains, and the
client stays connected. As a last resort, once more than
``max_buffered_output`` bytes are waiting anyway, the connection is dropped
(aborted, logged at WARNING as a slow consumer) and the broker is told the
connection was lost, exactly as for a network failure: its will is
published, and a persistent session keeps its QoS 1/2 messages
for the next connection. A connection the broker closed but whose peer does
not read its last bytes is aborted after ``close_timeout`` seconds.

Logging
-------

The core does not log; the driver logs what it sees on the
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

from .._bridge_state import BridgeStatus
from ..auth import Authenticator, Authorizer
from ..bridge import BridgeConfig
from ..broker import Broker
from ..config import BrokerConfig
from ._asyncio_tcp import AVAILABLE as SLIM_AVAILABLE
from ._asyncio_tcp import TcpListening, TcpMux
from ._asyncio_tls import TlsLayer, protocol_factory
from ._bridge import AsyncioBridge
from ._driver import Peer
from ._listener import Listener
from ._server_common import (
    DEFAULT_CLOSE_TIMEOUT,
    DEFAULT_MAX_BUFFERED_OUTPUT,
    DEFAULT_MAX_TLS_HANDSHAKES,
    DEFAULT_TLS_HANDSHAKE_TIMEOUT,
    Endpoint,
    ServerBase,
    endpoint_of,
    listening_sockets,
)

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "DEFAULT_MAX_BUFFERED_OUTPUT",
    "BrokerServer",
    "Endpoint",
    "serve",
    "start_server",
]

logger = logging.getLogger("mqttproto.broker")

#: What serves a listener: asyncio's server, or a TcpMux's listening sockets.
_Listening = asyncio.Server | TcpListening


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
    :param bridges: :class:`~mqttproto.bridge.BridgeConfig` objects: connect
        this broker to other brokers once it listens (see
        ``docs/bridging.rst``; :attr:`bridges` says how each is doing).

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
        bridges: Sequence[BridgeConfig] = (),
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
        self._servers: list[tuple[Listener, _Listening]] = []
        #: The connections to listeners without TLS (see :mod:`._asyncio_tcp`).
        self._mux: TcpMux | None = None
        #: Connections to TLS listeners still in their handshake.
        self._handshaking: set[TlsLayer] = set()
        self._pump_pending = False
        #: The one timer for the driver's deadlines.
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._all_gone = asyncio.Event()
        self._bridges = self._make_bridges(bridges)

    #: Whether listeners without TLS are served by a :class:`._asyncio_tcp.TcpMux`
    #: (Linux) rather than by asyncio's transports.
    _slim = SLIM_AVAILABLE

    def _make_bridges(self, configs: Sequence[BridgeConfig]) -> tuple[AsyncioBridge, ...]:
        """:raises ValueError: two bridges with the same name or client id.
        :raises OSError, ssl.SSLError: a bridge's TLS files cannot be used."""
        names: set[str] = set()
        client_ids: set[str] = set()
        for config in configs:
            if config.name in names:
                raise ValueError(f"two bridges are named {config.name!r}")
            for client_id in (config.client_id, config.local_client_id):
                if client_id in client_ids:
                    raise ValueError(f"bridge {config.name}: client id {client_id!r} is used twice")
                client_ids.add(client_id)
            names.add(config.name)
        return tuple(
            AsyncioBridge(
                config,
                broker=self.broker,
                driver=self._driver,
                pump_soon=self._pump_soon,
                peer_gone=self._peer_gone,
            )
            for config in configs
        )

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
        self._driver.start(
            self.auth_workers, call_soon_threadsafe=loop.call_soon_threadsafe, clock=loop.time
        )
        if self._slim and any(listener.ssl is None for listener in self.listeners):
            self._mux = TcpMux(self, loop)
        try:
            self._require_websocket()
            for listener in self.listeners:
                server = await self._listen(listener)
                self._servers.append((listener, server))
                self._announce(listener, self._sockets_of(listener, server))
            # Bridges connect in the background: an unreachable remote
            # broker never keeps this one from serving.
            for bridge in self._bridges:
                bridge.start()
        except BaseException:
            for _, server in self._servers:
                server.close()
            self._servers.clear()
            self._remove_socket_files()
            self._close_mux()
            self._driver.stop()
            raise

    async def _listen(self, listener: Listener) -> _Listening:
        loop = self._loop
        assert loop is not None
        if self._mux is not None and listener.ssl is None:
            sockets = listening_sockets(listener, default_backlog=100)  # asyncio's default
            if listener.path is not None:
                self._remember_socket_file(listener.path)
            return self._mux.listen(listener, sockets)
        # The sockets are plain: TLS is the protocol's business (TlsLayer).
        factory = protocol_factory(self, listener)
        backlog = 100 if listener.backlog is None else listener.backlog  # asyncio's default
        if listener.transport == "unix":
            path = listener.path
            assert path is not None
            # A stale socket file is replaced (asyncio does that itself).
            server = await loop.create_unix_server(factory, path, backlog=backlog)
            self._remember_socket_file(path)
            return server
        return await loop.create_server(
            factory, listener.host, listener.port, reuse_address=True, backlog=backlog
        )

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
            # The bridges say goodbye while the broker still runs (their
            # local sessions keep what waits for the remote brokers).
            await asyncio.gather(*(bridge.stop() for bridge in self._bridges))
            for layer in list(self._handshaking):
                layer.abort()
            now = loop.time()
            self._tls_gate.close(now)
            self._driver.shutdown(now)
            if self._driver.peers:
                try:
                    await asyncio.wait_for(
                        self._all_gone.wait(),
                        self.close_timeout if timeout is None else timeout,
                    )
                except TimeoutError:
                    for peer in list(self._driver.peers.values()):
                        peer.abort()
                    # abort() reports connection_lost on the next iteration.
                    await asyncio.sleep(0)
            self._wake_at(None)
            for server in servers:
                await server.wait_closed()
            logger.info("server closed")
        finally:
            self._close_mux()
            self._driver.stop()
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
            endpoint_of(listener, sock)
            for listener, server in self._servers
            for sock in self._sockets_of(listener, server)
        )

    @staticmethod
    def _sockets_of(listener: Listener, server: _Listening) -> tuple[socket.socket, ...]:
        # One endpoint for a Unix socket's path, however many sockets asyncio has.
        return server.sockets[:1] if listener.transport == "unix" else server.sockets

    @property
    def bridges(self) -> tuple[BridgeStatus, ...]:
        """How each bridge is doing, in the order they were given."""
        return tuple(bridge.status() for bridge in self._bridges)

    @property
    def is_serving(self) -> bool:
        return bool(self._servers) and all(s.is_serving() for _, s in self._servers)

    @property
    def _peers(self) -> dict[int, Peer]:
        """The open connections by broker connection id (their ``transport``)."""
        return self._driver.peers

    # -- running the driver (called by _Peer and TlsLayer too) ----------------------

    def _now(self) -> float:
        loop = self._loop
        assert loop is not None
        return loop.time()

    def _pump_soon(self) -> None:
        # Once per loop iteration, after all its reads (write coalescing).
        if not self._pump_pending:
            self._pump_pending = True
            loop = self._loop
            assert loop is not None
            loop.call_soon(self._scheduled_pump)

    def _scheduled_pump(self) -> None:
        self._pump_pending = False
        self._driver.pump(self._now())

    def _wake_at(self, deadline: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadline is not None:
            loop = self._loop
            assert loop is not None
            self._timer = loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        driver = self._driver
        driver.pump(self._now())
        if self._timer is None:
            # call_at may run a little early (the loop's clock resolution):
            # then nothing was due, and the same deadline stands.
            self._wake_at(driver.wakeup_at)

    def _peer_gone(self) -> None:
        if self._closing and not self._driver.peers:
            self._all_gone.set()

    def _close_mux(self) -> None:
        if self._mux is not None:
            self._mux.close()
            self._mux = None


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
