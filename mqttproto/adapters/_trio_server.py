"""The broker server on trio, re-exported by :mod:`mqttproto.adapters.trio`:
a sans-IO :class:`~mqttproto.broker.Broker` served over TCP, TLS, WebSocket
and Unix sockets (needs the ``trio`` extra).

::

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve, "127.0.0.1", 0)   # 0: the OS picks
        print("listening on", server.port)
        ...
        await server.close()     # DISCONNECT 0x8B to MQTT 5 clients, then close

or ``async with BrokerServer(port=0) as server:``; ``serve`` alone serves
until it is cancelled, then shuts down cleanly.

How the adapter drives the core
-------------------------------

Everything runs in trio tasks on one thread, so the broker needs no lock:
``trio.serve_listeners`` starts one handler task per connection, which
reads the stream into :meth:`Broker.receive_data` and runs a writer task
beside it. Reads do not flush: they wake the server's single *pump* task,
which runs after the reads that were ready together and writes everything
:meth:`Broker.flush` produced for a connection in one ``send_all`` (write
coalescing); it also closes what :meth:`Broker.connections_to_close` names
and is the timer task, sleeping until :meth:`Broker.get_timer`'s deadline
(on ``trio.current_time()``, the clock every ``now`` comes from).

Back-pressure and slow consumers are handled as in the threads server: a
connection with more than :data:`PAUSE_READING_ABOVE` unsent bytes is not
read from, and its backlog is reported to the core, which holds deliveries
for it past ``max_unsent_bytes``; one with more than ``max_buffered_output``
(a last resort) is dropped as a slow consumer; a closing connection gets
``close_timeout`` seconds for its last bytes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket as _socket
import ssl as _ssl
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import trio

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
from ._trio_tls import tls_handshake

if TYPE_CHECKING:  # without importing wsproto at run time
    from ._websocket_server import ServerWebSocket

__all__ = ["PAUSE_READING_ABOVE", "BrokerServer", "serve"]

logger = logging.getLogger("mqttproto.broker")

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Peer:
    """One connection: its stream, output buffer and the writer's wake-up."""

    __slots__ = (
        "accepted",
        "backlog",
        "close_reason",
        "closing",
        "conn",
        "dead",
        "drained",
        "in_flight",
        "last_data",
        "last_pump",
        "listener",
        "out",
        "peer",
        "scope",
        "stream",
        "wake",
        "ws",
    )

    def __init__(self, stream: trio.abc.Stream, listener: Listener, peer: str) -> None:
        self.stream = stream
        self.listener = listener
        self.peer = peer
        self.conn = -1
        self.accepted = False
        self.close_reason: str | None = None
        #: No more input for the broker; the stream closes after its output.
        self.closing = False
        #: Dropped: nothing more is written.
        self.dead = False
        self.out = bytearray()
        #: Bytes handed to ``send_all`` that have not all gone yet.
        self.in_flight = 0
        #: What Broker.output_backlog was last told.
        self.backlog = 0
        self.last_data = b""
        self.last_pump = -1
        self.scope: trio.CancelScope | None = None
        self.wake = trio.Event()
        self.drained = trio.Event()
        self.ws: ServerWebSocket | None = None

    def pending(self) -> int:
        return len(self.out) + self.in_flight


def _broken_in(group: ExceptionGroup[Exception]) -> Exception:
    """The first broken-stream error of ``group`` if that is all it holds, else ``group``."""
    broken, other = group.split(_BROKEN)
    if broken is None or other is not None:
        return group
    first = broken.exceptions[0]
    return _broken_in(first) if isinstance(first, ExceptionGroup) else first


def _transport_socket(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    inner: Any = stream
    while isinstance(inner, trio.SSLStream):
        inner = inner.transport_stream
    return inner.socket if isinstance(inner, trio.SocketStream) else None


class BrokerServer(ServerBase):
    """A :class:`~mqttproto.broker.Broker` served on trio.

    The arguments are those of the asyncio
    :class:`mqttproto.adapters.asyncio.BrokerServer`: a broker (or its
    ``config``, ``authenticator`` and ``authorizer``), one TCP listener on
    ``host``/``port`` (TLS with ``ssl``) or several ``listeners``,
    ``max_buffered_output``, ``close_timeout``, ``tls_handshake_timeout``,
    ``max_tls_handshakes`` and ``auth_workers`` (the threads that compute
    deferred authentications, such as password hashes).

    Run it with ``await nursery.start(server.run)`` (returns once it
    listens) and stop it with :meth:`close`, or use ``async with
    BrokerServer(...) as server:``. Call it from the trio thread only.
    """

    def __init__(self, broker: Broker | None = None, **options: Any) -> None:
        super().__init__(broker, **options)
        self._started = False
        self._stopping = False
        self._stop_timeout = self.close_timeout
        self._stop = trio.Event()
        self._closed = trio.Event()
        self._all_gone = trio.Event()
        self._peers: dict[int, _Peer] = {}
        self._handlers = 0
        #: The cancel scopes of the TLS handshakes under way.
        self._handshakes: set[trio.CancelScope] = set()
        self._pump_wanted = trio.Event()
        self._timer_at: float | None = None
        self._pumps = 0
        self._nursery_cm: Any = None
        self._auth: AuthWorkers | None = None

    # -- lifecycle ----------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[BrokerServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, report the server to ``task_status``, serve until closed or cancelled.

        On the way out (:meth:`close`, or cancellation) the broker is shut
        down and connections get ``close_timeout`` seconds to take their
        last bytes.

        :raises OSError: a socket cannot be bound (nothing is left listening).
        :raises ImportError: a WebSocket listener without ``wsproto`` installed.
        """
        if self._started:
            raise RuntimeError("the server was already started")
        self._started = True
        try:
            opened = await self._open_listeners()
        except BaseException:
            self._remove_socket_files()
            self._closed.set()
            raise
        self._auth = AuthWorkers(
            self.broker,
            self.auth_workers,
            call_soon_threadsafe=trio.lowlevel.current_trio_token().run_sync_soon,
            clock=trio.current_time,
            answered=self._wake_pump,
        )
        self._auth.start()
        try:
            async with trio.open_nursery() as connections:
                connections.start_soon(self._pump_task)
                async with trio.open_nursery() as listening:
                    for listener, trio_listeners in opened:
                        listening.start_soon(
                            partial(
                                trio.serve_listeners,
                                partial(self._handle, listener),
                                trio_listeners,
                                handler_nursery=connections,
                            )
                        )
                    task_status.started(self)
                    try:
                        await self._stop.wait()
                    finally:
                        listening.cancel_scope.cancel()
                        with trio.CancelScope(shield=True):
                            await self._shutdown(opened)
                connections.cancel_scope.cancel()
        finally:
            self._auth.close()
            self._remove_socket_files()
            logger.info("server closed")
            self._closed.set()

    async def close(self, timeout: float | None = None) -> None:
        """Stop listening, shut the broker down and close every connection.

        The broker's :meth:`~mqttproto.broker.Broker.shutdown` output (an MQTT 5
        client gets DISCONNECT 0x8B *Server shutting down*) is written first;
        connections still open after ``timeout`` seconds (default
        ``close_timeout``) are dropped. Returns once :meth:`run` has finished.
        """
        if not self._started:
            self._closed.set()
            return
        if not self._stop.is_set():
            self._stop_timeout = self.close_timeout if timeout is None else timeout
            self._stop.set()
        await self._closed.wait()

    async def __aenter__(self) -> BrokerServer:
        self._nursery_cm = trio.open_nursery()
        nursery = await self._nursery_cm.__aenter__()
        try:
            await nursery.start(self.run)
        except BaseException as exc:
            await self._nursery_cm.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self.close()
        finally:
            await self._nursery_cm.__aexit__(*exc_info)

    async def _open_listeners(self) -> list[tuple[Listener, list[trio.abc.Listener[Any]]]]:
        if any(listener.transport == "websocket" for listener in self.listeners):
            try:
                from . import _websocket_server  # noqa: F401
            except ImportError as exc:
                raise ImportError(
                    "a WebSocket listener needs wsproto: pip install 'mqttproto[websocket]'"
                ) from exc
        opened: list[tuple[Listener, list[trio.abc.Listener[Any]]]] = []
        endpoints: list[Endpoint] = []
        try:
            for listener in self.listeners:
                sockets = await self._listening_sockets(listener)
                # Plain sockets even for TLS: tls_handshake wraps a stream
                # only once the handshake bounds admit it.
                found: list[trio.abc.Listener[Any]] = list(sockets)
                opened.append((listener, found))
                mine = [self._endpoint(listener, s) for s in sockets]
                endpoints.extend(mine)
                logger.info("listening on %s (%s)", ", ".join(str(e) for e in mine), listener.kind)
        except BaseException:
            with trio.CancelScope(shield=True):
                for _, found in opened:
                    for trio_listener in found:
                        await trio_listener.aclose()
            raise
        self._endpoints = tuple(endpoints)
        return opened

    async def _listening_sockets(self, listener: Listener) -> list[trio.SocketListener]:
        if listener.transport != "unix":
            hosts = listener.host if isinstance(listener.host, list) else [listener.host]
            found: list[trio.SocketListener] = []
            try:
                for host in hosts:
                    found.extend(await trio.open_tcp_listeners(listener.port, host=host))
            except BaseException:
                for sock_listener in found:
                    sock_listener.socket.close()
                raise
            return found
        path = listener.path
        assert path is not None
        remove_stale_socket(path)
        sock = trio.socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            await sock.bind(path)
            sock.listen(128)
        except BaseException:
            sock.close()
            raise
        self._remember_socket_file(path)
        return [trio.SocketListener(sock)]

    @staticmethod
    def _endpoint(listener: Listener, sock_listener: trio.SocketListener) -> Endpoint:
        if listener.transport == "unix":
            return Endpoint(listener, None, listener.path)
        name = sock_listener.socket.getsockname()
        return Endpoint(listener, (str(name[0]), int(name[1])))

    async def _shutdown(self, opened: list[tuple[Listener, list[trio.abc.Listener[Any]]]]) -> None:
        self._stopping = True
        for _, found in opened:
            for trio_listener in found:
                await trio_listener.aclose()
        self._remove_socket_files()
        for scope in self._handshakes:
            scope.cancel()
        now = trio.current_time()
        self._tls_gate.close(now)
        try:
            self.broker.shutdown(now)
        except Exception:
            logger.exception("the broker core raised in shutdown()")
        self._pump(now)
        for peer in list(self._peers.values()):
            if not peer.closing:
                self._close(peer, "server shut down")
        with trio.move_on_after(self._stop_timeout):
            while self._handlers:
                self._all_gone = trio.Event()
                await self._all_gone.wait()

    # -- introspection --------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every listening socket with its listener (empty unless serving)."""
        return () if self._stop.is_set() or not self._started else self._endpoints

    @property
    def connection_count(self) -> int:
        """Open connections (including ones still closing)."""
        return len(self._peers)

    # -- one connection -------------------------------------------------------------

    async def _handle(self, listener: Listener, stream: trio.abc.Stream) -> None:
        """The task of one accepted connection; never raises (it would end the server)."""
        self._handlers += 1
        sock = _transport_socket(stream)
        if listener.transport == "unix":
            name = f"unix:{listener.path}"
        else:
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
            name = format_peer(sock.getpeername() if sock is not None else None)
        peer = _Peer(stream, listener, name)
        try:
            if listener.ssl is not None and not await tls_handshake(self, peer, listener.ssl):
                return
            if self._stopping or not self._open(peer):
                return
            try:
                async with trio.open_nursery() as nursery:
                    peer.scope = nursery.cancel_scope
                    nursery.start_soon(self._writer, peer)
                    await self._reader(peer)
            except ExceptionGroup as group:
                # The nursery wraps a lost stream (a reset, a TLS client
                # gone without close_notify): unwrap it for the next clause.
                raise _broken_in(group) from None
        except _BROKEN as exc:
            if peer.close_reason is None:
                peer.close_reason = f"connection lost: {exc or type(exc).__name__}"
        except Exception:
            logger.exception("connection from %s failed in the server", peer.peer)
            peer.close_reason = peer.close_reason or "internal error"
        finally:
            self._lost(peer)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(peer.stream)
            self._handlers -= 1
            self._all_gone.set()

    def _open(self, peer: _Peer) -> bool:
        listener = peer.listener
        identity = None
        if listener.use_identity_as_username:
            stream = peer.stream
            assert isinstance(stream, trio.SSLStream)
            identity = certificate_common_name(stream.getpeercert())
            if identity is None:
                logger.warning(
                    "connection from %s refused: no client certificate with a subject CN",
                    peer.peer,
                )
                return False
        if listener.transport == "websocket":
            from ._websocket_server import ServerWebSocket

            peer.ws = ServerWebSocket(listener.websocket_path)
        sock = _transport_socket(peer.stream)
        try:
            sockaddr = sock.getpeername() if sock is not None else None
        except OSError:
            sockaddr = None
        try:
            peer.conn = self.broker.open_connection(
                trio.current_time(),
                peer=peer.peer,
                username=identity,
                address=source_address(listener, sockaddr),
            )
        except Exception:
            logger.exception("the broker core raised in open_connection() for %s", peer.peer)
            return False
        self._peers[peer.conn] = peer
        logger.info("connection %d opened from %s", peer.conn, peer.peer)
        return True

    async def _reader(self, peer: _Peer) -> None:
        """Read until EOF; then wait for the writer (it ends the connection)."""
        stream = peer.stream
        while True:
            while peer.pending() > PAUSE_READING_ABOVE and not peer.dead:
                # The client is not reading: no service until it drains.
                peer.drained = trio.Event()
                await peer.drained.wait()
            data = await stream.receive_some(READ_SIZE)
            if not data:
                self._eof(peer)
                break
            self._received(peer, bytes(data))
        await trio.sleep_forever()

    async def _writer(self, peer: _Peer) -> None:
        stream = peer.stream
        while not peer.dead:
            if peer.out:
                data = bytes(peer.out)
                peer.out.clear()
                peer.in_flight = len(data)
                await stream.send_all(data)
                peer.in_flight = 0
                if peer.pending() <= PAUSE_READING_ABOVE:
                    peer.drained.set()
                self._report_backlog(peer)
                continue
            if peer.closing and (peer.ws is None or not peer.ws.awaiting_close):
                break
            peer.wake = trio.Event()
            await peer.wake.wait()
        assert peer.scope is not None
        peer.scope.cancel()

    def _received(self, peer: _Peer, data: bytes) -> None:
        ws = peer.ws
        if ws is not None:
            data = ws.receive(data)
            self._queue(peer, ws.data_to_send())
        if data and not peer.closing:
            try:
                self.broker.receive_data(peer.conn, data, trio.current_time())
            except Exception:
                self._core_failed(peer, "receive_data")
                return
            self._pump_wanted.set()
        if ws is None:
            return
        if ws.failure is not None:
            logger.warning("connection %d from %s: %s", peer.conn, peer.peer, ws.failure)
            self._close(peer, ws.failure)
        elif ws.client_closed is not None:
            if peer.close_reason is None and not peer.closing:
                peer.close_reason = f"WebSocket closed by the client (code {ws.client_closed})"
            self._eof(peer)
        peer.wake.set()

    def _eof(self, peer: _Peer) -> None:
        """The peer's stream ended: tell the broker, send what is left, close."""
        if peer.closing:
            return
        if peer.close_reason is None:
            peer.close_reason = "peer closed the connection"
        now = trio.current_time()
        try:
            self.broker.receive_eof(peer.conn, now)
        except Exception:
            self._core_failed(peer, "receive_eof")
            return
        self._pump(now)
        if not peer.closing:
            self._close(peer, peer.close_reason)

    def _queue(self, peer: _Peer, data: bytes) -> None:
        if data and not peer.dead:
            peer.out += data
            peer.wake.set()

    # -- driving the core -----------------------------------------------------------

    def _wake_pump(self) -> None:
        self._pump_wanted.set()

    async def _pump_task(self) -> None:
        """Flush after reads (once for all that were ready together) and at the timer."""
        while True:
            deadline = math.inf if self._timer_at is None else self._timer_at
            with trio.move_on_at(deadline):
                await self._pump_wanted.wait()
            self._pump_wanted = trio.Event()
            now = trio.current_time()
            if self._timer_at is not None and now >= self._timer_at:
                self._timer_at = None
                try:
                    self.broker.handle_timer(now)
                except Exception:
                    logger.exception("the broker core raised in handle_timer()")
            self._pump(now)

    def _pump(self, now: float) -> None:
        """Queue all pending output, close what the broker closed, re-arm the timer."""
        broker = self.broker
        self._pumps += 1
        pump = self._pumps
        try:
            output = broker.flush(now)
            to_close = broker.connections_to_close()
        except Exception:
            logger.exception("the broker core raised in flush()")
            return
        for conn, data in output:
            peer = self._peers.get(conn)
            if peer is None or peer.dead or peer.closing:
                continue
            if not peer.accepted:
                note_first_output(peer, data)
            peer.last_data = data
            peer.last_pump = pump
            self._queue(peer, data if peer.ws is None else peer.ws.send(data))
            if peer.pending() > self.max_buffered_output:
                self._drop_slow_consumer(peer)
            else:
                self._report_backlog(peer)
        for conn in to_close:
            peer = self._peers.get(conn)
            if peer is not None and not peer.closing and not peer.dead:
                self._close(peer, goodbye_reason(peer, pump))
        if self._auth is not None:
            self._auth.pump()
        try:
            timer_at = broker.get_timer()
        except Exception:
            logger.exception("the broker core raised in get_timer()")
            timer_at = None
        if timer_at != self._timer_at:
            self._timer_at = timer_at
            # Wake the pump task so it sleeps until the new deadline.
            self._pump_wanted.set()

    # -- closing connections ------------------------------------------------------

    def _close(self, peer: _Peer, reason: str) -> None:
        """Close after the buffered output is sent; drop if that takes too long."""
        peer.closing = True
        if peer.close_reason is None:
            peer.close_reason = reason
        if peer.ws is not None and peer.ws.failure is None:
            self._queue(peer, peer.ws.close())
        peer.wake.set()
        if peer.scope is not None:
            peer.scope.deadline = min(peer.scope.deadline, trio.current_time() + self.close_timeout)

    def _report_backlog(self, peer: _Peer) -> None:
        """The core holds deliveries for a client that does not read."""
        backlog = backlog_report(peer.pending(), peer.backlog)
        if backlog is None or peer.dead:
            return
        peer.backlog = backlog
        try:
            self.broker.output_backlog(peer.conn, backlog, trio.current_time())
        except Exception:
            self._core_failed(peer, "output_backlog")
            return
        self._pump_wanted.set()  # what waited may be ready to go

    def _drop_slow_consumer(self, peer: _Peer) -> None:
        logger.warning(
            "connection %d from %s dropped: slow consumer (%d bytes unsent, limit %d)",
            peer.conn,
            peer.peer,
            peer.pending(),
            self.max_buffered_output,
        )
        self._abort(peer, "dropped as a slow consumer")

    def _core_failed(self, peer: _Peer, method: str) -> None:
        logger.exception(
            "the broker core raised in %s() for connection %d from %s; dropping it",
            method,
            peer.conn,
            peer.peer,
        )
        self._abort(peer, f"internal error in {method}()")

    def _abort(self, peer: _Peer, reason: str) -> None:
        peer.dead = True
        peer.closing = True
        peer.close_reason = reason
        peer.out.clear()
        peer.drained.set()
        if peer.scope is not None:
            peer.scope.cancel()

    def _lost(self, peer: _Peer) -> None:
        """The handler is ending: tell the broker the connection is gone."""
        peer.dead = True
        if self._peers.pop(peer.conn, None) is None:
            return
        logger.info(
            "connection %d from %s closed: %s",
            peer.conn,
            peer.peer,
            peer.close_reason or "closed by the broker",
        )
        try:
            self.broker.connection_lost(peer.conn, trio.current_time())
        except Exception:
            logger.exception("the broker core raised in connection_lost() for %d", peer.conn)
        # A will message or a session change may have output for others.
        self._pump_wanted.set()


async def serve(
    host: str | list[str] | None = "127.0.0.1",
    port: int = 1883,
    *,
    broker: Broker | None = None,
    config: BrokerConfig | None = None,
    authenticator: Authenticator | None = None,
    authorizer: Authorizer | None = None,
    ssl: _ssl.SSLContext | None = None,
    started: Callable[[BrokerServer], object] | None = None,
    task_status: trio.TaskStatus[BrokerServer] = trio.TASK_STATUS_IGNORED,
    **options: Any,
) -> None:
    """Serve until cancelled (or :meth:`BrokerServer.close`), then shut down cleanly.

    With ``await nursery.start(serve, host, 0)`` the caller gets the
    listening :class:`BrokerServer` (its port, and :meth:`~BrokerServer.close`);
    ``started`` is also called with it.
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
    async with trio.open_nursery() as nursery:
        await nursery.start(server.run)
        if started is not None:
            started(server)
        task_status.started(server)
