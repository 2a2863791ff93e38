"""Where a :class:`~mqttproto.broker.Broker` keeps what must outlive it.

The broker holds its hot state in memory and records changes into a
:class:`SessionStore`:

- a persistent session's own state (expiry, owner, subscriptions, QoS 2
  identifiers awaiting release, a pending will) with
  :meth:`SessionStore.save_session`, whole or (``messages=False``) without
  its messages;
- its messages one change at a time, as they happen: queued
  (:meth:`~SessionStore.append_queued`), sent from the queue
  (:meth:`~SessionStore.send_queued`), dropped from it
  (:meth:`~SessionStore.remove_queued`), sent at once
  (:meth:`~SessionStore.add_inflight`), past PUBREC
  (:meth:`~SessionStore.release_inflight`) and acknowledged
  (:meth:`~SessionStore.end_inflight`);
- a retained message set, replaced or deleted (:meth:`SessionStore.set_retained`);
- a session discarded (:meth:`SessionStore.delete_session`).

A store may also take many of the commonest changes in one call, and the
broker uses these where a store has them (:class:`SQLiteStore` does):
``append_queued_many(client_ids, message)``, one message queued for many
sessions (a fan-out); ``send_queued_many(client_id, packet_ids)`` and
``end_inflight_many(client_id, packet_ids)``, the head of a session's queue
sent with each identifier in turn and its flows ended (a client's run of
PUBACKs). Each is the same as the single calls one after the other; the
broker tells a run's ends before its sends only where that is the same.

**Transactions and group commit.** These calls only record: they add to the
store's *pending batch*. :meth:`SessionStore.commit` makes the whole batch
durable at once. A store whose :attr:`~SessionStore.durable` is true makes
the broker hold its answers (PUBACK, PUBREC, SUBACK) until a commit holds
what they promise, and record every change of a persistent session's
messages; the adapter commits once per loop iteration (through
:meth:`Broker.flush <mqttproto.broker.Broker.flush>`), so one disk sync
covers every message of that iteration, and a message queued, sent and
acknowledged between two commits costs the file nothing.
:class:`MemoryStore` is not durable: it applies each change at once,
commits trivially, and the broker answers at once and records a connected
session whole when it changes hands (connect, disconnect, subscribe), as
fast as without a store. :class:`SQLiteStore` is the durable one.

A new broker reads everything back with :meth:`SessionStore.load_sessions`
and :meth:`SessionStore.load_retained`. Times in records are on the
broker's clock (see :mod:`mqttproto._store_records`).
"""

from __future__ import annotations

from typing import Protocol

import attrs

from ._store_records import (
    RetainedMessage,
    StoredMessage,
    StoredSession,
    StoredSubscription,
    StoreError,
)
from ._store_sqlite import SQLiteStore

__all__ = [
    "MemoryStore",
    "RetainedMessage",
    "SQLiteStore",
    "SessionStore",
    "StoreError",
    "StoredMessage",
    "StoredSession",
    "StoredSubscription",
]


class SessionStore(Protocol):
    """Persistence for a broker's sessions and retained messages.

    The recording calls are made while the broker handles a packet or a
    timer: they must be quick and do no I/O (a durable store keeps them in
    its pending batch). Only :meth:`commit` writes, and the adapter calls it
    (through the broker), never the broker core itself. A call about a
    session the store does not hold, or about a message it does not have
    (an index past the queue, an unknown packet identifier), is ignored.
    """

    #: True: a change is safe only once :meth:`commit` returned, so the
    #: broker holds every acknowledgement until then. False: changes are
    #: applied as they are recorded (nothing survives the process anyway).
    durable: bool

    def load_sessions(self) -> list[StoredSession]:
        """Every stored session, as the last writes left it."""
        ...

    def save_session(self, session: StoredSession, *, messages: bool = True) -> None:
        """Replace the record of ``session.client_id`` with this snapshot.

        With ``messages=False`` only the session's own state is replaced (the
        ``inflight`` and ``queued`` of the record are not read): its messages
        stay as recorded by the calls below. The session must be stored
        already; an unknown one is ignored.
        """
        ...

    def append_queued(self, client_id: str, message: StoredMessage) -> None:
        """Add a message at the tail of a session's queue. Records that are
        the same object (one message queued for many sessions alike) may be
        stored once."""
        ...

    def remove_queued(self, client_id: str, index: int) -> None:
        """The queued message at ``index`` (0: the head) is gone: delivered
        at QoS 0, expired, dropped."""
        ...

    def send_queued(self, client_id: str, packet_id: int) -> None:
        """The head of the queue went in flight with ``packet_id``."""
        ...

    def add_inflight(self, client_id: str, packet_id: int, message: StoredMessage) -> None:
        """A message went in flight with ``packet_id`` (not through the
        queue). ``message`` is as :meth:`append_queued` takes it (its own
        ``packet_id`` and ``released`` are not read), so that one record
        serves many sessions."""
        ...

    def release_inflight(self, client_id: str, packet_id: int) -> None:
        """The QoS 2 flow ``packet_id`` is past PUBREC (its PUBREL is what goes
        again on resume)."""
        ...

    def end_inflight(self, client_id: str, packet_id: int) -> None:
        """The flow ``packet_id`` ended (acknowledged, refused, discarded)."""
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

    @property
    def pending(self) -> bool:
        """Whether changes wait for :meth:`commit`."""
        ...

    def commit(self) -> None:
        """Make every change recorded since the last commit durable, as one
        transaction: all of it or none of it survives a crash.

        :raises StoreError: the write failed (a full disk, an I/O error).
            The batch stays pending and the next commit tries it again, with
            what was recorded in between.
        """
        ...

    def close(self) -> None:
        """Release the store's resources (files); changes not committed are lost."""
        ...


class MemoryStore:
    """A :class:`SessionStore` in dictionaries: nothing outlives the process,
    but a new :class:`~mqttproto.broker.Broker` given the same store object
    resumes every session (useful in tests and for a restart in-process)."""

    durable = False
    #: Every change is applied as it is recorded.
    pending = False

    def __init__(self) -> None:
        self.sessions: dict[str, StoredSession] = {}
        #: Messages appended since each session's last snapshot.
        self.queued: dict[str, list[StoredMessage]] = {}
        self.retained: dict[str, RetainedMessage] = {}

    def load_sessions(self) -> list[StoredSession]:
        return [self._whole(client_id) for client_id in self.sessions]

    def _whole(self, client_id: str) -> StoredSession:
        session = self.sessions[client_id]
        extra = self.queued.get(client_id)
        if extra:
            session = attrs.evolve(session, queued=(*session.queued, *extra))
        return session

    def save_session(self, session: StoredSession, *, messages: bool = True) -> None:
        client_id = session.client_id
        if messages:
            self.sessions[client_id] = session
            self.queued.pop(client_id, None)
        elif client_id in self.sessions:
            old = self.sessions[client_id]
            self.sessions[client_id] = attrs.evolve(
                session, inflight=old.inflight, queued=old.queued
            )

    def append_queued(self, client_id: str, message: StoredMessage) -> None:
        if client_id in self.sessions:
            self.queued.setdefault(client_id, []).append(message)

    # The message calls below are made only by a broker on a durable store
    # (see the module docs): rebuilding the record each time is fine here.

    def remove_queued(self, client_id: str, index: int) -> None:
        if client_id in self.sessions:
            session = self._whole(client_id)
            if 0 <= index < len(session.queued):
                queued = session.queued[:index] + session.queued[index + 1 :]
                self.save_session(attrs.evolve(session, queued=queued))

    def send_queued(self, client_id: str, packet_id: int) -> None:
        if client_id in self.sessions:
            session = self._whole(client_id)
            if session.queued:
                head = session.queued[0]
                sent = StoredMessage(
                    attrs.evolve(head.packet, packet_id=packet_id), head.expires_at, packet_id
                )
                self.save_session(
                    attrs.evolve(
                        session, inflight=(*session.inflight, sent), queued=session.queued[1:]
                    )
                )

    def add_inflight(self, client_id: str, packet_id: int, message: StoredMessage) -> None:
        if client_id in self.sessions:
            session = self.sessions[client_id]
            sent = StoredMessage(
                attrs.evolve(message.packet, packet_id=packet_id), message.expires_at, packet_id
            )
            inflight = (*(m for m in session.inflight if m.packet_id != packet_id), sent)
            self.sessions[client_id] = attrs.evolve(session, inflight=inflight)

    def release_inflight(self, client_id: str, packet_id: int) -> None:
        if client_id in self.sessions:
            session = self.sessions[client_id]
            inflight = tuple(
                attrs.evolve(m, released=True) if m.packet_id == packet_id else m
                for m in session.inflight
            )
            self.sessions[client_id] = attrs.evolve(session, inflight=inflight)

    def end_inflight(self, client_id: str, packet_id: int) -> None:
        if client_id in self.sessions:
            session = self.sessions[client_id]
            inflight = tuple(m for m in session.inflight if m.packet_id != packet_id)
            self.sessions[client_id] = attrs.evolve(session, inflight=inflight)

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

    def commit(self) -> None:
        """Nothing to do: every change was applied as it was recorded."""

    def close(self) -> None:
        """Nothing to release."""
