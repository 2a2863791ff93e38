"""What an application or an operator asks the broker: its sessions, their
subscriptions, the retained messages, who receives a topic (also shown with
the filters and shared groups that match, for the HTTP admin API and
``mqttproto ctl``), disconnecting a client for good (:meth:`Admin.kick`), and the clients of
users whose credentials changed (:meth:`Admin.disconnect_users`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import attrs

from .._state import ConnectionState
from ..enums import ProtocolVersion, QoS, ReasonCode, RetainHandling
from ..packets import Subscription
from ..store import RetainedMessage
from ..topics import topic_matches

if TYPE_CHECKING:
    from ..events import Disconnected
    from ._retained import RetainedStore
    from ._router import Router
    from ._sessions import Link, Session

__all__ = ["Admin", "Receiver", "SessionInfo", "SharedReceivers"]

_VERSIONS: dict[ProtocolVersion | None, str] = {
    ProtocolVersion.MQTT_3_1: "3.1",
    ProtocolVersion.MQTT_3_1_1: "3.1.1",
    ProtocolVersion.MQTT_5_0: "5.0",
}


@attrs.frozen
class SessionInfo:
    """What :meth:`Broker.sessions` reports about one session."""

    client_id: str
    connected: bool
    protocol_version: ProtocolVersion | None
    username: str | None
    peer: str | None
    session_expiry_interval: int
    subscriptions: int
    inflight: int
    queued: int


@attrs.frozen
class Receiver:
    """A client that receives a topic through one of its plain subscriptions."""

    client_id: str
    topic_filter: str
    qos: int


@attrs.frozen
class SharedReceivers:
    """A shared subscription group matching a topic: one of its members gets
    each message (``next`` is the one the next message would go to)."""

    group: str
    topic_filter: str
    #: ``(client_id, qos)`` of every member.
    members: tuple[tuple[str, int], ...]
    next: str


class Admin:
    """The operator's half of :class:`~mqttproto.broker.Broker`."""

    _router: Router[Session]
    _sessions: dict[str, Session]
    _conns: dict[int, Link]
    _dirty: dict[int, None]
    _retained: RetainedStore

    if TYPE_CHECKING:

        def _process(self, link: Link, now: float) -> None: ...

        def _end_session(self, session: Session, now: float) -> None: ...

        def _tick(self, now: float) -> None: ...

    def subscribers(self, topic: str) -> list[tuple[str, QoS]]:
        """The client ids (and granted QoS) a publish to ``topic`` would reach now."""
        route = self._router.route(topic)
        found = [(t.session.client_id, QoS(t.qos)) for t in route.targets]
        for group, members in route.groups:
            cursor = self._router._cursors.get(group, 0)
            sub = members[cursor % len(members)]
            found.append((sub.session.client_id, QoS(sub.qos)))
        return found

    def sessions(self) -> list[SessionInfo]:
        """Every session, connected or not."""
        return [
            SessionInfo(
                s.client_id,
                s.link is not None,
                s.link.conn.version if s.link is not None else None,
                s.username,
                s.link.peer if s.link is not None else None,
                s.expiry_interval,
                s.subscription_count,
                s.inflight_flows,
                len(s.pending),
            )
            for s in self._sessions.values()
        ]

    def subscriptions(self, client_id: str) -> list[Subscription]:
        """The subscriptions of a session ([] if there is no such session)."""
        session = self._sessions.get(client_id)
        if session is None:
            return []
        return [
            Subscription(
                full_filter,
                QoS(sub.qos),
                sub.no_local,
                sub.retain_as_published,
                RetainHandling(sub.retain_handling),
            )
            for full_filter, sub in session.subscriptions.items()
        ]

    def retained(self, topic_filter: str) -> list[RetainedMessage]:
        """The retained messages ``topic_filter`` matches (expired ones left out)."""
        return [m for m in self._retained.match(topic_filter) if m.expires_at is None]

    def retained_at(self, topic_filter: str, now: float) -> list[RetainedMessage]:
        """:meth:`retained`, leaving out those expired at ``now``."""
        return [
            m
            for m in self._retained.match(topic_filter)
            if m.expires_at is None or m.expires_at > now
        ]

    def receivers(self, topic: str) -> list[Receiver | SharedReceivers]:
        """Who a message published to ``topic`` now would reach, with the
        subscriptions that match it: every matching plain filter of each
        client (a client gets the message once, at the highest QoS of
        them), then each shared group (one member of it gets the message).

        :raises LocalProtocolError: ``topic`` is not a valid topic name.
        """
        from ..topics import validate_topic_name

        validate_topic_name(topic)
        route = self._router.route(topic)
        found: list[Receiver | SharedReceivers] = []
        for target in route.targets:
            session = target.session
            for full_filter, sub in session.subscriptions.items():
                if sub.group is None and topic_matches(sub.topic_filter, topic):
                    found.append(Receiver(session.client_id, full_filter, sub.qos))
        cursors: dict[Any, int] = self._router._cursors
        for group, members in route.groups:
            first = members[0]
            pick = members[cursors.get(group, 0) % len(members)]
            found.append(
                SharedReceivers(
                    str(first.group),
                    f"$share/{first.group}/{first.topic_filter}",
                    tuple((m.session.client_id, m.qos) for m in members),
                    pick.session.client_id,
                )
            )
        return found

    def kick(self, client_id: str, now: float) -> bool:
        """Disconnect ``client_id`` and discard its session; False: no such session.

        An MQTT 5 client gets DISCONNECT 0x98 *Administrative action*; a 3.x
        client's connection is closed. Its will is published, as for any
        connection the client did not end itself, and the session ends
        whatever its expiry interval (its queued messages are dropped).
        """
        session = self._sessions.get(client_id)
        if session is None:
            return False
        self._tick(now)
        link = session.link
        if link is None:
            self._end_session(session, now)
            return True
        # Not persistent any more: the end of the connection ends the session.
        session.expiry_interval = 0
        conn = link.conn
        if conn.state is ConnectionState.CONNECTED:
            # 3.x has no server DISCONNECT: the connection just closes.
            conn.disconnect(ReasonCode.ADMINISTRATIVE_ACTION)
        elif not conn.closed:
            conn.close()
        self._dirty[link.id] = None
        self._process(link, now)
        return True

    def disconnect_users(
        self,
        usernames: Collection[str],
        now: float,
        *,
        reason_code: ReasonCode = ReasonCode.NOT_AUTHORIZED,
        reason_string: str | None = None,
    ) -> list[str]:
        """Disconnect every client that logged in as one of ``usernames``; their ids.

        For credentials that stopped being valid (a user removed from the
        password file, a password changed): an MQTT 5 client gets DISCONNECT
        with ``reason_code``, a 3.x client's connection is closed. A client
        whose username the transport verified (a TLS client certificate)
        did not log in with a password and stays. Sessions are kept, as
        their expiry says, for when the user comes back with valid
        credentials; wills are published, as for any connection the client
        did not end itself.
        """
        wanted = set(usernames)
        if not wanted:
            return []
        self._tick(now)
        dropped = []
        for link in list(self._conns.values()):
            conn = link.conn
            if conn.closed or link.identity is not None or link.username not in wanted:
                continue
            if conn.state is ConnectionState.CONNECTED:
                conn.disconnect(reason_code, reason_string=reason_string)
            elif link.session is None and link.connect is not None:
                # Its CONNECT may be checked against the old file still.
                conn.refuse(reason_code, reason_string=reason_string)
            else:
                conn.close()
            dropped.append(link.client_id)
            self._dirty[link.id] = None
            self._process(link, now)
        return dropped

    def session_reports(self, now: float) -> list[dict[str, Any]]:
        """Every session as the admin API shows it (JSON-ready): ``client_id``,
        ``username``, ``connected``, ``address``, ``protocol_version`` ("3.1",
        "3.1.1", "5.0" or None), ``subscriptions`` (``{topic_filter, qos}``),
        ``queued`` and ``inflight`` counts, and ``expires_in``: seconds until
        an offline session expires (None: connected, or never expires)."""
        reports = []
        for session in self._sessions.values():
            link = session.link
            expires_at = session.expires_at
            expires_in = None
            if link is None and expires_at is not None:
                expires_in = max(0, round(expires_at - now))
            reports.append(
                {
                    "client_id": session.client_id,
                    "username": session.username,
                    "connected": link is not None,
                    "address": link.peer if link is not None else None,
                    "protocol_version": _VERSIONS.get(link.conn.version)
                    if link is not None
                    else None,
                    "subscriptions": [
                        {"topic_filter": full_filter, "qos": sub.qos}
                        for full_filter, sub in session.subscriptions.items()
                    ],
                    "queued": len(session.pending),
                    "inflight": session.inflight_count,
                    "expires_in": expires_in,
                }
            )
        return reports

    # -- for the servers' log -------------------------------------------------------------

    def connection_identity(self, conn: int) -> tuple[str, str | None] | None:
        """``(client id, username)`` of connection ``conn`` once its CONNECT
        came (the assigned id if the client gave none); None before, or for
        an unknown connection."""
        link = self._conns.get(conn)
        if link is None or not link.client_id:
            return None
        return link.client_id, link.username

    def connection_goodbye(self, conn: int) -> Disconnected | None:
        """How connection ``conn`` ended (its :class:`~mqttproto.events.Disconnected`:
        who said goodbye and the reason code); None while it is open."""
        link = self._conns.get(conn)
        return None if link is None else link.goodbye
