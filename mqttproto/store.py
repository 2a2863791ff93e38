"""Where a :class:`~mqttproto.broker.Broker` keeps what must outlive it.

The broker holds its hot state in memory and records changes into a
:class:`SessionStore`:

- a persistent session's state (subscriptions, messages in flight both ways,
  its queue, a pending will, its expiry) as a snapshot
  (:meth:`SessionStore.save_session`);
- a message queued for a session whose client is away
  (:meth:`SessionStore.append_queued`);
- a retained message set, replaced or deleted (:meth:`SessionStore.set_retained`);
- a session discarded (:meth:`SessionStore.delete_session`).

**Transactions and group commit.** These calls only record: they add to the
store's *pending batch*. :meth:`SessionStore.commit` makes the whole batch
durable at once. A store whose :attr:`~SessionStore.durable` is true makes
the broker hold its answers (PUBACK, PUBREC, SUBACK) until a commit holds
what they promise; the adapter commits once per loop iteration (through
:meth:`Broker.flush <mqttproto.broker.Broker.flush>`), so one disk sync
covers every message of that iteration. :class:`MemoryStore` is not durable:
it applies each change at once, commits trivially, and the broker answers
at once, as fast as without a store. :class:`SQLiteStore` is the durable one.

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
    (through the broker), never the broker core itself.
    """

    #: True: a change is safe only once :meth:`commit` returned, so the
    #: broker holds every acknowledgement until then. False: changes are
    #: applied as they are recorded (nothing survives the process anyway).
    durable: bool

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

    def commit(self) -> None:
        """Nothing to do: every change was applied as it was recorded."""

    def close(self) -> None:
        """Nothing to release."""
