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
- *the goodbye the client can read*: after its last bytes (a DISCONNECT with
  a reason code, a refusing CONNACK) a TCP connection is half-closed
  (:meth:`Peer.half_close`: FIN, reading goes on) and what the client still
  sends is read and thrown away until it closes its side, for at most
  ``close_timeout`` seconds and :data:`LINGER_BYTES` bytes. Closing a socket
  with unread input makes the kernel send a reset, and a reset makes the
  client's stack throw away what it had not yet read -- the goodbye with it
  (Paho's ``test_flow_control2`` saw *connection reset* instead of 0x93);
- the *input budget* (``BrokerConfig.max_buffered_input``, see
  :mod:`._input_budget`): after each read, the declared size of the packet
  a connection is receiving (:meth:`Broker.incomplete_packet_size`) is
  reserved, or the connection is not read from until it fits;
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

import logging
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..broker import Broker
from ._auth_workers import AuthWorkers
from ._input_budget import InputBudget
from ._listener import Listener, certificate_common_name
from ._packet_trace import trace_closed, trace_in, trace_out
from ._peer import PAUSE_READING_ABOVE, Peer
from ._server_log import goodbye_reason, log_closed, note_first_output, peer_label

if TYPE_CHECKING:  # without importing wsproto at run time
    from ._websocket_server import ServerWebSocket

__all__ = ["LINGER_BYTES", "PAUSE_READING_ABOVE", "Driver", "Peer", "source_address"]

logger = logging.getLogger("mqttproto.broker")


#: Input read and thrown away from a connection after its goodbye before it
#: is closed anyway: enough for the requests a client had pipelined when the
#: goodbye was sent, small enough that a client streaming on costs little.
LINGER_BYTES = 256 * 1024


def source_address(listener: Listener, address: Any) -> str | None:
    """What a connection's failed authentications count against
    (``Broker.open_connection(address=...)``): the peer's host, without the
    port; for a Unix socket, its path, the same for every local client."""
    if listener.transport == "unix":
        return f"unix:{listener.path}"
    if isinstance(address, tuple) and address:
        # The broker keeps it per connection: one string per host, shared.
        return sys.intern(str(address[0]))
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
        #: Large incomplete packets against ``max_buffered_input``.
        self.input_budget: InputBudget[Peer] = InputBudget(broker.config.max_buffered_input)
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

    def open(self, peer: Peer, now: float, address: Any, identity: str | None = None) -> bool:
        """A connection is ready for MQTT (its TLS handshake done): open it
        in the broker. ``address`` is the socket's peer address; ``identity``
        a username already established (an in-process bridge's
        ``local_username``). False: it is refused (logged), and the server
        closes it."""
        listener = peer.listener
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
        else:
            self._discard(peer, len(data))

    def eof(self, peer: Peer, now: float, reason: str = "peer closed the connection") -> None:
        """The peer's stream ended: tell the broker, send what is left, close.
        After the goodbye (the connection closing) it is the end of the drain."""
        if self.peers.get(peer.conn) is not peer:
            return
        if peer.closing:
            if peer.ws is None or not peer.ws.awaiting_close:
                peer.finish()
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
        if peer.ws is None or not peer.ws.awaiting_close:
            # The client closed its side: nothing to drain, close after the
            # last bytes.
            peer.finish()

    def output_changed(self, peer: Peer, now: float) -> None:
        """The peer took some of its output (or its transport's flow control
        changed): resume reading, and report the backlog, as it now stands."""
        if self.peers.get(peer.conn) is peer and not peer.closing:
            # (A closing connection is read until it ends, and has no backlog.)
            self._check_output(peer, now, wrote=False)

    def lost(self, peer: Peer, now: float, reason: str) -> None:
        """The connection is gone (closed, dropped or broken): tell the broker.

        ``reason`` is logged unless the driver knows a better one (the
        broker closed it, the peer closed its side...).
        """
        self._closing.pop(peer, None)
        peer.closing = True
        self._release_input(peer)
        if self.peers.get(peer.conn) is not peer:
            return  # never opened in the broker
        del self.peers[peer.conn]
        log_closed(peer, peer.close_reason or reason, self.broker)
        trace_closed(peer)
        try:
            self.broker.connection_lost(peer.conn, now)
        except Exception:
            logger.exception("the broker core raised in connection_lost() for %d", peer.conn)
        # A will message or a session change may have output for others.
        self._pump_soon()

    def _label(self, peer: Peer) -> str:
        """The connection as the log names it (:func:`._server_log.peer_label`)."""
        return peer_label(peer, self.broker)

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
            trace_out(peer, data, broker)
            ws = peer.ws
            framed = data if ws is None else ws.send(data)
            if framed:
                peer.write(framed)
            if not peer.closing:
                self._check_output(peer, now, wrote=True)
        if to_close:
            # The goodbye is named from the last bytes this pump wrote (a
            # connection that just went idle keeps no copy of them).
            written = dict(output)
            for conn in to_close:
                peer = peers.get(conn)
                if peer is not None and not peer.closing:
                    self.close(peer, goodbye_reason(peer, written.get(conn), broker), now)
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
            return
        # The drain needs the input read, even from a client that was paused
        # for not reading its output or held by the input budget.
        self._release_input(peer)
        self._update_reading(peer)
        peer.half_close()

    def _abort_overdue(self, now: float) -> None:
        overdue = []
        for peer, deadline in self._closing.items():
            if deadline > now:
                break
            overdue.append(peer)
        for peer in overdue:
            del self._closing[peer]
            if peer.unsent() == 0 and (peer.ws is None or not peer.ws.awaiting_close):
                # The goodbye went out; the client did not close its side.
                logger.info(
                    "connection %d from %s: still open %.1f s after the goodbye; closed",
                    peer.conn,
                    self._label(peer),
                    self.close_timeout,
                )
                peer.finish()
                continue
            logger.warning(
                "connection %d from %s: last bytes not sent within %.1f s; aborted",
                peer.conn,
                self._label(peer),
                self.close_timeout,
            )
            peer.abort()

    def _discard(self, peer: Peer, size: int) -> None:
        """Input after the goodbye: thrown away, up to LINGER_BYTES in all."""
        before = peer.discarded
        peer.discarded = before + size
        if before <= LINGER_BYTES < peer.discarded:
            logger.info(
                "connection %d from %s: over %d bytes after the goodbye; closed",
                peer.conn,
                self._label(peer),
                LINGER_BYTES,
            )
            self._closing.pop(peer, None)
            peer.finish()

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
            self._label(peer),
        )
        self._drop(peer, f"internal error in {method}()")

    # -- input ----------------------------------------------------------------------

    def _feed(self, peer: Peer, data: bytes, now: float) -> None:
        trace_in(peer, data, self.broker)
        try:
            self.broker.receive_data(peer.conn, data, now)
        except Exception:
            self._core_failed(peer, "receive_data")
            return
        if self.input_budget.limit is not None and not peer.closing:
            self._budget_input(peer)
        self._pump_soon()

    # -- the input budget -------------------------------------------------------------

    def _budget_input(self, peer: Peer) -> None:
        """Reserve what the packet ``peer`` is receiving will hold, or stop
        reading from it until that fits (:mod:`._input_budget`)."""
        budget = self.input_budget
        size = self.broker.incomplete_packet_size(peer.conn)
        for changed in budget.claim(peer, size):
            if changed is peer and budget.is_held(peer):
                logger.info(
                    "connection %d from %s: a packet of %d bytes waits for room in "
                    "max_buffered_input (%d of %d bytes reserved)",
                    peer.conn,
                    self._label(peer),
                    size,
                    budget.reserved,
                    budget.limit,
                )
            self._update_reading(changed)

    def _release_input(self, peer: Peer) -> None:
        """``peer`` is closing or gone: its reservation goes to those waiting."""
        for admitted in self.input_budget.release(peer):
            if admitted is not peer:
                self._update_reading(admitted)

    def _update_reading(self, peer: Peer) -> None:
        """Pause or resume reading as the output and the input budget say; a
        closing connection is always read (the drain after the goodbye)."""
        pause = (peer.output_congested or self.input_budget.is_held(peer)) and not peer.closing
        if pause != peer.paused:
            peer.paused = pause
            if pause:
                peer.pause_reading()
            else:
                peer.resume_reading()

    def _received_websocket(self, peer: Peer, ws: ServerWebSocket, data: bytes, now: float) -> None:
        data = ws.receive(data)
        answer = ws.data_to_send()  # the handshake's answer, pongs, a Close's answer
        if answer:
            peer.write(answer)
        if data and not peer.closing:
            self._feed(peer, data, now)
        if ws.failure is not None:
            logger.warning("connection %d from %s: %s", peer.conn, self._label(peer), ws.failure)
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
                self._label(peer),
                unsent,
                self.max_buffered_output,
            )
            self._drop(peer, "dropped as a slow consumer")
            return
        congested = peer.congested(unsent)
        if congested != peer.output_congested:
            # The client is not reading: no service until it drains its side.
            peer.output_congested = congested
            self._update_reading(peer)
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
