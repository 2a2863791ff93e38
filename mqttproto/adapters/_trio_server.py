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

What the server does with the broker (the pump, the backlog, the slow
consumers, closing, the log) is the shared :class:`._driver.Driver`; this
module is its trio I/O. Everything runs in trio tasks on one thread, so the
broker needs no lock: ``trio.serve_listeners`` starts one handler task per
connection, which reads the stream into the driver and runs a writer task
beside it. Reads do not flush: they wake the server's single *pump* task,
which runs after the reads that were ready together, so that everything
:meth:`Broker.flush` produced for a connection goes out in one ``send_all``
(write coalescing); it is also the timer task, sleeping until the driver's
next deadline (on ``trio.current_time()``, the clock every ``now`` comes from).

Back-pressure and slow consumers are the driver's, as on the threads server:
a connection with more than :data:`._driver.PAUSE_READING_ABOVE` unsent
bytes is not read from, and its backlog is reported to the core, which
holds deliveries for it past ``max_unsent_bytes``; one with more than
``max_buffered_output`` (a last resort) is dropped as a slow consumer; a
closing connection gets ``close_timeout`` seconds for its last bytes.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket as _socket
import ssl as _ssl
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from ..auth import Authenticator, Authorizer
from ..broker import Broker
from ..config import BrokerConfig
from ._driver import Peer
from ._listener import Listener
from ._server_common import READ_SIZE, Endpoint, ServerBase, peer_name, unix_listening_socket
from ._trio_tls import tls_handshake

__all__ = ["BrokerServer", "serve"]

logger = logging.getLogger("mqttproto.broker")

_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError, OSError)


class _Peer(Peer):
    """One connection: its stream, output buffer and the writer's wake-up."""

    __slots__ = (
        "dead",
        "drained",
        "finishing",
        "half_closing",
        "in_flight",
        "out",
        "scope",
        "stream",
        "wake",
    )

    def __init__(self, stream: trio.abc.Stream, listener: Listener, peer: str) -> None:
        super().__init__(listener, peer)
        self.stream = stream
        #: Dropped: nothing more is written.
        self.dead = False
        #: The stream closes once the output is written.
        self.finishing = False
        #: The stream's write side is shut once the output is written.
        self.half_closing = False
        self.out = bytearray()
        #: Bytes handed to ``send_all`` that have not all gone yet.
        self.in_flight = 0
        #: The connection's tasks (the reader and the writer).
        self.scope: trio.CancelScope | None = None
        self.wake = trio.Event()
        self.drained = trio.Event()

    def write(self, data: bytes) -> None:
        if not self.dead:
            self.out += data
            self.wake.set()

    def unsent(self) -> int:
        return len(self.out) + self.in_flight

    def pause_reading(self) -> None:
        # Nothing to stop: the reader looks at ``paused`` before each read.
        return

    def resume_reading(self) -> None:
        self.drained.set()

    def half_close(self) -> None:
        self.half_closing = True
        self.wake.set()

    def finish(self) -> None:
        self.finishing = True
        self.wake.set()

    def abort(self) -> None:
        self.dead = True
        self.out.clear()
        self.drained.set()
        if self.scope is not None:
            self.scope.cancel()

    def peercert(self) -> dict[str, Any] | None:
        stream = self.stream
        return stream.getpeercert() if isinstance(stream, trio.SSLStream) else None


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
        self._handlers = 0
        #: The cancel scopes of the TLS handshakes under way.
        self._handshakes: set[trio.CancelScope] = set()
        self._pump_wanted = trio.Event()
        self._nursery_cm: Any = None

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
        self._driver.start(
            self.auth_workers,
            call_soon_threadsafe=trio.lowlevel.current_trio_token().run_sync_soon,
            clock=trio.current_time,
        )
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
            self._driver.stop()
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
        self._require_websocket()
        opened: list[tuple[Listener, list[trio.abc.Listener[Any]]]] = []
        endpoints: list[Endpoint] = []
        try:
            for listener in self.listeners:
                sockets = await self._listening_sockets(listener)
                # Plain sockets even for TLS: tls_handshake wraps a stream
                # only once the handshake bounds admit it.
                found: list[trio.abc.Listener[Any]] = list(sockets)
                opened.append((listener, found))
                endpoints.extend(self._announce(listener, [s.socket for s in sockets]))
        except BaseException:
            with trio.CancelScope(shield=True):
                for _, found in opened:
                    for trio_listener in found:
                        await trio_listener.aclose()
            raise
        self._endpoints = tuple(endpoints)
        return opened

    async def _listening_sockets(self, listener: Listener) -> list[trio.SocketListener]:
        if listener.transport == "unix":
            path = listener.path
            assert path is not None
            sock = trio.socket.from_stdlib_socket(unix_listening_socket(path, listener.backlog))
            self._remember_socket_file(path)
            return [trio.SocketListener(sock)]
        hosts = listener.host if isinstance(listener.host, list) else [listener.host]
        found: list[trio.SocketListener] = []
        try:
            for host in hosts:
                found.extend(await trio.open_tcp_listeners(
                        listener.port, host=host, backlog=listener.backlog
                    ))
        except BaseException:
            for sock_listener in found:
                sock_listener.socket.close()
            raise
        return found

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
        self._driver.shutdown(now)
        with trio.move_on_after(self._stop_timeout):
            while self._handlers:
                self._all_gone = trio.Event()
                await self._all_gone.wait()

    # -- introspection --------------------------------------------------------------

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        """Every listening socket with its listener (empty unless serving)."""
        return () if self._stop.is_set() or not self._started else self._endpoints

    # -- one connection -------------------------------------------------------------

    async def _handle(self, listener: Listener, stream: trio.abc.Stream) -> None:
        """The task of one accepted connection; never raises (it would end the server)."""
        self._handlers += 1
        sock = _transport_socket(stream)
        address = None
        if listener.transport != "unix" and sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(_socket.IPPROTO_TCP, _socket.TCP_NODELAY, 1)
                address = sock.getpeername()
        peer = _Peer(stream, listener, peer_name(listener, address))
        driver = self._driver
        reason = "closed by the broker"
        try:
            if listener.ssl is not None and not await tls_handshake(self, peer, listener.ssl):
                return
            if self._stopping or not driver.open(peer, trio.current_time(), address):
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
            reason = f"connection lost: {exc or type(exc).__name__}"
        except Exception:
            logger.exception("connection from %s failed in the server", peer.peer)
            reason = "internal error"
        finally:
            peer.dead = True
            driver.lost(peer, trio.current_time(), reason)
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(peer.stream)
            self._handlers -= 1
            self._all_gone.set()

    async def _reader(self, peer: _Peer) -> None:
        """Read until EOF; then wait for the writer (it ends the connection)."""
        stream = peer.stream
        driver = self._driver
        while True:
            while peer.paused and not peer.dead:
                # The client is not reading: no service until it drains.
                peer.drained = trio.Event()
                await peer.drained.wait()
            data = await stream.receive_some(READ_SIZE)
            if not data:
                driver.eof(peer, trio.current_time())
                break
            driver.received(peer, bytes(data), trio.current_time())
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
                self._driver.output_changed(peer, trio.current_time())
                continue
            if peer.finishing:
                break
            if peer.half_closing:
                # The goodbye is out: FIN (a TLS stream cannot half-close and
                # only goes on reading); the reader drains until EOF, and
                # the driver calls finish().
                peer.half_closing = False
                if isinstance(stream, trio.abc.HalfCloseableStream):
                    await stream.send_eof()
                continue
            peer.wake = trio.Event()
            await peer.wake.wait()
        assert peer.scope is not None
        peer.scope.cancel()

    # -- running the driver -----------------------------------------------------------

    def _pump_soon(self) -> None:
        self._pump_wanted.set()

    def _wake_at(self, deadline: float | None) -> None:
        # The pump task sleeps until the driver's deadline: wake it to take the new one.
        self._pump_wanted.set()

    async def _pump_task(self) -> None:
        """Pump after reads (once for all that were ready together) and at deadlines."""
        driver = self._driver
        while True:
            deadline = driver.wakeup_at
            with trio.move_on_at(math.inf if deadline is None else deadline):
                await self._pump_wanted.wait()
            self._pump_wanted = trio.Event()
            driver.pump(trio.current_time())


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
