"""Group commit for the :class:`~mqttproto.broker.Broker` on a durable store.

With a store whose ``durable`` is true (:class:`~mqttproto.store.SQLiteStore`)
the broker promises that what it acknowledges is in the store:

- the sessions a loop iteration changed (messages routed to them, queued,
  acknowledged, a PUBREL, a subscription) are recorded as snapshots into the
  store's pending batch, and the batch is committed once, by :meth:`Durability.commit`;
- :meth:`~mqttproto.broker.Broker.flush` and
  :meth:`~mqttproto.broker.Broker.data_to_send` commit before they hand out
  any byte, so nothing a client sees (a delivery, a CONNACK with session
  present) is ahead of the store;
- the PUBACK/PUBREC of a QoS 1/2 message and the SUBACK are held until that
  commit returned; a QoS 2 identifier whose PUBREC is held is stored as
  awaiting its PUBREL in the same commit, so a client that sends the message
  again after a restart does not get it delivered twice [MQTT-4.3.3-10].
- A commit that fails (a full disk) acknowledges nothing it held: an MQTT 5
  publisher hears 0x97 *Quota exceeded* for each held message, SUBACK says
  0x97 for each filter; a 3.x client, which has no way to be told, is
  disconnected. The batch stays pending and the next commit tries it again.

With a store that is not durable (:class:`~mqttproto.store.MemoryStore`)
nothing of this runs: acknowledgements go at once, as they always did.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from ..enums import ReasonCode
from ..errors import LocalProtocolError
from ..store import SessionStore, StoreError
from ._sessions import Link, Session

__all__ = ["Durability"]

_C = ReasonCode
_T = TypeVar("_T")


class Durability:
    """The commit half of :class:`~mqttproto.broker.Broker`."""

    store: SessionStore
    _conns: dict[int, Link]
    _sessions: dict[str, Session]
    _dirty: dict[int, None]
    #: Whether the store is durable: answers wait for its commit.
    _durable: bool
    #: Sessions changed since the last commit that no dirty link names
    #: (queued for while away, pumped while output was taken).
    _touched: dict[str, Session]
    #: (link, packet id, QoS, reason code) of each PUBACK/PUBREC held.
    _held_acks: list[tuple[Link, int, int, ReasonCode]]
    #: SUBACKs held: called with whether the commit succeeded.
    _held_answers: list[tuple[Link, Callable[[bool], None]]]

    if TYPE_CHECKING:

        def _process(self, link: Link, now: float) -> None: ...

    #: Commits that failed (``$SYS``-style counter for operators).
    store_failures = 0
    #: The last failure's message (naming the file), or None.
    last_store_error: str | None = None

    def _setup_durability(self) -> None:
        self._durable = bool(getattr(self.store, "durable", False))
        self._touched = {}
        self._held_acks = []
        self._held_answers = []

    def _hold_answer(self, link: Link, answer: Callable[[bool], None]) -> None:
        self._held_answers.append((link, answer))

    def commit(self, now: float) -> bool:
        """Make every change so far durable, then send the answers held for it.

        The adapter calls this once per loop iteration (``flush`` does, before
        it hands out any output), so that one commit, and one disk sync,
        covers every message that iteration received. Returns False if the
        store failed (see :attr:`last_store_error`); the held answers were
        then refusals. Does nothing on a store that is not durable.
        """
        if not self._durable:
            return True
        store = self.store
        touched = self._touched
        conns = self._conns
        for conn_id in self._dirty:
            link = conns.get(conn_id)
            if link is not None and link.session is not None:
                touched[link.session.client_id] = link.session
        held_acks = self._held_acks
        held_answers = self._held_answers
        if not touched and not held_acks and not held_answers and not _pending(store):
            return True
        # QoS 2 identifiers about to be acknowledged: stored as awaiting
        # PUBREL in the same commit as the message's copies.
        releasing: dict[str, set[int]] = {}
        for link, packet_id, qos, code in held_acks:
            session = link.session
            if qos == 2 and code < 0x80 and session is not None:
                releasing.setdefault(session.client_id, set()).add(packet_id)
        sessions = self._sessions
        for client_id, session in touched.items():
            if sessions.get(client_id) is not session or not session.persistent:
                continue
            record = session.snapshot()
            extra = releasing.get(client_id)
            if extra:
                record = attrs.evolve(
                    record, awaiting_release=tuple(sorted({*record.awaiting_release, *extra}))
                )
            store.save_session(record)
        try:
            store.commit()
        except StoreError as exc:
            ok = False
            self.store_failures += 1
            self.last_store_error = str(exc)
            # Snapshot them again next time: the failed batch holds
            # identifiers that are now refused, not awaiting release.
            failed = dict(touched)
        else:
            ok = True
            failed = {}
        touched.clear()
        touched.update(failed)
        self._held_acks = []
        self._held_answers = []
        for link, packet_id, _qos, code in held_acks:
            self._answer_publish(link, packet_id, code, ok, now)
        for link, answer in held_answers:
            if not link.conn.closed:
                answer(ok)
                self._dirty[link.id] = None
        return ok

    def _committed(self, take: Callable[..., _T], *args: Any) -> _T:
        """``take(*args)`` (the output) between two commits: the first holds
        what came in, the second what taking the output changed (messages
        that waited for the high-water mark go out then), so both are stored
        before the adapter writes a byte of it."""
        now = args[-1]
        self.commit(now)
        out = take(*args)
        if self._touched:
            self.commit(now)
        return out

    def _answer_publish(
        self, link: Link, packet_id: int, code: ReasonCode, stored: bool, now: float
    ) -> None:
        conn = link.conn
        if conn.closed:
            return  # the client sends it again on its next connection
        self._dirty[link.id] = None
        if stored:
            conn.acknowledge(packet_id, code if link.v5 else _C.SUCCESS)
        elif link.v5:
            conn.acknowledge(packet_id, _C.QUOTA_EXCEEDED)
        else:
            # 3.x acknowledgements cannot refuse: the connection goes, and
            # the client sends the message again when it is back.
            conn.close(_C.QUOTA_EXCEEDED)
            self._process(link, now)


def _pending(store: Any) -> bool:
    pending = getattr(store, "pending", True)
    return bool(pending)


def refuse_suback(link: Link, packet_id: int, count: int) -> None:
    """SUBACK for a SUBSCRIBE whose subscriptions could not be stored: 0x97
    for each (3.1.1: 0x80 *Failure*)."""
    with contextlib.suppress(LocalProtocolError):
        link.conn.suback(packet_id, [_C.QUOTA_EXCEEDED] * count)
