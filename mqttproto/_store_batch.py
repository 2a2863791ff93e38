"""What a :class:`~mqttproto.store.SQLiteStore` file holds, kept in memory,
and the batch of changes waiting for the next commit.

The file stores each message once (``messages``), however many sessions hold
it, and one small row per session that holds it (``deliveries``: the
session, the message, its packet identifier once it is in flight, whether
it is past PUBREC). Each recording call changes this picture at once and
notes the rows it changed in the pending batch (:class:`Batch`); the commit
writes only those rows, each once, in its final state:

- a delivery queued and later sent is one row, updated in place;
- a delivery (or message) made and gone again within one batch is never
  written at all;
- a message row goes when the last delivery holding it does.

A failed commit leaves the batch as it is: the rows it names are written by
the next commit, in the state they have then.
"""

from __future__ import annotations

from collections import deque
from itertools import chain
from typing import Any

from ._store_records import RetainedMessage, StoredMessage, StoredSession
from ._store_rows import _encode_message, _session_row

__all__ = ["SESSION_COLUMNS", "Batch", "Delivery", "Held", "Stored"]

#: Delivery rows inserted by one statement (4 parameters each: far below
#: the 999 parameters of the oldest SQLite).
_BLOCK = 32
_INSERT_BLOCK = "INSERT INTO deliveries VALUES " + ", ".join(["(?, ?, ?, ?)"] * _BLOCK)

#: The columns of a ``sessions`` row (as ``_store_rows._session_row`` makes it).
SESSION_COLUMNS = (
    "number, client_id, expiry_interval, expires_at, username, subscriptions,"
    " awaiting_release, will, will_delay, will_due"
)


class Stored:
    """One message row: the record it was made from, and how many deliveries hold it."""

    __slots__ = ("id", "on_disk", "record", "refs")

    def __init__(self, row_id: int, record: StoredMessage | None, *, on_disk: bool) -> None:
        self.id = row_id
        #: What to write (None: read from the file, which has it already).
        self.record = record
        self.refs = 0
        #: Whether the file has the row (as of the last commit).
        self.on_disk = on_disk


class Delivery:
    """One delivery row: a message queued for a session, or in flight to it."""

    __slots__ = ("gone", "message", "on_disk", "packet_id", "released", "seq", "session")

    def __init__(
        self,
        seq: int,
        session: int,
        message: Stored,
        packet_id: int,
        released: bool,
        on_disk: bool,
    ) -> None:
        #: The row's key within its session's; rows load in this order (the
        #: order of queueing).
        self.seq = seq
        #: The number of the session's row.
        self.session = session
        self.message = message
        self.packet_id = packet_id
        self.released = released
        self.on_disk = on_disk
        #: No longer held (to be deleted from the file if it is there).
        self.gone = False


class Held:
    """What the file (with the batch) holds for one session."""

    __slots__ = ("inflight", "number", "queue", "row", "seq")

    def __init__(self, number: int, row: tuple[Any, ...]) -> None:
        #: The key of its row, which its deliveries name.
        self.number = number
        #: The last delivery key used.
        self.seq = 0
        #: The ``sessions`` row as last recorded.
        self.row = row
        self.queue: deque[Delivery] = deque()
        #: packet id -> delivery in flight, in the order they were recorded.
        self.inflight: dict[int, Delivery] = {}


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
        self.session_number = 0
        # -- pending: client id -> session row (None: delete), key -> row changed
        self.rows: dict[str, tuple[Any, ...] | None] = {}
        #: (A dict for its order: the deliveries changed, each once.)
        self.deliveries: dict[Delivery, None] = {}
        self.messages: dict[int, Stored] = {}
        self.retained: dict[str, RetainedMessage | None] = {}

    def reset(self) -> None:
        """Forget everything (the file is read again)."""
        self.sessions.clear()
        self.by_record.clear()
        self.message_id = self.session_number = 0
        self.rows.clear()
        self.deliveries.clear()
        self.messages.clear()
        self.retained.clear()

    @property
    def pending(self) -> bool:
        return bool(self.rows or self.deliveries or self.messages or self.retained)

    # -- rows ------------------------------------------------------------------------

    def _message(self, record: StoredMessage) -> Stored:
        """The message row of ``record``, one more delivery holding it."""
        stored = self.by_record.get(id(record))
        if stored is None:
            self.message_id += 1
            stored = Stored(self.message_id, record, on_disk=False)
            self.by_record[id(record)] = stored
            self.messages[stored.id] = stored
        stored.refs += 1
        return stored

    def _deliver(
        self, held: Held, record: StoredMessage, packet_id: int, released: bool
    ) -> Delivery:
        held.seq += 1
        delivery = Delivery(
            held.seq, held.number, self._message(record), packet_id, released, False
        )
        self.deliveries[delivery] = None
        return delivery

    def _drop(self, delivery: Delivery) -> None:
        delivery.gone = True
        self.deliveries[delivery] = None
        stored = delivery.message
        stored.refs -= 1
        if not stored.refs:
            record = stored.record
            if record is not None and self.by_record.get(id(record)) is stored:
                del self.by_record[id(record)]
            self.messages[stored.id] = stored

    def _drop_all(self, held: Held) -> None:
        for delivery in held.queue:
            self._drop(delivery)
        for delivery in held.inflight.values():
            self._drop(delivery)
        held.queue.clear()
        held.inflight.clear()

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
            row = held.row = _session_row(held.number, session, self.offset)
        self.rows[client_id] = row
        for record in session.inflight:
            packet_id = record.packet_id
            if packet_id is not None:
                old = held.inflight.pop(packet_id, None)
                if old is not None:
                    self._drop(old)
                held.inflight[packet_id] = self._deliver(held, record, packet_id, record.released)
        for record in session.queued:
            held.queue.append(self._deliver(held, record, 0, False))

    def delete_session(self, client_id: str) -> None:
        held = self.sessions.pop(client_id, None)
        if held is not None:
            self._drop_all(held)
            self.rows[client_id] = None

    def append_queued(self, client_id: str, record: StoredMessage) -> None:
        held = self.sessions.get(client_id)
        if held is not None:
            # _deliver and _message inlined: every message queued comes here.
            stored = self.by_record.get(id(record))
            if stored is None:
                self.message_id += 1
                stored = Stored(self.message_id, record, on_disk=False)
                self.by_record[id(record)] = stored
                self.messages[stored.id] = stored
            stored.refs += 1
            held.seq += 1
            delivery = Delivery(held.seq, held.number, stored, 0, False, False)
            self.deliveries[delivery] = None
            held.queue.append(delivery)

    def remove_queued(self, client_id: str, index: int) -> None:
        held = self.sessions.get(client_id)
        if held is not None and 0 <= index < len(held.queue):
            queue = held.queue
            if index:
                delivery = queue[index]
                del queue[index]
            else:
                delivery = queue.popleft()
            self._drop(delivery)

    def send_queued(self, client_id: str, packet_id: int) -> None:
        held = self.sessions.get(client_id)
        if held is not None and held.queue:
            delivery = held.queue.popleft()
            old = held.inflight.pop(packet_id, None)
            if old is not None:
                self._drop(old)
            # In place: the row keeps its key, now with its packet id.
            delivery.packet_id = packet_id
            held.inflight[packet_id] = delivery
            self.deliveries[delivery] = None

    def add_inflight(self, client_id: str, packet_id: int, record: StoredMessage) -> None:
        held = self.sessions.get(client_id)
        if held is not None:
            old = held.inflight.pop(packet_id, None)
            if old is not None:
                self._drop(old)
            held.inflight[packet_id] = self._deliver(held, record, packet_id, False)

    def release_inflight(self, client_id: str, packet_id: int) -> None:
        held = self.sessions.get(client_id)
        if held is not None:
            delivery = held.inflight.get(packet_id)
            if delivery is not None and not delivery.released:
                delivery.released = True
                self.deliveries[delivery] = None

    def end_inflight(self, client_id: str, packet_id: int) -> None:
        held = self.sessions.get(client_id)
        if held is not None:
            delivery = held.inflight.pop(packet_id, None)
            if delivery is not None:
                # _drop inlined: every flow ends here.
                delivery.gone = True
                self.deliveries[delivery] = None
                stored = delivery.message
                stored.refs -= 1
                if not stored.refs:
                    record = stored.record
                    if record is not None and self.by_record.get(id(record)) is stored:
                        del self.by_record[id(record)]
                    self.messages[stored.id] = stored

    # -- the commit ------------------------------------------------------------------

    def statements(self) -> list[tuple[str, list[tuple[Any, ...]]]]:
        """The writes of the batch: (SQL, parameter rows) for ``executemany``."""
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
        new = []
        # Rows deleted (and updated) by runs of consecutive keys of a session
        # (and, for updates, one shift from key to packet id): the copies
        # acknowledged together, the messages of a session sent together.
        # Runs are made in the order the changes came, which is nearly the
        # order of the keys; a run only ever holds keys that change.
        gone: list[tuple[int, int, int]] = []
        changed: list[tuple[int, int, int, int]] = []
        g_session = g_first = g_last = c_session = c_first = c_last = c_shift = -1
        for delivery in self.deliveries:
            session = delivery.session
            seq = delivery.seq
            if delivery.gone:
                if delivery.on_disk:
                    if session == g_session and seq == g_last + 1:
                        g_last = seq
                    else:
                        if g_session >= 0:
                            gone.append((g_session, g_first, g_last))
                        g_session, g_first, g_last = session, seq, seq
                continue
            # Its state in one column: 0 queued, the packet id in flight, its
            # negative past PUBREC.
            state = -delivery.packet_id if delivery.released else delivery.packet_id
            if not delivery.on_disk:
                new.append((session, seq, delivery.message.id, state))
            elif session == c_session and seq == c_last + 1 and state - seq == c_shift:
                c_last = seq
            else:
                if c_session >= 0:
                    changed.append((c_shift, c_session, c_first, c_last))
                c_session, c_first, c_last, c_shift = session, seq, seq, state - seq
        if g_session >= 0:
            gone.append((g_session, g_first, g_last))
        if c_session >= 0:
            changed.append((c_shift, c_session, c_first, c_last))
        blocks = range(0, len(new) - _BLOCK + 1, _BLOCK)
        offset = self.offset
        new_messages = []
        lasting = []
        gone_messages = []
        for stored in self.messages.values():
            if not stored.refs:
                if stored.on_disk:
                    gone_messages.append(stored.id)
            elif not stored.on_disk:
                record = stored.record
                assert record is not None
                expires_at = record.expires_at
                if expires_at is None:
                    lasting.append((stored.id, _encode_message(record.packet)))
                else:
                    new_messages.append(
                        (stored.id, expires_at + offset, _encode_message(record.packet))
                    )
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
            ("DELETE FROM deliveries WHERE session = ? AND seq BETWEEN ? AND ?", gone),
            (
                "UPDATE deliveries SET packet_id = seq + ? WHERE session = ? AND seq BETWEEN ? AND ?",
                changed,
            ),
            # Most rows by blocks of _BLOCK in one statement: fewer statement
            # steps (the sqlite3 module runs executemany one row at a time).
            (_INSERT_BLOCK, [tuple(chain.from_iterable(new[i : i + _BLOCK])) for i in blocks]),
            ("INSERT INTO deliveries VALUES (?, ?, ?, ?)", new[len(blocks) * _BLOCK :]),
            ("DELETE FROM messages WHERE id BETWEEN ? AND ?", _runs(gone_messages)),
            ("INSERT INTO messages VALUES (?, ?, ?)", new_messages),
            ("INSERT INTO messages (id, packet) VALUES (?, ?)", lasting),
            ("DELETE FROM retained WHERE topic = ?", gone_retained),
            ("INSERT OR REPLACE INTO retained VALUES (?, ?, ?)", retained),
        ]

    def committed(self) -> None:
        """The batch is in the file: the picture says so, the batch is empty."""
        for delivery in self.deliveries:
            if not delivery.gone:
                delivery.on_disk = True
        for stored in self.messages.values():
            if stored.refs:
                stored.on_disk = True
        self.rows.clear()
        self.deliveries.clear()
        self.messages.clear()
        self.retained.clear()


def _runs(keys: list[int]) -> list[tuple[int, int]]:
    """``keys`` as (first, last) runs of consecutive keys (each key of a run
    is one of ``keys``): the messages of a stream go together."""
    runs = []
    first = last = -2
    for key in keys:
        if key == last + 1:
            last = key
        else:
            if first >= 0:
                runs.append((first, last))
            first = last = key
    if first >= 0:
        runs.append((first, last))
    return runs
