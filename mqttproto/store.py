"""Where a :class:`~mqttproto.broker.Broker` keeps what must outlive it.

The broker holds its hot state in memory and writes through a
:class:`SessionStore` at the points that matter:

- a persistent session's subscriptions change (:meth:`SessionStore.save_session`);
- a message is queued for a session whose client is away
  (:meth:`SessionStore.append_queued`);
- a retained message is set, replaced or deleted (:meth:`SessionStore.set_retained`);
- a session ends its network connection or is resumed (a full snapshot with
  its in-flight messages, queue and pending will, :meth:`SessionStore.save_session`);
- a session is discarded (:meth:`SessionStore.delete_session`).

A new broker reads everything back with :meth:`SessionStore.load_sessions`
and :meth:`SessionStore.load_retained`. Records are plain frozen attrs
classes holding packets, so a SQLite store can encode each message with
:func:`~mqttproto.encode_packet` (MQTT 5 keeps every property) and each
record's other fields as columns.

Times (``expires_at``) are on the broker's clock; a store that outlives the
process keeps the *intervals* (``session_expiry_interval``, the message's own
``message_expiry_interval``) and the broker restarts the clocks when it loads
them.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from .enums import QoS, RetainHandling
from .packets import PublishPacket, Will

__all__ = [
    "MemoryStore",
    "RetainedMessage",
    "SessionStore",
    "StoredMessage",
    "StoredSession",
    "StoredSubscription",
]


@attrs.frozen
class StoredSubscription:
    """One subscription of a session, with its options."""

    topic_filter: str
    qos: QoS = QoS.AT_MOST_ONCE
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE
    subscription_identifier: int | None = None


@attrs.frozen
class StoredMessage:
    """A message on its way to a session: queued, or in flight with ``packet_id``.

    ``packet`` is the PUBLISH as it goes to this client (granted QoS, retain
    flag and subscription identifiers applied; the message expiry interval as
    it was received). ``released`` marks a QoS 2 flow past PUBREC, whose
    PUBREL is what goes again on resume.
    """

    packet: PublishPacket
    expires_at: float | None = None
    packet_id: int | None = None
    released: bool = False


@attrs.frozen
class RetainedMessage:
    """A retained message of a topic; it expires at ``expires_at`` (None: never)."""

    packet: PublishPacket
    expires_at: float | None = None

    @property
    def topic(self) -> str:
        return self.packet.topic

    @property
    def payload(self) -> bytes:
        return self.packet.payload

    @property
    def qos(self) -> QoS:
        return self.packet.qos


@attrs.frozen
class StoredSession:
    """A snapshot of one session.

    ``session_expiry_interval`` is in seconds (0xFFFFFFFF: never);
    ``expires_at`` is None while the client is connected.
    ``awaiting_release`` holds the QoS 2 packet ids received from the client
    whose PUBREL has not arrived (exactly-once de-duplication). ``username``
    is the identity that owns the session (the authenticated username, or
    the one a client certificate established; None: anonymous): a CONNECT
    with the same client identifier by another identity never resumes it.
    """

    client_id: str
    session_expiry_interval: int
    expires_at: float | None = None
    subscriptions: tuple[StoredSubscription, ...] = ()
    inflight: tuple[StoredMessage, ...] = ()
    queued: tuple[StoredMessage, ...] = ()
    awaiting_release: tuple[int, ...] = ()
    will: Will | None = None
    will_due: float | None = None
    username: str | None = None


class SessionStore(Protocol):
    """Persistence for a broker's sessions and retained messages.

    Calls are synchronous and made while the broker handles a packet or a
    timer, so an implementation must be quick (an in-memory dict, a local
    SQLite database in WAL mode); it must not block on the network.
    """

    def load_sessions(self) -> list[StoredSession]:
        """Every stored session, as the last writes left it."""
        ...

    def save_session(self, session: StoredSession) -> None:
        """Replace the record of ``session.client_id`` with this snapshot."""
        ...

    def append_queued(self, client_id: str, message: StoredMessage) -> None:
        """Add a message to the queue of a stored session whose client is away."""
        ...

    def delete_session(self, client_id: str) -> None:
        """Forget a session (clean start, expiry); unknown ids are ignored."""
        ...

    def load_retained(self) -> list[RetainedMessage]:
        """Every stored retained message."""
        ...

    def set_retained(self, topic: str, message: RetainedMessage | None) -> None:
        """Set (or, with None, delete) the retained message of ``topic``."""
        ...


class MemoryStore:
    """A :class:`SessionStore` in dictionaries: nothing outlives the process,
    but a new :class:`~mqttproto.broker.Broker` given the same store object
    resumes every session (useful in tests and for a restart in-process)."""

    def __init__(self) -> None:
        self.sessions: dict[str, StoredSession] = {}
        #: Messages appended since each session's last snapshot.
        self.queued: dict[str, list[StoredMessage]] = {}
        self.retained: dict[str, RetainedMessage] = {}

    def load_sessions(self) -> list[StoredSession]:
        sessions = []
        for client_id, session in self.sessions.items():
            extra = self.queued.get(client_id)
            if extra:
                session = attrs.evolve(session, queued=(*session.queued, *extra))
            sessions.append(session)
        return sessions

    def save_session(self, session: StoredSession) -> None:
        self.sessions[session.client_id] = session
        self.queued.pop(session.client_id, None)

    def append_queued(self, client_id: str, message: StoredMessage) -> None:
        if client_id in self.sessions:
            self.queued.setdefault(client_id, []).append(message)

    def delete_session(self, client_id: str) -> None:
        self.sessions.pop(client_id, None)
        self.queued.pop(client_id, None)

    def load_retained(self) -> list[RetainedMessage]:
        return list(self.retained.values())

    def set_retained(self, topic: str, message: RetainedMessage | None) -> None:
        if message is None:
            self.retained.pop(topic, None)
        else:
            self.retained[topic] = message
