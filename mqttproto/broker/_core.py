"""The :class:`Broker`: many clients' connections, sessions and routing, without I/O.

A :class:`Broker` is driven by an adapter that owns the sockets. It never
reads a clock: every call that depends on time takes ``now``::

    broker = Broker(BrokerConfig())
    conn = broker.open_connection(now(), peer="10.0.0.7:51234")
    broker.receive_data(conn, data, now())          # never raises for peer faults
    for conn, data in broker.flush(now()): write(conn, data)
    for conn in broker.connections_to_close(): flush, close, broker.connection_lost(conn, now())
    # and call handle_timer(now()) when get_timer() is reached

Each network connection is a :class:`~mqttproto.server.ServerConnection`,
the server role, which speaks the protocol; the broker consumes its events
and answers through its methods only. The broker holds sessions, the
subscription trie, retained messages, wills, timers, authentication and
authorization and the :class:`~mqttproto.store.SessionStore`.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._state import ConnectionState
from ..config import BrokerConfig
from ..enums import QoS, ReasonCode
from ..errors import LocalProtocolError, RemoteProtocolError
from ..events import (
    AuthReceived,
    ConnectRequested,
    Disconnected,
    MessageReceived,
    PublishAcknowledged,
    PublishDiscarded,
    SubscribeRequested,
    UnsubscribeRequested,
)
from ..packets import PublishPacket
from ..server import ServerConnection
from ..store import MemoryStore, SessionStore, StoredSession
from ..topics import validate_topic_name
from ._acks import Acks
from ._admin import Admin
from ._auth import Authentication
from ._durable import Durability
from ._feed import Feeding
from ._lifecycle import Lifecycle
from ._message import Message
from ._retained import RetainedStore
from ._router import Router
from ._routing import Routing
from ._sessions import Link, Session
from ._statistics import Statistics
from ._subscriptions import Subscriptions

if TYPE_CHECKING:
    from ..auth import Authenticator, Authorizer, ConnectInfo

__all__ = ["Broker"]

_S = ConnectionState
_C = ReasonCode


class _AllowAll:
    """The defaults: everyone may connect and do anything; no AUTH methods."""

    def authenticate(self, info: ConnectInfo) -> Any:
        from ..auth import AllowAll

        return AllowAll().authenticate(info)

    def continue_authentication(self, info: ConnectInfo, data: bytes | None) -> Any:
        from ..auth import AllowAll

        return AllowAll().continue_authentication(info, data)


class Broker(
    Routing, Acks, Feeding, Subscriptions, Lifecycle, Authentication, Statistics, Admin, Durability
):
    """The sans-IO MQTT broker core: many connections, sessions and routing.

    :param config: limits and switches (:class:`~mqttproto.config.BrokerConfig`).
    :param store: where sessions and retained messages are recorded; a
        :class:`~mqttproto.store.MemoryStore` by default. Sessions and
        retained messages found in it are resumed. With a durable store
        (:class:`~mqttproto.store.SQLiteStore`) acknowledgements wait for
        :meth:`commit`, which :meth:`flush` runs before it hands out output.
    :param authenticator: decides who may connect (default: everyone, and no
        enhanced authentication method). An answer it defers (a
        :class:`~mqttproto.auth.DeferredAuthResult`) is computed at once,
        unless the driver runs such jobs itself: see
        :meth:`authentication_jobs`.
    :param authorizer: decides who may publish, subscribe and receive what
        (default: everything).

    No method raises because of what a client sent: a protocol error queues
    the goodbye and schedules that connection for closing, and nothing else
    changes for the others.
    """

    def __init__(
        self,
        config: BrokerConfig | None = None,
        *,
        store: SessionStore | None = None,
        authenticator: Authenticator | None = None,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.config = config if config is not None else BrokerConfig()
        self._server_config = self.config.server_config()
        self.store: SessionStore = store if store is not None else MemoryStore()
        self._setup_durability()
        self.authenticator: Any = authenticator if authenticator is not None else _AllowAll()
        #: None when everything is allowed, so the hot path skips the calls.
        self.authorizer: Any = authorizer
        self._conns: dict[int, Link] = {}
        self._conn_ids = itertools.count(1)
        self._client_ids = itertools.count(1)
        self._sessions: dict[str, Session] = {}
        self._router: Router[Session] = Router(self.config.route_cache_size)
        self._retained = RetainedStore()
        self._feeding = 0
        self._dirty: dict[int, None] = {}
        self._plan_epoch = 0
        self._closing: dict[int, None] = {}
        self._timers: list[tuple[float, int, str, Any]] = []
        self._timer_seq = itertools.count()
        self._started_at: float | None = None
        self._stored: list[StoredSession] | None = self.store.load_sessions()
        self.messages_received = 0
        self.messages_sent = 0
        #: Deliveries dropped or refused by a bound (see ``memory_limit``).
        self.messages_dropped = 0
        self._held_bytes = 0
        self._backlog_total = 0
        #: Connections held back while ``memory_limit`` is exceeded.
        self._throttled: dict[int, None] = {}
        self._handlers: dict[type, Callable[[Link, Any, float], None]] = {
            MessageReceived: self._on_message,
            PublishAcknowledged: self._on_acknowledged,
            PublishDiscarded: self._on_discarded,
            SubscribeRequested: self._subscribe,
            UnsubscribeRequested: self._on_unsubscribe,
            ConnectRequested: self._on_connect,
            AuthReceived: self._on_auth,
            Disconnected: self._on_disconnected,
        }
        self._setup_authentication()
        self._setup_statistics()
        for retained in self.store.load_retained():
            self._retained.set(retained.packet.topic, retained)

    # -- the adapter's API ------------------------------------------------------

    def open_connection(
        self,
        now: float,
        *,
        peer: str | None = None,
        username: str | None = None,
        address: str | None = None,
    ) -> int:
        """A new network connection; returns its id (never reused).

        :param peer: how to name the peer in :meth:`sessions` (an address).
        :param address: the host the connection comes from (an IP address,
            without the port), which its failed authentications count against
            (``auth_failure_delay`` of :class:`~mqttproto.config.BrokerConfig`).
            Connections without one are not delayed.
        :param username: an identity the transport has already established,
            e.g. the subject CN of a verified TLS client certificate (like
            mosquitto's ``use_identity_as_username``). It replaces the User
            Name of the CONNECT for authentication, authorization and the
            session; the CONNECT's Password is dropped, and the authenticator
            sees :attr:`ConnectInfo.username_verified <mqttproto.auth.ConnectInfo>`
            set. ``None``: the username is the CONNECT's.
        """
        self._tick(now)
        self.sockets_total += 1
        link_id = next(self._conn_ids)
        link = Link(
            link_id,
            ServerConnection(self._server_config, now=now),
            peer=peer,
            identity=username,
            address=address,
            max_unsent=self.config.max_unsent_bytes,
        )
        limit = self.config.max_connections
        if limit is not None and len(self._conns) >= limit:
            # Answered when its CONNECT arrives, so the client hears why
            # (CONNACK 0x97 / 3.x return code 3); connect_timeout bounds the wait.
            link.over_quota = True
        self._conns[link_id] = link
        self._watch(link)
        return link_id

    def receive_data(self, conn: int, data: bytes, now: float) -> None:
        """Bytes from connection ``conn``. Never raises for the peer's faults:
        the goodbye is queued and the connection is in :meth:`connections_to_close`.
        Unknown or closed connections are ignored."""
        link = self._conns.get(conn)
        if link is None:
            return
        self._tick(now)
        self.bytes_received += len(data)
        self._dirty[conn] = None
        if data[:2] == b"\x40\x02":
            # A subscriber's PUBACKs, in one call (see _acks).
            done = self._puback_run(link, data, now)
            if done:
                if done == len(data):
                    return
                data = data[done:]
        # A peer's fault: the goodbye is queued and Disconnected reported.
        with contextlib.suppress(RemoteProtocolError):
            link.conn.receive_data(data, now)
        self._process(link, now)

    def receive_eof(self, conn: int, now: float) -> None:
        """The client closed its side: the will is published [MQTT-3.1.2-8]."""
        link = self._conns.get(conn)
        if link is not None:
            link.conn.receive_eof(now)
            self._process(link, now)

    def connection_lost(self, conn: int, now: float) -> None:
        """The transport is gone; forget the connection (will published if due)."""
        link = self._conns.get(conn)
        if link is None:
            return
        if not link.finished:
            link.conn.receive_eof(now)
            self._process(link, now)
        del self._conns[conn]
        self._dirty.pop(conn, None)
        self._closing.pop(conn, None)
        self._throttled.pop(conn, None)
        self._backlog_total -= link.backlog
        link.backlog = 0

    def data_to_send(self, conn: int, now: float) -> bytes:
        """The bytes to write to ``conn`` now. Messages held back by the
        ``max_unsent_bytes`` high-water mark go now, unless the adapter's
        backlog is still above it. On a durable store, :meth:`commit` first."""
        if self._durable:
            return self._committed(self._data_to_send, conn, now)
        return self._data_to_send(conn, now)

    def _data_to_send(self, conn: int, now: float) -> bytes:
        link = self._conns.get(conn)
        self._dirty.pop(conn, None)
        if link is None:
            return b""
        return self._take(link, now)

    def output_backlog(self, conn: int, nbytes: int, now: float) -> None:
        """Tell the broker that ``nbytes`` of what it gave for ``conn`` are
        not yet written (an adapter's transport buffer, after a write or
        when it drains).

        The ``max_unsent_bytes`` high-water mark then counts that backlog:
        while it is above the mark, QoS 0 messages for the connection are
        dropped and QoS 1/2 ones wait in its session queue (bounded by
        ``max_queued_messages``), so a client that reads slowly holds no
        more than that and stays connected; when a smaller backlog is
        reported, what waited is sent (see :meth:`flush`). An adapter that
        never calls this is assumed to write everything it takes.
        """
        if nbytes < 0:
            raise ValueError("nbytes must not be negative")
        link = self._conns.get(conn)
        if link is None or link.backlog == nbytes:
            return
        self._tick(now)
        self._backlog_total += nbytes - link.backlog
        was_held = link.held
        link.backlog = nbytes
        if was_held and not link.held:
            self._release(link, now)
        limit = self.config.memory_limit
        if limit is None:
            return
        if self._held_bytes + self._backlog_total > limit:
            if nbytes and conn not in self._throttled:
                # Over the broker-wide budget: a reader that is behind gets
                # nothing more (QoS 0 dropped, QoS 1/2 queued) until it is below.
                self._throttled[conn] = None
                link.max_unsent = 0
        elif self._throttled:
            throttled = list(self._throttled)
            self._throttled.clear()
            for conn_id in throttled:
                held = self._conns.get(conn_id)
                if held is not None:
                    was_held = held.held
                    held.max_unsent = self.config.max_unsent_bytes
                    if was_held and not held.held:
                        self._release(held, now)

    def flush(self, now: float) -> list[tuple[int, bytes]]:
        """Pending output of every connection that has any; on a durable
        store, the group commit (:meth:`commit`) runs first."""
        if self._durable:
            return self._committed(self._flush, now)
        return self._flush(now)

    def _flush(self, now: float) -> list[tuple[int, bytes]]:
        out = []
        conns = self._conns
        for conn_id in self._dirty:
            link = conns.get(conn_id)
            if link is not None:
                data = self._take(link, now)
                if data:
                    out.append((conn_id, data))
        self._dirty.clear()
        return out

    def connections_to_close(self) -> list[int]:
        """Connections to close (drained): flush, close, :meth:`connection_lost`."""
        closing = list(self._closing)
        self._closing.clear()
        return closing

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called; None: no timer."""
        timers = self._timers
        return timers[0][0] if timers else None

    def handle_timer(self, now: float) -> None:
        """Keep-alive and connect timeouts, will delays, session expiry, ``$SYS``,
        and retained messages owed to a subscriber whose output drained."""
        self._tick(now)
        timers = self._timers
        while timers and timers[0][0] <= now:
            when, _, kind, key = heapq.heappop(timers)
            if kind == "conn":
                link = self._conns.get(key)
                if link is None or link.finished:
                    continue
                if link.timer_at == when:
                    link.timer_at = None
                link.conn.handle_timer(now)
                self._process(link, now)
                if link.conn.closed:
                    self._dirty[key] = None
                else:
                    self._watch(link)
            elif kind == "will":
                session = self._sessions.get(key)
                if session is not None and session.will_due is not None and session.will_due <= now:
                    self._publish_will(session, now)
                    if session.persistent:
                        # Stored without its will, in the commit that stores
                        # the will's copies: a restart does not send it again.
                        self._save_session(session)
            elif kind == "session":
                session = self._sessions.get(key)
                if (
                    session is not None
                    and session.link is None
                    and session.expires_at is not None
                    and session.expires_at <= now
                ):
                    self.clients_expired += 1
                    self._end_session(session, now)
            elif kind == "auth":
                self._authentication_timer(key, now)
            elif kind == "feed":
                self._feed_timer(key, now)
            elif kind == "sys":
                self._publish_sys(now)
                interval = self.config.sys_interval
                assert interval is not None
                self._push_timer(now + interval, "sys", None)

    def shutdown(self, now: float) -> None:
        """Say goodbye to everyone: v5 clients get DISCONNECT 0x8B."""
        for link in list(self._conns.values()):
            if link.finished:
                continue
            # A server shutting down is not the client's fault: no will
            # unless the client reconnects elsewhere; persistent sessions stay.
            link.will_on_close = False
            conn = link.conn
            if conn.state is _S.CONNECTED:
                conn.disconnect(_C.SERVER_SHUTTING_DOWN)
            elif not conn.closed:
                conn.close()
            self._dirty[link.id] = None
            self._process(link, now)

    def incomplete_packet_size(self, conn: int) -> int:
        """The declared size of the packet ``conn`` is in the middle of
        sending (0: none; unknown connections too): what its reader will
        hold once the packet is in. The servers' input budget
        (``max_buffered_input``) reserves it."""
        link = self._conns.get(conn)
        return 0 if link is None else link.conn.incomplete_packet_size

    @property
    def connection_count(self) -> int:
        """Connections opened and not yet lost: what ``max_connections`` counts
        (the servers add their pending TLS handshakes to it)."""
        return len(self._conns)

    # -- server-side publishing and introspection ---------------------------------

    def publish(
        self,
        topic: str,
        payload: bytes | str = b"",
        *,
        qos: QoS | int = 0,
        retain: bool = False,
        now: float,
        **properties: Any,
    ) -> int:
        """Publish a message from the broker itself; returns how many sessions it reached.

        ``properties`` are MQTT 5 PUBLISH properties (``message_expiry_interval``,
        ``user_properties``, ``content_type``, ...).

        :raises LocalProtocolError: an invalid topic name or QoS.
        """
        validate_topic_name(topic)
        if qos not in (0, 1, 2):
            raise LocalProtocolError(f"QoS must be 0, 1 or 2, not {qos!r}")
        if isinstance(payload, str):
            payload = payload.encode()
        self._tick(now)
        packet = PublishPacket(topic, payload, QoS(qos), retain, **properties)
        message = Message(packet, now, None)
        if retain:
            # The operator's own message: not held to the retained limits.
            self._retain(message, limited=False)
        return self._route(message, now)[0]

    # -- internals: events -----------------------------------------------------------

    def _process(self, link: Link, now: float) -> None:
        """Act on what the connection reports, in order, each event answered
        before the next packet is read."""
        handlers = self._handlers
        # A client's protocol error ends nothing here: the goodbye is queued
        # and its Disconnected comes last.
        for event in link.conn.events():
            handlers[type(event)](link, event, now)

    def _on_acknowledged(self, link: Link, event: PublishAcknowledged, now: float) -> None:
        """A QoS 1/2 flow to the client ended (acknowledged, or refused)."""
        session = link.session
        if session is None:
            return
        # Read, not made (the inflight_messages property would make it).
        inflight = session._inflight
        message = None if inflight is None else inflight.pop(event.packet_id, None)
        recorder = session.recorder
        if recorder is not None:
            recorder.end_inflight(session.client_id, event.packet_id)
        if message is not None:
            # _unhold inlined: every QoS 1/2 delivery ends here.
            message.holds -= 1
            if not message.holds:
                self._held_bytes -= message.size
        if inflight is not None and not inflight:
            session.give_back_inflight()  # the table a burst grew, given back while idle
        if session.pending or session.feeds:
            self._pump(session, now)

    def _on_discarded(self, link: Link, event: PublishDiscarded, now: float) -> None:
        session = link.session
        if session is not None:
            message = session.inflight_messages.pop(event.packet_id, None)
            if session.recorder is not None:
                session.recorder.end_inflight(session.client_id, event.packet_id)
            if message is not None:
                self._unhold(message)
            self.messages_dropped += 1

    def _on_unsubscribe(self, link: Link, event: UnsubscribeRequested, now: float) -> None:
        self._unsubscribe(link, event)

    def _take(self, link: Link, now: float) -> bytes:
        """The connection's output; what waited for the high-water mark too."""
        was_held = link.held
        data = link.conn.data_to_send(now)
        if was_held and not link.held:
            session = link.session
            if session is not None and (session.pending or session.feeds):
                self._pump(session, now)
                more = link.conn.data_to_send(now)
                if more:
                    data += more
        self.bytes_sent += len(data)
        return data

    def _release(self, link: Link, now: float) -> None:
        """Below the high-water mark again: what waited goes out."""
        session = link.session
        if session is not None and (session.pending or session.feeds):
            self._pump(session, now)

    # -- internals: bookkeeping ------------------------------------------------------

    def _tick(self, now: float) -> None:
        if self._started_at is None:
            self._started_at = now
            if self.config.sys_interval is not None:
                self._push_timer(now, "sys", None)
        if self._stored is not None:
            stored, self._stored = self._stored, None
            for record in stored:
                self._restore(record, now)
            for session in list(self._sessions.values()):
                if session.expires_at is not None and session.expires_at <= now:
                    # It expired while the broker was stopped: gone, its
                    # will sent (once every session is back to receive it).
                    self._end_session(session, now)

    def _push_timer(self, when: float, kind: str, key: Any) -> None:
        timers = self._timers
        # Entries due at the same time go in a fixed order: a connection's by
        # its id (an int it holds already: an idle connection's one entry
        # costs no int of its own, 28 bytes), the others in the order pushed.
        tie = key if kind == "conn" else next(self._timer_seq)
        heapq.heappush(timers, (when, tie, kind, key))
        if len(timers) > 2 * (len(self._conns) + 2 * len(self._sessions)) + 256:
            self._compact_timers()

    def _compact_timers(self) -> None:
        """Drop timer entries that can no longer do anything.

        Entries are not removed when their connection or session goes (a
        heap cannot do that cheaply), so churn (connections opened and
        closed faster than their keep-alive runs out) would pile them up for
        up to 1.5 times the longest keep-alive. Compacting when the heap
        outgrows what is alive keeps it proportional to the live
        connections and sessions, at an amortized constant cost per entry.
        """
        conns = self._conns
        sessions = self._sessions
        kept: list[tuple[float, int, str, Any]] = []
        watched: set[int] = set()
        for entry in sorted(self._timers):
            when, _, kind, key = entry
            if kind == "conn":
                # A connection's handler re-arms itself: its earliest entry is enough.
                link = conns.get(key)
                if link is None or link.finished or key in watched:
                    continue
                watched.add(key)
                link.timer_at = when  # the earliest, now the only one
            elif kind == "session":
                session = sessions.get(key)
                if session is None or session.expires_at != when:
                    continue
            elif kind == "will":
                session = sessions.get(key)
                if session is None or session.will_due != when:
                    continue
            elif kind == "feed" and key not in conns:
                continue
            kept.append(entry)
        # A sorted list is a heap; in place, as handle_timer may be walking it.
        self._timers[:] = kept

    def _watch(self, link: Link) -> None:
        """Make sure a timer entry comes for the connection by its deadline:
        none is added when an earlier one is due (its handler re-arms), so
        an accepted connection keeps one entry, not one per deadline set."""
        deadline = link.conn.get_timer()
        if deadline is not None:
            timer_at = link.timer_at
            if timer_at is not None and timer_at <= deadline:
                return
            link.timer_at = deadline
            self._push_timer(deadline, "conn", link.id)
