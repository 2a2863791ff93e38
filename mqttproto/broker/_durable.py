"""Group commit for the :class:`~mqttproto.broker.Broker` on a durable store.

With a store whose ``durable`` is true (:class:`~mqttproto.store.SQLiteStore`)
the broker promises that what it acknowledges is in the store:

- a persistent session records each change of its messages into the store's
  pending batch as it happens (queued, sent, acknowledged: see
  :mod:`mqttproto.store`), and its own state (subscriptions, expiry, will,
  QoS 2 identifiers awaiting release) when that changes; the batch is
  committed once per loop iteration, by :meth:`Durability.commit`;
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
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any, TypeVar

from .._qos import NO_PACKET_IDS, OutboundStage
from .._state import ConnectionState
from ..enums import ReasonCode
from ..errors import LocalProtocolError
from ..store import SessionStore, StoredMessage, StoreError
from ._sessions import Link, Session

__all__ = ["Durability"]

_C = ReasonCode
_T = TypeVar("_T")
_RELEASED = OutboundStage.RELEASED
_CLOSED = ConnectionState.CLOSED


class Durability:
    """The commit half of :class:`~mqttproto.broker.Broker`."""

    store: SessionStore
    _conns: dict[int, Link]
    _sessions: dict[str, Session]
    _dirty: dict[int, None]
    #: Whether the store is durable: answers wait for its commit.
    _durable: bool
    #: (link, packet id, QoS, reason code) of each PUBACK/PUBREC held.
    _held_acks: list[tuple[Link, int, int, ReasonCode]]
    #: The store's ``append_queued_many``, if it has one.
    _append_queued_many: Callable[[list[str], Any], None] | None
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
        # A store may take a message queued for many sessions in one call.
        self._append_queued_many = getattr(self.store, "append_queued_many", None)
        self._held_acks = []
        self._held_answers = []

    def _hold_answer(self, link: Link, answer: Callable[[bool], None]) -> None:
        self._held_answers.append((link, answer))

    # -- recording ----------------------------------------------------------------------

    def _save_session(self, session: Session) -> None:
        """Record a persistent session's own state (it changed): whole into a
        store that is not durable, or the first time; else without its
        messages, which are recorded as they change."""
        recorder = session.recorder
        if recorder is None:
            if self._durable:
                session.recorder = self.store
                flows = session.flows_or_none
                session.releases_seen = 0 if flows is None else flows.releases
                session.stored_awaiting = _awaiting(session)
            self.store.save_session(session.snapshot())
            return
        self._note_releases(session)
        awaiting = session.stored_awaiting = _awaiting(session)
        recorder.save_session(session.snapshot(messages=False, awaiting=awaiting), messages=False)

    def _record_queued(self, client_ids: list[str], record: StoredMessage | None) -> None:
        """Tell the store that the queues of ``client_ids`` (emptied) took
        ``record``: in one call where the store takes many."""
        assert record is not None
        append_many = self._append_queued_many
        if append_many is not None:
            append_many(client_ids, record)
        else:
            for client_id in client_ids:
                self.store.append_queued(client_id, record)
        client_ids.clear()

    def _forget_session(self, session: Session) -> None:
        session.recorder = None
        self.store.delete_session(session.client_id)

    def _note_releases(self, session: Session) -> None:
        """Record the QoS 2 flows that PUBREC moved past (the connection
        changes them without telling: the counter says whether any did)."""
        flows = session.flows_or_none
        if flows is None or flows.releases == session.releases_seen:
            return
        outbound = flows.outbound
        session.releases_seen = outbound.releases
        recorder = session.recorder
        assert recorder is not None
        client_id = session.client_id
        for packet_id, message in outbound.inflight.items():
            if message.stage is _RELEASED:
                recorder.release_inflight(client_id, packet_id)

    def _note_qos2(self, session: Session, releasing: set[int] | None) -> None:
        """Record the QoS 2 state the connection changed by itself: flows to
        the client past PUBREC, identifiers from it released by PUBREL, and
        ``releasing``, identifiers whose PUBREC the coming commit lets go."""
        self._note_releases(session)
        awaiting: AbstractSet[int] = _awaiting(session)
        if releasing:
            awaiting = awaiting | releasing
        if awaiting != session.stored_awaiting:
            recorder = session.recorder
            assert recorder is not None
            session.stored_awaiting = frozenset(awaiting)
            recorder.save_session(
                session.snapshot(messages=False, awaiting=session.stored_awaiting),
                messages=False,
            )

    # -- the commit ---------------------------------------------------------------------

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
        held_acks = self._held_acks
        held_answers = self._held_answers
        # QoS 2 identifiers about to be acknowledged: stored as awaiting
        # PUBREL in the same commit as the message's copies.
        releasing: dict[Session, set[int]] = {}
        for link, packet_id, qos, code in held_acks:
            session = link.session
            if qos == 2 and code < 0x80 and session is not None and session.recorder is not None:
                releasing.setdefault(session, set()).add(packet_id)
        conns = self._conns
        for conn_id in self._dirty:
            dirty = conns.get(conn_id)
            if dirty is not None:
                session = dirty.session
                if session is not None and session.recorder is not None:
                    self._note_qos2(session, releasing.get(session))
        for session, packet_ids in releasing.items():
            if session.stored_awaiting.issuperset(packet_ids):
                continue
            self._note_qos2(session, packet_ids)
        if not held_acks and not held_answers and not store.pending:
            return True
        try:
            store.commit()
        except StoreError as exc:
            ok = False
            self.store_failures += 1
            self.last_store_error = str(exc)
            # The identifiers are refused now, not awaiting release: the
            # batch, tried again next time, must not say otherwise.
            for session in releasing:
                if session.recorder is not None:
                    self._note_qos2(session, None)
        else:
            ok = True
        self._held_acks = []
        self._held_answers = []
        if ok:
            # _answer_publish's common case inlined: one per message.
            marked = self._dirty
            for link, packet_id, _qos, code in held_acks:
                conn = link.conn
                if conn.state is not _CLOSED:
                    marked[link.id] = None
                    conn.acknowledge(packet_id, code if link.v5 else _C.SUCCESS)
        else:
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
        if self.store.pending:
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


def _awaiting(session: Session) -> frozenset[int]:
    """The QoS 2 identifiers from the client awaiting PUBREL, as recorded
    (the shared empty set when there are none)."""
    flows = session.flows_or_none
    ids = () if flows is None else flows.awaiting_release
    return frozenset(ids) if ids else NO_PACKET_IDS


def refuse_suback(link: Link, packet_id: int, count: int) -> None:
    """SUBACK for a SUBSCRIBE whose subscriptions could not be stored: 0x97
    for each (3.1.1: 0x80 *Failure*)."""
    with contextlib.suppress(LocalProtocolError):
        link.conn.suback(packet_id, [_C.QUOTA_EXCEEDED] * count)
