"""The I/O-free driver of the broker servers: everything between a
:class:`~mqttproto.broker.Broker` and the network that is not I/O.

The asyncio, trio and threads servers move bytes; what they do with the
broker is the same, and is here, in :class:`Driver`:

- the *pump*: :meth:`Broker.flush` written to each connection (framed as
  WebSocket messages where the listener says so), the connections of
  :meth:`Broker.connections_to_close` closed after their last bytes, the
  broker's timer handled when due and re-armed from :meth:`Broker.get_timer`,
  and the deferred authentications handed to :class:`._auth_workers.AuthWorkers`;
- the *backlog* and the *slow-consumer policy*: a connection whose unsent
  output is over :data:`PAUSE_READING_ABOVE` (or whose transport says it is
  congested) is not read from, and its unsent bytes are reported to
  :meth:`Broker.output_backlog`, so that the core holds deliveries for it;
  one with more than ``max_buffered_output`` unsent is dropped;
- *closing*: a connection the broker (or the peer, or the shutdown) ends gets
  its last bytes, the WebSocket Close handshake if it has one, and
  ``close_timeout`` seconds for both before it is aborted;
- the log: connections opened, accepted or refused (the CONNACK), closed and
  why (:mod:`._server_log`); an exception escaping the core is logged and
  drops only the connection it came from.

Each server makes one :class:`Peer` subclass for its connections, which does
the I/O the driver asks for (:meth:`Peer.write`, :meth:`Peer.finish`,
:meth:`Peer.abort`, :meth:`Peer.pause_reading`...), and gives the driver two
callables: ``pump_soon``, which has :meth:`Driver.pump` called soon (once
for all the input of a loop iteration or a pass), and ``wake_at``, which has
it called at a deadline (:attr:`Driver.wakeup_at`). In return it tells the
driver what happened: :meth:`Driver.open`, :meth:`~Driver.received`,
:meth:`~Driver.eof`, :meth:`~Driver.output_changed` and :meth:`~Driver.lost`,
each with the ``now`` of its clock. Everything runs on the server's one
thread (its loop's, or its I/O thread); only the authentication workers run
elsewhere, and hand their answers back through the server.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..broker import Broker
from ._auth_workers import AuthWorkers
from ._listener import Listener, certificate_common_name
from ._packet_trace import trace_closed, trace_in, trace_out
from ._server_log import goodbye_reason, log_closed, note_first_output

if TYPE_CHECKING:  # without importing wsproto at run time
    from ._websocket_server import ServerWebSocket

__all__ = ["PAUSE_READING_ABOVE", "Driver", "Peer", "source_address"]

logger = logging.getLogger("mqttproto.broker")

#: Unsent bytes above which a server stops reading from a connection (unless
#: its transport has its own flow control: see :meth:`Peer.congested`).
PAUSE_READING_ABOVE = 256 * 1024


def source_address(listener: Listener, address: Any) -> str | None:
    """What a connection's failed authentications count against
    (``Broker.open_connection(address=...)``): the peer's host, without the
    port; for a Unix socket, its path, the same for every local client."""
    if listener.transport == "unix":
        return f"unix:{listener.path}"
    if isinstance(address, tuple) and address:
        return str(address[0])
    return None


class Peer(abc.ABC):
    """One connection of a server, as the driver sees it.

    The attributes are the driver's bookkeeping (the server may read them);
    the abstract methods are the server's I/O, which the driver calls.
    """

    __slots__ = (
        "accepted",
        "backlog",
        "close_reason",
        "closing",
        "conn",
        "last_data",
        "last_pump",
        "listener",
        "paused",
        "peer",
        "ws",
    )

    def __init__(self, listener: Listener, peer: str = "unknown") -> None:
        self.listener = listener
        #: ``host:port`` (or ``unix:path``), for the log and the broker.
        self.peer = peer
        #: The broker's connection id, once :meth:`Driver.open` has it.
        self.conn = -1
        #: Whether the first CONNACK has gone out (logged once).
        self.accepted = False
        #: No more input for the broker; the connection is closing or dropped.
        self.closing = False
        #: Why it ends, for the log ("closed: <reason>").
        self.close_reason: str | None = None
        #: Whether the driver asked to stop reading from it.
        self.paused = False
        #: What Broker.output_backlog was last told.
        self.backlog = 0
        #: The last chunk written and the number of the pump that wrote it,
        #: to name the goodbye when the broker closes the connection.
        self.last_data = b""
        self.last_pump = -1
        #: The WebSocket between the socket and MQTT, on a WebSocket listener.
        self.ws: ServerWebSocket | None = None

    @abc.abstractmethod
    def write(self, data: bytes) -> None:
        """Send ``data`` (not empty) after everything written before."""

    @abc.abstractmethod
    def unsent(self) -> int:
        """Bytes written and not yet taken by the peer."""

    def congested(self, unsent: int) -> bool:
        """Whether to stop reading until the peer takes its output; ``unsent``
        is :meth:`unsent`. A transport with flow control of its own (asyncio's
        write buffer limits) answers from that instead."""
        return unsent > PAUSE_READING_ABOVE

    @abc.abstractmethod
    def pause_reading(self) -> None:
        """Read nothing more from the peer until :meth:`resume_reading`."""

    @abc.abstractmethod
    def resume_reading(self) -> None:
        """Read from the peer again."""

    @abc.abstractmethod
    def finish(self) -> None:
        """Close once everything written has gone; :meth:`Driver.lost` is to
        follow when it has. May be called more than once."""

    @abc.abstractmethod
    def abort(self) -> None:
        """Close now, dropping what is unsent; :meth:`Driver.lost` is to
        follow (at once or later). May be called more than once."""

    def peercert(self) -> dict[str, Any] | None:
        """The verified client certificate (:meth:`ssl.SSLSocket.getpeercert`), if any."""
        return None


class Driver:
    """Drives one broker for a server: see the module's documentation.

    :param broker: the core; nothing else calls it while the server runs.
    :param max_buffered_output: unsent bytes above which a connection is
        dropped as a slow consumer.
    :param close_timeout: seconds a closing connection has for its last bytes.
    :param pump_soon: have :meth:`pump` called soon, on the server's thread
        (once for several requests is enough).
    :param wake_at: :attr:`wakeup_at` changed, or passed: have :meth:`pump`
        called at this deadline (None: no deadline).
    """

    def __init__(
        self,
        broker: Broker,
        *,
        max_buffered_output: int,
        close_timeout: float,
        pump_soon: Callable[[], None],
        wake_at: Callable[[float | None], None],
    ) -> None:
        self.broker = broker
        self.max_buffered_output = max_buffered_output
        self.close_timeout = close_timeout
        self._pump_soon = pump_soon
        self._wake_at = wake_at
        #: The open connections, by broker connection id.
        self.peers: dict[int, Peer] = {}
        #: Closing connections and when they are to be aborted. Deadlines are
        #: now + close_timeout on a monotonic clock, so insertion order is
        #: deadline order: the first is the next due.
        self._closing: dict[Peer, float] = {}
        #: The broker's timer, as last read.
        self._timer_at: float | None = None
        self._wakeup_at: float | None = None
        #: The number of the pump under way (for goodbye_reason).
        self._pumps = 0
        self._auth: AuthWorkers | None = None

    @property
    def connection_count(self) -> int:
        """Open connections, closing ones included."""
        return len(self.peers)

    @property
    def wakeup_at(self) -> float | None:
        """When :meth:`pump` is next due (the broker's timer, or a close
        timeout); None: only when there is input."""
        return self._wakeup_at

    # -- lifecycle --------------------------------------------------------------------

    def start(
        self,
        workers: int,
        *,
        call_soon_threadsafe: Callable[[Callable[[], None]], object],
        clock: Callable[[], float],
    ) -> None:
        """Hand the deferred authentications to ``workers`` threads from now
        on; their answers come back through ``call_soon_threadsafe`` (see
        :class:`._auth_workers.AuthWorkers`)."""
        self._auth = AuthWorkers(
            self.broker,
            workers,
            call_soon_threadsafe=call_soon_threadsafe,
            clock=clock,
            answered=self._pump_soon,
        )
        self._auth.start()

    def shutdown(self, now: float) -> None:
        """Shut the broker down, write what it says last (DISCONNECT 0x8B to
        MQTT 5 clients) and close every connection."""
        try:
            self.broker.shutdown(now)
        except Exception:
            logger.exception("the broker core raised in shutdown()")
        self.pump(now)
        for peer in list(self.peers.values()):
            if not peer.closing:
                self.close(peer, "server shut down", now)

    def stop(self) -> None:
        """The server is gone: stop the authentication workers."""
        if self._auth is not None:
            self._auth.close()

    # -- what the server tells ------------------------------------------------------

    def open(self, peer: Peer, now: float, address: Any) -> bool:
        """A connection is ready for MQTT (its TLS handshake done): open it
        in the broker. ``address`` is the socket's peer address. False: it
        is refused (logged), and the server closes it."""
        listener = peer.listener
        identity = None
        if listener.use_identity_as_username:
            identity = certificate_common_name(peer.peercert())
            if identity is None:
                # Nobody to be: refuse before MQTT starts (mosquitto refuses too).
                logger.warning(
                    "connection from %s refused: no client certificate with a subject CN",
                    peer.peer,
                )
                return False
        if listener.transport == "websocket":
            from ._websocket_server import ServerWebSocket

            peer.ws = ServerWebSocket(listener.websocket_path)
        try:
            conn = self.broker.open_connection(
                now,
                peer=peer.peer,
                username=identity,
                address=source_address(listener, address),
            )
        except Exception:
            logger.exception("the broker core raised in open_connection() for %s", peer.peer)
            return False
        peer.conn = conn
        self.peers[conn] = peer
        logger.info("connection %d opened from %s", conn, peer.peer)
        return True

    def received(self, peer: Peer, data: bytes, now: float) -> None:
        """Bytes read from the connection (WebSocket frames on a WebSocket listener)."""
        ws = peer.ws
        if ws is not None:
            self._received_websocket(peer, ws, data, now)
        elif not peer.closing:
            self._feed(peer, data, now)

    def eof(self, peer: Peer, now: float, reason: str = "peer closed the connection") -> None:
        """The peer's stream ended: tell the broker, send what is left, close."""
        if peer.closing or self.peers.get(peer.conn) is not peer:
            return
        if peer.close_reason is None:
            peer.close_reason = reason
        try:
            self.broker.receive_eof(peer.conn, now)
        except Exception:
            self._core_failed(peer, "receive_eof")
            return
        self.pump(now)
        if not peer.closing:
            self.close(peer, peer.close_reason, now)

    def output_changed(self, peer: Peer, now: float) -> None:
        """The peer took some of its output (or its transport's flow control
        changed): resume reading, and report the backlog, as it now stands."""
        if self.peers.get(peer.conn) is peer:
            self._check_output(peer, now, wrote=False)

    def lost(self, peer: Peer, now: float, reason: str) -> None:
        """The connection is gone (closed, dropped or broken): tell the broker.

        ``reason`` is logged unless the driver knows a better one (the
        broker closed it, the peer closed its side...).
        """
        self._closing.pop(peer, None)
        peer.closing = True
        if self.peers.get(peer.conn) is not peer:
            return  # never opened in the broker
        del self.peers[peer.conn]
        log_closed(peer, peer.close_reason or reason)
        trace_closed(peer)
        try:
            self.broker.connection_lost(peer.conn, now)
        except Exception:
            logger.exception("the broker core raised in connection_lost() for %d", peer.conn)
        # A will message or a session change may have output for others.
        self._pump_soon()

    # -- the pump --------------------------------------------------------------------

    def pump(self, now: float) -> None:
        """Handle what is due, write all pending output, close what the broker
        closed, start the authentications it handed out, re-arm the timer."""
        broker = self.broker
        if self._wakeup_at is not None and now >= self._wakeup_at:
            # It has rung: the next deadline is announced again, even if equal.
            self._wakeup_at = None
            if self._timer_at is not None and now >= self._timer_at:
                self._timer_at = None
                try:
                    broker.handle_timer(now)
                except Exception:
                    logger.exception("the broker core raised in handle_timer()")
            self._abort_overdue(now)
        self._pumps += 1
        pump = self._pumps
        try:
            output = broker.flush(now)
            to_close = broker.connections_to_close()
        except Exception:
            logger.exception("the broker core raised in flush()")
            self._update_wakeup()  # the close timeouts still run
            return
        peers = self.peers
        for conn, data in output:
            peer = peers.get(conn)
            if peer is None or peer.closing:
                continue
            if not peer.accepted:
                note_first_output(peer, data, broker)
            trace_out(peer, data)
            peer.last_data = data
            peer.last_pump = pump
            ws = peer.ws
            framed = data if ws is None else ws.send(data)
            if framed:
                peer.write(framed)
            if not peer.closing:
                self._check_output(peer, now, wrote=True)
        for conn in to_close:
            peer = peers.get(conn)
            if peer is not None and not peer.closing:
                self.close(peer, goodbye_reason(peer, pump, broker), now)
        if self._auth is not None:
            self._auth.pump()
        try:
            self._timer_at = broker.get_timer()
        except Exception:
            logger.exception("the broker core raised in get_timer()")
            self._timer_at = None
        self._update_wakeup()

    # -- closing --------------------------------------------------------------------

    def close(self, peer: Peer, reason: str, now: float) -> None:
        """Close after the last bytes (and the WebSocket Close handshake);
        abort if that takes more than ``close_timeout``."""
        if peer.close_reason is None:
            peer.close_reason = reason
        if not peer.closing:
            peer.closing = True
            first = not self._closing
            self._closing[peer] = now + self.close_timeout
            if first:
                self._update_wakeup()
        ws = peer.ws
        if ws is not None:
            frame = ws.close()
            if frame:
                peer.write(frame)
            if ws.awaiting_close:
                return  # finished when the client's Close comes, or aborted
        peer.finish()

    def _abort_overdue(self, now: float) -> None:
        overdue = []
        for peer, deadline in self._closing.items():
            if deadline > now:
                break
            overdue.append(peer)
        for peer in overdue:
            del self._closing[peer]
            logger.warning(
                "connection %d from %s: last bytes not sent within %.1f s; aborted",
                peer.conn,
                peer.peer,
                self.close_timeout,
            )
            peer.abort()

    def _drop(self, peer: Peer, reason: str) -> None:
        """Abort the connection now (the broker hears of it through :meth:`lost`)."""
        peer.closing = True
        peer.close_reason = reason
        self._closing.pop(peer, None)
        peer.abort()

    def _core_failed(self, peer: Peer, method: str) -> None:
        logger.exception(
            "the broker core raised in %s() for connection %d from %s; dropping it",
            method,
            peer.conn,
            peer.peer,
        )
        self._drop(peer, f"internal error in {method}()")

    # -- input ----------------------------------------------------------------------

    def _feed(self, peer: Peer, data: bytes, now: float) -> None:
        trace_in(peer, data)
        try:
            self.broker.receive_data(peer.conn, data, now)
        except Exception:
            self._core_failed(peer, "receive_data")
            return
        self._pump_soon()

    def _received_websocket(self, peer: Peer, ws: ServerWebSocket, data: bytes, now: float) -> None:
        data = ws.receive(data)
        answer = ws.data_to_send()  # the handshake's answer, pongs, a Close's answer
        if answer:
            peer.write(answer)
        if data and not peer.closing:
            self._feed(peer, data, now)
        if ws.failure is not None:
            logger.warning("connection %d from %s: %s", peer.conn, peer.peer, ws.failure)
            self.close(peer, ws.failure, now)
        elif ws.client_closed is not None:
            if peer.closing:
                # The answer to our Close (or a Close after it): done.
                peer.finish()
            else:
                # The end of the client's stream, as EOF is for TCP.
                self.eof(peer, now, f"WebSocket closed by the client (code {ws.client_closed})")

    # -- output ---------------------------------------------------------------------

    def _check_output(self, peer: Peer, now: float, *, wrote: bool) -> None:
        """Drop a slow consumer (after a write), pause or resume reading, and
        tell the core the backlog: only a connection that is not read from
        has one worth counting, so a client that keeps up costs no calls."""
        unsent = peer.unsent()
        if wrote and unsent > self.max_buffered_output:
            logger.warning(
                "connection %d from %s dropped: slow consumer (%d bytes unsent, limit %d)",
                peer.conn,
                peer.peer,
                unsent,
                self.max_buffered_output,
            )
            self._drop(peer, "dropped as a slow consumer")
            return
        congested = peer.congested(unsent)
        if congested != peer.paused:
            # The client is not reading: no service until it drains its side.
            peer.paused = congested
            if congested:
                peer.pause_reading()
            else:
                peer.resume_reading()
        backlog = unsent if congested else 0
        if backlog == peer.backlog:
            return
        peer.backlog = backlog
        try:
            self.broker.output_backlog(peer.conn, backlog, now)
        except Exception:
            self._core_failed(peer, "output_backlog")
            return
        self._pump_soon()  # what the core held may be ready to go

    def _update_wakeup(self) -> None:
        at = self._timer_at
        first_close = next(iter(self._closing.values()), None)
        if first_close is not None and (at is None or first_close < at):
            at = first_close
        if at != self._wakeup_at:
            self._wakeup_at = at
            self._wake_at(at)
