"""What a :class:`~mqttproto.store.SQLiteStore` file holds, kept in memory,
and the batch of changes waiting for the next commit.

The file stores each message once (``messages``), however many sessions hold
it, and a session's deliveries of them as runs (``deliveries``, see
``_store_rows``: consecutive keys of consecutive messages, queued or in
flight with identifiers in turn, are one row). Each recording call changes
this picture at once and notes the deliveries it changed in the pending
batch (:class:`Batch`); the commit writes only the rows those changed, each
once, in its final state:

- the deliveries a commit adds to a session are one row per run;
- a row whose deliveries are all acknowledged is deleted, one cut by a change
  (a part sent from the queue, a part acknowledged) is replaced by its parts;
- a delivery (or message) made and gone again within one batch is never
  written at all;
- a message row goes when the last delivery holding it does.

A failed commit leaves the batch as it is: the rows it names are written by
the next commit, in the state they have then.
"""

from __future__ import annotations

from bisect import insort
from collections import deque
from collections.abc import Iterable
from typing import Any

from ._store_records import RetainedMessage, StoredMessage, StoredSession
from ._store_rows import (
    NewRow,
    Row,
    _coalesce,
    _cut_rows,
    _encode_message,
    _insert_blocks,
    _runs,
    _session_row,
    _shift_runs,
)

__all__ = ["SESSION_COLUMNS", "Batch", "Held", "Stored"]

#: The columns of a ``sessions`` row (as ``_store_rows._session_row`` makes it).
SESSION_COLUMNS = (
    "number, client_id, expiry_interval, expires_at, username, subscriptions,"
    " awaiting_release, will, will_delay, will_due"
)


class Stored:
    """One message row: the record it was made from, and how many deliveries hold it.

    Whether the file has the row follows from its id, as a delivery's from
    its key: ids grow, and a commit writes every row made before it that a
    delivery still holds (a row no delivery holds is dropped unwritten and
    never held again), so the file has the row of every held message whose
    id is at most ``Batch.flushed_message``.
    """

    __slots__ = ("id", "record", "refs")

    def __init__(self, row_id: int, record: StoredMessage | None) -> None:
        self.id = row_id
        #: What to write (None: read from the file, which has it already).
        self.record = record
        self.refs = 0


#: A queued delivery: (its key, its message row).
Queued = tuple[int, Stored]
#: A delivery in flight: (its key, its message row, its state: the packet
#: id, negative past PUBREC).
Flying = tuple[int, Stored, int]


class Held:
    """What the file (with the batch) holds for one session.

    A delivery is a plain tuple (``Queued``, ``Flying``), not an object: the
    broker makes one per message and session. Its key (``seq``) tells
    whether the file has its row: keys grow, and a commit writes every
    delivery made before it, so the file has exactly the rows still held
    whose key is at most ``flushed``. What changed since says the rest.
    """

    __slots__ = (
        "changed",
        "dirty",
        "firsts",
        "flushed",
        "fresh",
        "gone",
        "inflight",
        "number",
        "queue",
        "row",
        "rows",
        "seq",
        "wiped",
    )

    def __init__(self, number: int, row: tuple[Any, ...]) -> None:
        #: The key of its row, which its deliveries name.
        self.number = number
        #: The last delivery key used, and the last one the file has.
        self.seq = self.flushed = 0
        #: The ``sessions`` row as last recorded.
        self.row = row
        self.queue: deque[Queued] = deque()
        #: packet id -> delivery in flight, in the order they were recorded.
        self.inflight: dict[int, Flying] = {}
        #: The ``deliveries`` rows the file has (as of the last commit), by
        #: first key, and those keys in order.
        self.rows: dict[int, Row] = {}
        self.firsts: list[int] = []
        #: Whether it is in the batch's ``dirty`` (its deliveries changed;
        #: always, while it holds any the file has not).
        self.dirty = False
        # -- pending, for the rows the file has (key <= flushed) --
        #: Keys of rows ended.
        self.gone: list[int] = []
        #: key -> new state of a row that went in flight or past PUBREC.
        self.changed: dict[int, int] = {}
        #: Whether all of them go (the session was saved whole).
        self.wiped = False
        # -- pending, for the rows it has not: packet ids in flight whose
        # delivery may be new (the new queued ones are the queue's tail) --
        self.fresh: dict[int, None] = {}


class Batch:
    """The store's picture of its file, and the rows changed since the last commit."""

    def __init__(self, offset: float) -> None:
        #: Added to a broker-clock time to make it a wall-clock one.
        self.offset = offset
        self.sessions: dict[str, Held] = {}
        #: id() of a record -> its message row, while any delivery holds it
        #: (the row holds the record, so the id is not reused meanwhile).
        self.by_record: dict[int, Stored] = {}
        #: The last message row id and session number used.
        self.message_id = 0
        #: The last message row id the file has (see Stored).
        self.flushed_message = 0
        self.session_number = 0
        # -- pending: client id -> session row (None: delete), key -> row changed
        self.rows: dict[str, tuple[Any, ...] | None] = {}
        #: Sessions whose deliveries changed (each once: ``Held.dirty``).
        self.dirty: list[Held] = []
        #: Numbers of sessions whose delivery rows all go.
        self.dropped: dict[int, None] = {}
        self.messages: dict[int, Stored] = {}
        self.retained: dict[str, RetainedMessage | None] = {}
        #: The delivery rows the commit under way writes: (session, first
        #: keys of the rows it deletes, the rows it inserts).
        self.written: list[tuple[Held, list[int], list[NewRow]]] = []

    def reset(self) -> None:
        """Forget everything (the file is read again)."""
        self.sessions.clear()
        self.by_record.clear()
        self.message_id = self.session_number = self.flushed_message = 0
        self.rows.clear()
        self.dirty.clear()
        self.dropped.clear()
        self.messages.clear()
        self.retained.clear()
        self.written = []

    @property
    def pending(self) -> bool:
        return bool(self.rows or self.dirty or self.dropped or self.messages or self.retained)

    # -- rows ------------------------------------------------------------------------

    def _message(self, record: StoredMessage) -> Stored:
        """The message row of ``record``, one more delivery holding it."""
        stored = self._row(record)
        stored.refs += 1
        return stored

    def _row(self, record: StoredMessage) -> Stored:
        """The message row of ``record`` (a new one, to write, if it has none)."""
        stored = self.by_record.get(id(record))
        if stored is None:
            self.message_id += 1
            stored = Stored(self.message_id, record)
            self.by_record[id(record)] = stored
            self.messages[stored.id] = stored
        return stored

    def _release(self, stored: Stored) -> None:
        """One delivery fewer holds the message row."""
        stored.refs -= 1
        if not stored.refs:
            self._unheld(stored)

    def _unheld(self, stored: Stored) -> None:
        """No delivery holds the message row any more: the commit deletes it."""
        record = stored.record
        if record is not None and self.by_record.get(id(record)) is stored:
            del self.by_record[id(record)]
        self.messages[stored.id] = stored

    def _end(self, held: Held, seq: int, stored: Stored) -> None:
        """The delivery ``seq`` of ``held`` is gone."""
        if seq <= held.flushed:
            held.gone.append(seq)
            if held.changed:
                held.changed.pop(seq, None)
            if not held.dirty:
                held.dirty = True
                self.dirty.append(held)
        self._release(stored)

    def _drop_all(self, held: Held) -> None:
        """Every delivery of ``held`` is gone (the caller deletes its rows)."""
        for _, stored in held.queue:
            self._release(stored)
        for _, stored, _ in held.inflight.values():
            self._release(stored)
        held.queue.clear()
        held.inflight.clear()
        held.gone.clear()
        held.changed.clear()
        held.fresh.clear()

    # -- the recording calls -------------------------------------------------------

    def save_session(self, session: StoredSession, *, messages: bool = True) -> None:
        client_id = session.client_id
        held = self.sessions.get(client_id)
        if not messages:
            if held is not None:
                row = _session_row(held.number, session, self.offset)
                if held.row != row:
                    held.row = self.rows[client_id] = row
            return
        if held is None:
            self.session_number += 1
            row = _session_row(self.session_number, session, self.offset)
            held = self.sessions[client_id] = Held(self.session_number, row)
        else:
            self._drop_all(held)
            held.wiped = held.flushed > 0
            row = held.row = _session_row(held.number, session, self.offset)
        self.rows[client_id] = row
        if not held.dirty:
            held.dirty = True
            self.dirty.append(held)
        inflight = held.inflight
        for record in session.inflight:
            packet_id = record.packet_id
            if packet_id is not None:
                old = inflight.pop(packet_id, None)
                if old is not None:
                    self._release(old[1])
                held.seq += 1
                state = -packet_id if record.released else packet_id
                inflight[packet_id] = (held.seq, self._message(record), state)
                held.fresh[packet_id] = None
        for record in session.queued:
            held.seq += 1
            held.queue.append((held.seq, self._message(record)))

    def delete_session(self, client_id: str) -> None:
        held = self.sessions.pop(client_id, None)
        if held is not None:
            self._drop_all(held)
            # (Left in ``dirty`` if it is: it holds nothing to write now.)
            self.dropped[held.number] = None
            self.rows[client_id] = None

    def append_queued(self, client_id: str, record: StoredMessage) -> None:
        self.append_queued_many((client_id,), record)

    def append_queued_many(self, client_ids: Iterable[str], record: StoredMessage) -> None:
        """``record`` joins the queue of each of ``client_ids`` (a message
        routed to many sessions: every message queued comes here)."""
        sessions = self.sessions
        stored: Stored | None = None
        holders = 0
        for client_id in client_ids:
            held = sessions.get(client_id)
            if held is None:
                continue
            if stored is None:
                stored = self._row(record)
            holders += 1
            seq = held.seq = held.seq + 1
            held.queue.append((seq, stored))
            if not held.dirty:
                held.dirty = True
                self.dirty.append(held)
        if stored is not None:
            stored.refs += holders

    def remove_queued(self, client_id: str, index: int) -> None:
        held = self.sessions.get(client_id)
        if held is not None and 0 <= index < len(held.queue):
            queue = held.queue
            if index:
                seq, stored = queue[index]
                del queue[index]
            else:
                seq, stored = queue.popleft()
            self._end(held, seq, stored)

    def send_queued(self, client_id: str, packet_id: int) -> None:
        self.send_queued_many(client_id, (packet_id,))

    def send_queued_many(self, client_id: str, packet_ids: Iterable[int]) -> None:
        """The head of the queue went in flight with each of ``packet_ids`` in turn."""
        held = self.sessions.get(client_id)
        if held is None:
            return
        queue = held.queue
        inflight = held.inflight
        flushed = held.flushed
        for packet_id in packet_ids:
            if not queue:
                return
            seq, stored = queue.popleft()
            if packet_id in inflight:
                old = inflight.pop(packet_id)
                self._end(held, old[0], old[1])
            # The row keeps its key, now with its packet id.
            inflight[packet_id] = (seq, stored, packet_id)
            if seq <= flushed:
                held.changed[seq] = packet_id
                if not held.dirty:
                    held.dirty = True
                    self.dirty.append(held)
            else:
                held.fresh[packet_id] = None  # (the session is in dirty already)

    def add_inflight(self, client_id: str, packet_id: int, record: StoredMessage) -> None:
        held = self.sessions.get(client_id)
        if held is not None:
            inflight = held.inflight
            if packet_id in inflight:
                old = inflight.pop(packet_id)
                self._end(held, old[0], old[1])
            seq = held.seq = held.seq + 1
            inflight[packet_id] = (seq, self._message(record), packet_id)
            held.fresh[packet_id] = None
            if not held.dirty:
                held.dirty = True
                self.dirty.append(held)

    def release_inflight(self, client_id: str, packet_id: int) -> None:
        held = self.sessions.get(client_id)
        if held is not None:
            delivery = held.inflight.get(packet_id)
            if delivery is not None and delivery[2] > 0:
                seq = delivery[0]
                held.inflight[packet_id] = (seq, delivery[1], -packet_id)
                if seq <= held.flushed:
                    held.changed[seq] = -packet_id
                    if not held.dirty:
                        held.dirty = True
                        self.dirty.append(held)

    def end_inflight(self, client_id: str, packet_id: int) -> None:
        self.end_inflight_many(client_id, (packet_id,))

    def end_inflight_many(self, client_id: str, packet_ids: Iterable[int]) -> None:
        """The flows ``packet_ids`` of a session ended (a run of PUBACKs)."""
        held = self.sessions.get(client_id)
        if held is None:
            return
        inflight = held.inflight
        flushed = held.flushed
        gone = held.gone
        changed = held.changed
        ended = False
        for packet_id in packet_ids:
            delivery = inflight.pop(packet_id, None)
            if delivery is None:
                continue
            # _end and _release inlined: every flow ends here.
            seq = delivery[0]
            if seq <= flushed:
                gone.append(seq)
                ended = True
                if changed:
                    changed.pop(seq, None)
            stored = delivery[1]
            stored.refs -= 1
            if not stored.refs:
                self._unheld(stored)
        if ended and not held.dirty:
            held.dirty = True
            self.dirty.append(held)

    # -- the commit ------------------------------------------------------------------

    def statements(self) -> list[tuple[str, list[Any]]]:
        """The writes of the batch: (SQL, parameter rows) for ``executemany``.

        The rows of deliveries it writes are noted (``self.written``), for
        :meth:`committed` to make them the picture's once they are in."""
        gone_sessions = []
        sessions = []
        for client_id, row in self.rows.items():
            if row is None:
                gone_sessions.append((client_id,))
            else:
                sessions.append(row)
        # Parameters are ints, floats and bytearrays only: the sqlite3 module
        # binds those as they are, and looks anything else (None, bytes) up
        # in its adapters first, which costs more than the row.
        wiped: list[tuple[int, int]] = []
        cut: list[tuple[int, int]] = []
        # The rows written, flat: 5 parameters each.
        new: list[int] = []
        written = self.written = []
        for held in self.dirty:
            number = held.number
            flushed = held.flushed
            if held.wiped:
                wiped.append((number, flushed))
            rows: list[NewRow] = []
            removed: list[int] = []
            if held.gone or held.changed:
                touched: list[tuple[int, int, int | None]] = [
                    (first, last, None) for first, last in _runs(held.gone)
                ]
                if held.changed:
                    touched += _shift_runs(held.changed)
                    touched.sort()
                removed, rows = _cut_rows(held.rows, held.firsts, touched)
                for first in removed:
                    cut.append((number, first))
            if held.fresh:
                # Delivered at once since the last commit, in key order.
                made = []
                inflight = held.inflight
                for packet_id in held.fresh:
                    delivery = inflight.get(packet_id)
                    if delivery is not None and delivery[0] > flushed:
                        made.append((delivery[0], delivery[1].id, delivery[2]))
                made.sort()
                rows += _coalesce(made)
            queue = held.queue
            if queue and queue[-1][0] > flushed:
                rows += _queue_runs(queue, flushed)
            for first, last, message_id, state in rows:
                new += (number, first, last, message_id, state)
            if removed or rows:
                written.append((held, removed, rows))
        offset = self.offset
        # Flat, as the new delivery rows: 3 and 2 parameters each.
        new_messages: list[Any] = []
        lasting: list[Any] = []
        gone_messages = []
        flushed_message = self.flushed_message
        for stored in self.messages.values():
            if not stored.refs:
                if stored.id <= flushed_message:
                    gone_messages.append(stored.id)
            elif stored.id > flushed_message:
                record = stored.record
                assert record is not None
                expires_at = record.expires_at
                if expires_at is None:
                    lasting += (stored.id, _encode_message(record.packet))
                else:
                    new_messages += (stored.id, expires_at + offset, _encode_message(record.packet))
        retained = []
        gone_retained = []
        for topic, message in self.retained.items():
            if message is None:
                gone_retained.append((topic,))
            else:
                expires_at = message.expires_at
                retained.append(
                    (
                        topic,
                        None if expires_at is None else expires_at + offset,
                        _encode_message(message.packet),
                    )
                )
        return [
            ("DELETE FROM sessions WHERE client_id = ?", gone_sessions),
            (
                f"INSERT OR REPLACE INTO sessions ({SESSION_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                sessions,
            ),
            ("DELETE FROM deliveries WHERE session = ?", [(n,) for n in self.dropped]),
            ("DELETE FROM deliveries WHERE session = ? AND seq <= ?", wiped),
            ("DELETE FROM deliveries WHERE session = ? AND seq = ?", cut),
            *_insert_blocks("INSERT INTO deliveries VALUES ", "(?, ?, ?, ?, ?)", new, 5),
            ("DELETE FROM messages WHERE id BETWEEN ? AND ?", _runs(gone_messages)),
            *_insert_blocks("INSERT INTO messages VALUES ", "(?, ?, ?)", new_messages, 3),
            *_insert_blocks("INSERT INTO messages (id, packet) VALUES ", "(?, ?)", lasting, 2),
            ("DELETE FROM retained WHERE topic = ?", gone_retained),
            ("INSERT OR REPLACE INTO retained VALUES (?, ?, ?)", retained),
        ]

    def committed(self) -> None:
        """The batch is in the file: the picture says so, the batch is empty."""
        for held in self.dirty:
            held.flushed = held.seq
            held.dirty = False
            if held.gone:
                held.gone = []
            if held.changed:
                held.changed.clear()
            if held.fresh:
                held.fresh.clear()
            if held.wiped:
                held.rows.clear()
                held.firsts.clear()
                held.wiped = False
        for held, removed, rows in self.written:
            _replace_rows(held, removed, rows)
        self.written = []
        self.flushed_message = self.message_id
        self.rows.clear()
        self.dirty.clear()
        self.dropped.clear()
        self.messages.clear()
        self.retained.clear()


def _queue_runs(queue: deque[Queued], flushed: int) -> list[NewRow]:
    """The rows of the queued deliveries made since the last commit (keys
    above ``flushed``: the queue's tail), one per run (``_coalesce``, in one
    pass from the end: every message a session queued comes here)."""
    rows: list[NewRow] = []
    first = last = message = -2
    for seq, stored in reversed(queue):
        if seq <= flushed:
            break
        if seq == first - 1 and stored.id == message - 1:
            first = seq
            message -= 1
            continue
        if first >= 0:
            rows.append((first, last, message, 0))
        first = last = seq
        message = stored.id
    if first >= 0:
        rows.append((first, last, message, 0))
    return rows


def _replace_rows(held: Held, removed: list[int], rows: list[NewRow]) -> None:
    """The rows ``removed`` of ``held`` (first keys) are gone from the file
    and ``rows`` are in it: the picture follows."""
    pictured = held.rows
    firsts = held.firsts
    if removed:
        for first in removed:
            del pictured[first]
        if len(removed) == len(firsts):
            firsts.clear()
        elif firsts[: len(removed)] == removed:
            del firsts[: len(removed)]  # the oldest rows: acknowledged in order
        else:
            gone = set(removed)
            firsts[:] = [first for first in firsts if first not in gone]
    for first, last, message, state in rows:
        pictured[first] = (last, message, state)
        if not firsts or first > firsts[-1]:
            firsts.append(first)
        else:
            insort(firsts, first)
