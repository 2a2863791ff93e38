"""What the broker keeps per client: :class:`Session` and :class:`Link`.

A :class:`Session` is the state the protocol says outlives a network
connection (MQTT 5.0 section 4.1): subscriptions, the QoS state of the flows
(a :class:`~mqttproto.server.ServerSession`: messages in flight to the client
and their packet identifiers, QoS 2 identifiers received and not yet
released), messages queued for the client, the retained messages still owed to its new
subscriptions, and a will waiting for its delay.

A :class:`Link` is one network connection as the broker sees it: the
:class:`~mqttproto.server.ServerConnection` that speaks the protocol, and
what the broker knows besides (the peer, the identity the transport
established, the backlog an adapter reported, the session it serves).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import ClassVar

from .._qos import NO_PACKET_IDS
from .._state import Rare, RareField
from ..enums import QoS, RetainHandling
from ..events import ConnectRequested, Disconnected
from ..packets import Will
from ..server import ServerConnection, ServerSession
from ..store import SessionStore, StoredMessage, StoredSession, StoredSubscription
from ._auth import AuthenticationJob
from ._message import Message, Pending
from ._retained import RetainedFeed
from ._router import Sub

__all__ = ["Link", "Session"]

_QOS = (QoS.AT_MOST_ONCE, QoS.AT_LEAST_ONCE, QoS.EXACTLY_ONCE)


class Session:
    """The state of one client identifier that outlives its connections."""

    __slots__ = (
        "_flows",
        "_inflight",
        "_max_queued",
        "_subs",
        "client_id",
        "expires_at",
        "expiry_interval",
        "feeds",
        "link",
        "pending",
        "queued_bytes",
        "recorder",
        "releases_seen",
        "stored_awaiting",
        "username",
        "will",
        "will_due",
    )

    def __init__(self, client_id: str, *, max_queued: int) -> None:
        self.client_id = client_id
        #: The network connection serving the session, if the client is there.
        self.link: Link | None = None
        #: Seconds the session outlives its connection (0: not at all).
        self.expiry_interval = 0
        #: When an unconnected session expires (None: connected, or never).
        self.expires_at: float | None = None
        #: The subscriptions (see :attr:`subscriptions`): None, the one Sub
        #: itself, or full filter -> Sub once there are two. Most sessions
        #: have one, and a dict of one costs 184 bytes.
        self._subs: Sub[Session] | dict[str, Sub[Session]] | None = None
        #: See flows: None while offline and never used.
        self._max_queued = max_queued
        self._flows: ServerSession | None = None
        #: Messages waiting for the client: made by the first one, dropped
        #: once drained (an empty deque costs 760 bytes; most never queue).
        self.pending: deque[Pending] | tuple[()] = ()
        #: Subscriptions whose retained messages are still being sent, in
        #: the order they were made (see _retained.RetainedFeed): made by the
        #: first one, dropped once none is left.
        self.feeds: list[RetainedFeed] | tuple[()] = ()
        #: Sizes of the messages in ``pending`` together (``max_queued_bytes``).
        self.queued_bytes = 0
        #: See inflight_messages: None while no flow holds a message.
        self._inflight: dict[int, Message] | None = None
        #: The identity that made the session and owns it (None: anonymous).
        self.username: str | None = None
        #: A will waiting for its delay after the connection ended.
        self.will: Will | None = None
        self.will_due: float | None = None
        #: The durable store that records this session's messages change by
        #: change (None: the session is not persistent, or the store is not
        #: durable and gets whole snapshots instead).
        self.recorder: SessionStore | None = None
        #: ``flows.outbound.releases`` when the recorder last heard of PUBRECs.
        self.releases_seen = 0
        #: The QoS 2 identifiers awaiting release as last recorded (the
        #: shared empty one while there are none: an empty frozenset costs
        #: 216 bytes).
        self.stored_awaiting: frozenset[int] = NO_PACKET_IDS

    @property
    def flows(self) -> ServerSession:
        """The QoS flows' state, handed to each connection that resumes it
        (made when first needed; see :meth:`park_flows`)."""
        flows = self._flows
        if flows is None:
            flows = self._flows = ServerSession(max_queued=self._max_queued)
        return flows

    @property
    def flows_or_none(self) -> ServerSession | None:
        """``flows`` if it exists (what reads it without making it)."""
        return self._flows

    @property
    def inflight_flows(self) -> int:
        """How many messages are in flight to the client (``flows``)."""
        flows = self._flows
        return 0 if flows is None else len(flows.inflight)

    def park_flows(self) -> None:
        """Drop ``flows`` while it holds nothing (the session went offline)."""
        if self._flows is not None and self._flows.unused:
            self._flows = None

    @property
    def inflight_messages(self) -> dict[int, Message]:
        """Packet id -> the message of each QoS 1/2 flow in ``flows``, so
        that the memory budget is given back when the flow ends. Made by
        the first flow (see :meth:`give_back_inflight`)."""
        inflight = self._inflight
        if inflight is None:
            inflight = self._inflight = {}
        return inflight

    @property
    def inflight_count(self) -> int:
        """How many messages ``inflight_messages`` holds (without making it)."""
        inflight = self._inflight
        return 0 if inflight is None else len(inflight)

    def give_back_inflight(self) -> None:
        """Drop ``inflight_messages`` if it is empty (an idle session keeps none)."""
        if not self._inflight:
            self._inflight = None

    @property
    def subscriptions(self) -> Mapping[str, Sub[Session]]:
        """Full topic filter (``$share/...`` included) -> subscription, in
        the order they were made. Read it; change it with
        :meth:`put_subscription`, :meth:`pop_subscription` and
        :meth:`clear_subscriptions`."""
        subs = self._subs
        if subs is None:
            return {}
        if isinstance(subs, dict):
            return subs
        assert isinstance(subs, Sub)
        return {_full_filter(subs): subs}

    @property
    def subscription_count(self) -> int:
        subs = self._subs
        return 0 if subs is None else len(subs) if isinstance(subs, dict) else 1

    def subscription(self, full_filter: str) -> Sub[Session] | None:
        """The subscription of ``full_filter``, if the session has it."""
        subs = self._subs
        if isinstance(subs, dict):
            return subs.get(full_filter)
        return subs if subs is not None and _full_filter(subs) == full_filter else None

    def put_subscription(self, full_filter: str, sub: Sub[Session]) -> Sub[Session] | None:
        """Make ``sub`` the subscription of ``full_filter`` (a new one goes
        last); the one it replaces, if any."""
        subs = self._subs
        if subs is None:
            self._subs = sub
            return None
        if isinstance(subs, dict):
            old = subs.get(full_filter)
            subs[full_filter] = sub
            return old
        assert isinstance(subs, Sub)
        only = _full_filter(subs)
        if only == full_filter:
            self._subs = sub
            return subs
        self._subs = {only: subs, full_filter: sub}
        return None

    def pop_subscription(self, full_filter: str) -> Sub[Session] | None:
        """Remove the subscription of ``full_filter``; it, if there was one."""
        subs = self._subs
        if isinstance(subs, dict):
            sub = subs.pop(full_filter, None)
            if len(subs) == 1:
                (self._subs,) = subs.values()
            return sub
        if subs is not None and _full_filter(subs) == full_filter:
            self._subs = None
            return subs
        return None

    def clear_subscriptions(self) -> list[Sub[Session]]:
        """Remove every subscription; them, in the order they were made."""
        subs = list(self.subscriptions.values())
        self._subs = None
        return subs

    @property
    def connected(self) -> bool:
        return self.link is not None

    @property
    def persistent(self) -> bool:
        return self.expiry_interval > 0

    def snapshot(
        self, *, messages: bool = True, awaiting: frozenset[int] | None = None
    ) -> StoredSession:
        """This session as a store record; without its messages with
        ``messages=False``; ``awaiting``: the QoS 2 identifiers awaiting
        release to record (by default those of ``flows``)."""
        subscriptions = tuple(
            StoredSubscription(
                full_filter,
                _QOS[sub.qos],
                sub.no_local,
                sub.retain_as_published,
                RetainHandling(sub.retain_handling),
                sub.sub_id,
            )
            for full_filter, sub in self.subscriptions.items()
        )
        flows = self._flows  # read, not made
        inflight: tuple[StoredMessage, ...] = ()
        queued: tuple[StoredMessage, ...] = ()
        if messages and flows is not None:
            held = self._inflight or {}
            inflight = tuple(
                StoredMessage(
                    m.packet,
                    _expires_at(held.get(m.packet_id)),
                    packet_id=m.packet_id,
                    released=m.released,
                )
                for m in flows.inflight
            )
        if messages:
            queued = tuple(
                message.stored(qos, retain, sub_ids)
                for message, qos, retain, sub_ids in self.pending
            )
        return StoredSession(
            self.client_id,
            self.expiry_interval,
            self.expires_at,
            subscriptions,
            inflight,
            queued,
            tuple(sorted(awaiting))
            if awaiting is not None
            else ()
            if flows is None
            else flows.awaiting_release,
            self.will,
            self.will_due,
            self.username,
        )


def _full_filter(sub: Sub[Session]) -> str:
    """The filter ``sub`` was asked for: its own, or ``$share/group/filter``."""
    group = sub.group
    return sub.topic_filter if group is None else f"$share/{group}/{sub.topic_filter}"


def _expires_at(message: Message | None) -> float | None:
    return None if message is None else message.expires_at


class _LinkRare(Rare):
    """The fields of a :class:`Link` set around the CONNECT, at its end, or
    on a few connections (a client certificate's identity): see
    :class:`~mqttproto._state.Rare` (eight slots of every Link, 64 bytes)."""

    DEFAULTS: ClassVar[dict[str, object]] = {
        "assigned_id": None,
        "auth_info": None,
        "auth_job": None,
        "connect": None,
        "goodbye": None,
        "identity": None,
        "over_quota": False,
        "will_on_close": True,
    }
    __slots__ = tuple(DEFAULTS)


class Link:
    """One network connection as the broker sees it."""

    __slots__ = (
        "_rare",
        "address",
        "backlog",
        "client_id",
        "conn",
        "feed_due",
        "finished",
        "id",
        "max_out",
        "max_unsent",
        "peer",
        "session",
        "timer_at",
        "username",
        "v5",
    )

    #: The username the transport established (a client certificate's CN),
    #: which overrides the CONNECT's; see Broker.open_connection.
    identity: RareField[str | None] = RareField(_LinkRare)
    #: The CONNECT, once it came, while something is read from it (its will,
    #: its authentication method).
    connect: RareField[ConnectRequested | None] = RareField(_LinkRare)
    #: The client identifier the broker assigned, until the CONNACK says it.
    assigned_id: RareField[str | None] = RareField(_LinkRare)
    #: The authenticator's ConnectInfo while the CONNECT is answered.
    auth_info: RareField[object] = RareField(_LinkRare)
    #: The deferred authentication this connection waits for.
    auth_job: RareField[AuthenticationJob | None] = RareField(_LinkRare)
    #: How it ended (the connection's Disconnected), for the log.
    goodbye: RareField[Disconnected | None] = RareField(_LinkRare)
    #: Opened past ``max_connections``: its CONNECT is refused with 0x97.
    over_quota: RareField[bool] = RareField(_LinkRare)
    #: Whether the end of the connection publishes the will: not after a
    #: normal DISCONNECT, nor when the server shuts down.
    will_on_close: RareField[bool] = RareField(_LinkRare)

    def __init__(
        self,
        link_id: int,
        conn: ServerConnection,
        *,
        peer: str | None,
        identity: str | None,
        address: str | None,
        max_unsent: int,
    ) -> None:
        self.id = link_id
        self.conn = conn
        self.peer = peer
        #: See the properties below (connect, identity...).
        self._rare: _LinkRare | None = None
        if identity is not None:
            self.identity = identity
        #: Where the connection comes from, for the failure delay.
        self.address = address
        self.session: Session | None = None
        self.client_id = ""
        self.username: str | None = None
        self.v5 = False
        #: Whether the broker handled the connection's end.
        self.finished = False
        #: The client's Maximum Packet Size, once connected.
        self.max_out = 1 << 30
        #: The ``max_unsent_bytes`` high-water mark (0 while held back by
        #: ``memory_limit``), and what the adapter last said it has taken
        #: but not yet written.
        self.max_unsent = max_unsent
        self.backlog = 0
        #: Whether a "feed" timer is set: retained messages owed wait for
        #: the output to drain (see _feed).
        self.feed_due = False
        #: When the earliest "conn" timer entry of the connection is due
        #: (None: none is), so that _watch adds none behind it.
        self.timer_at: float | None = None

    @property
    def unsent(self) -> int:
        """Output not yet written: not taken by the adapter, or in its backlog."""
        return self.conn.bytes_to_send + self.backlog

    @property
    def held(self) -> bool:
        """Whether deliveries to the client wait (above its high-water mark)."""
        return self.conn.bytes_to_send + self.backlog >= self.max_unsent
