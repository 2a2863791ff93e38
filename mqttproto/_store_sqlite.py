"""The durable :class:`SQLiteStore`: one SQLite file in WAL mode.

Recording (``save_session``, the message calls, ``delete_session``,
``set_retained``) only changes the picture of the file kept in memory and
notes the rows changed in a pending batch (``_store_batch.Batch``);
:meth:`SQLiteStore.commit` writes those rows as one transaction. The broker
holds its acknowledgements until that commit returned, so an acknowledged
message is in the file.

A message is one row (``messages``) however many sessions hold it; a
session's deliveries of them are ``deliveries`` rows, one per run of
deliveries (``_store_rows``): what a commit adds to a session is mostly one
row, replaced by its parts when some of it is sent or acknowledged, deleted
when all of it is. A commit writes only the rows that changed since the
previous one, each once: a delivery that came and went between two commits
is never written.

Times: records carry deadlines on the broker's monotonic clock; the file
keeps wall-clock deadlines (``clock() + offset``), so that a deadline that
passed while the broker was stopped has passed when it is loaded again.

The file is versioned: ``PRAGMA application_id`` marks it as ours and the
``schema_version`` table says which schema it has. An older file is migrated
(``_MIGRATIONS``, one step per version) in one transaction; a newer one, a
foreign one or one that is not SQLite is refused with :class:`StoreError`
before anything is written to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable

import attrs

from ._store_batch import SESSION_COLUMNS, Batch, Held, Stored
from ._store_records import (
    RetainedMessage,
    StoredMessage,
    StoredSession,
    StoreError,
)
from ._store_rows import _decode_publish, _decode_subscriptions, _decode_will

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "backup"]

#: The schema this version writes (and the newest it can read).
SCHEMA_VERSION = 3
#: ``PRAGMA application_id`` of a mqttproto store: "MQTP".
APPLICATION_ID = 0x4D515450

_SYNC_MODES = {"off": "OFF", "normal": "NORMAL", "full": "FULL"}

_SESSIONS = (
    " (number INTEGER PRIMARY KEY, client_id TEXT NOT NULL UNIQUE,"
    " expiry_interval INTEGER NOT NULL, expires_at REAL,"
    " username TEXT, subscriptions TEXT NOT NULL, awaiting_release TEXT NOT NULL,"
    " will BLOB, will_delay INTEGER, will_due REAL)"
)
_MESSAGES = "CREATE TABLE messages (id INTEGER PRIMARY KEY, expires_at REAL, packet BLOB NOT NULL)"
# A run of deliveries of a session (``sessions.number``): the keys ``seq`` to
# ``last``, key k holding message ``message + (k - seq)`` (``messages.id``),
# queued (packet_id 0) or in flight with packet id ``packet_id + (k - seq)``
# (negative: past PUBREC). A session's rows load in ``seq`` order, the order
# of queueing, and are next to each other in the file.
_DELIVERIES = (
    "CREATE TABLE deliveries ("
    " session INTEGER NOT NULL, seq INTEGER NOT NULL, last INTEGER NOT NULL,"
    " message INTEGER NOT NULL, packet_id INTEGER NOT NULL,"
    " PRIMARY KEY (session, seq)) WITHOUT ROWID"
)
# Version 2: one row per delivery.
_DELIVERIES_2 = (
    "CREATE TABLE deliveries ("
    " session INTEGER NOT NULL, seq INTEGER NOT NULL, message INTEGER NOT NULL,"
    " packet_id INTEGER NOT NULL, PRIMARY KEY (session, seq)) WITHOUT ROWID"
)

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE sessions" + _SESSIONS,
    _MESSAGES,
    _DELIVERIES,
    "CREATE TABLE retained (topic TEXT PRIMARY KEY, expires_at REAL, packet BLOB NOT NULL)",
)

#: version -> the statements that take a file of that version to the next.
#: A change of schema adds its step here and raises SCHEMA_VERSION, and
#: every earlier file is migrated step by step on open, in one transaction.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 -> 2: sessions get a number; a row per queued or in-flight copy
    # becomes a message row and a delivery row (the keys of version 1 were
    # one sequence for both tables, so they serve as both ids). Copies of
    # sessions that do not exist are left out.
    1: (
        "CREATE TABLE sessions_2" + _SESSIONS,
        "INSERT INTO sessions_2 SELECT rowid, * FROM sessions",
        _MESSAGES,
        _DELIVERIES_2,
        "INSERT INTO messages SELECT seq, expires_at, packet FROM queued",
        "INSERT INTO deliveries SELECT s.number, q.seq, q.seq, 0"
        " FROM queued q JOIN sessions_2 s USING (client_id)",
        "INSERT INTO messages SELECT seq, expires_at, packet FROM inflight",
        "INSERT INTO deliveries SELECT s.number, i.seq, i.seq,"
        " CASE WHEN i.released THEN -i.packet_id ELSE i.packet_id END"
        " FROM inflight i JOIN sessions_2 s USING (client_id)",
        "DROP TABLE queued",
        "DROP TABLE inflight",
        "DROP TABLE sessions",
        "ALTER TABLE sessions_2 RENAME TO sessions",
    ),
    # 2 -> 3: a delivery row becomes a run of one.
    2: (
        "ALTER TABLE deliveries RENAME TO deliveries_2",
        _DELIVERIES,
        "INSERT INTO deliveries SELECT session, seq, seq, message, packet_id FROM deliveries_2",
        "DROP TABLE deliveries_2",
    ),
}


class SQLiteStore:
    """A durable :class:`~mqttproto.store.SessionStore` in one SQLite file.

    :param path: the file; created (with its schema) when missing.
    :param sync: what a commit waits for (``PRAGMA synchronous``; the file
        is in WAL mode). ``"normal"`` (the default): a commit survives a
        crash of the process (SIGKILL) at once and a power loss from the
        next checkpoint on; ``"full"``: a commit survives a power loss too
        (one fsync per commit); ``"off"``: survives a crash of the process,
        not of the machine.
    :param clock: the broker's clock (the ``now`` it is driven with), to
        turn its deadlines into wall-clock ones.
    :param wall_clock: the wall clock (seconds since the epoch).
    :raises StoreError: the file cannot be opened as a store: not SQLite,
        another application's database, a newer schema, a missing or
        read-only directory. Nothing is written to such a file.
    """

    durable = True

    # The message calls of the SessionStore protocol (bound in __init__).
    append_queued: Callable[[str, StoredMessage], None]
    remove_queued: Callable[[str, int], None]
    send_queued: Callable[[str, int], None]
    add_inflight: Callable[[str, int, StoredMessage], None]
    release_inflight: Callable[[str, int], None]
    end_inflight: Callable[[str, int], None]
    append_queued_many: Callable[[Iterable[str], StoredMessage], None]
    send_queued_many: Callable[[str, Iterable[int]], None]
    end_inflight_many: Callable[[str, Iterable[int]], None]

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        sync: str = "normal",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        if sync not in _SYNC_MODES:
            raise ValueError(f"sync must be one of {', '.join(_SYNC_MODES)}, not {sync!r}")
        self.path = os.fspath(path)
        self.sync = sync
        #: Added to a broker-clock time to make it a wall-clock one.
        self._offset = wall_clock() - clock()
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise StoreError(f"{self.path}: the directory {directory} does not exist")
        if not os.access(directory, os.W_OK):
            raise StoreError(f"{self.path}: the directory {directory} is not writable")
        if os.path.exists(self.path) and not os.access(self.path, os.W_OK):
            raise StoreError(f"{self.path}: the file is not writable")
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open: {exc}") from None
        try:
            self._open()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StoreError(f"{self.path}: not a mqttproto store ({exc})") from None
        except StoreError:
            self._db.close()
            raise
        #: What the file holds, and the changes pending.
        batch = self._batch = Batch(self._offset)
        # The message calls are the batch's own, bound once: they are on the
        # broker's hot path (a few per message and session).
        self.append_queued = batch.append_queued
        self.remove_queued = batch.remove_queued
        self.send_queued = batch.send_queued
        self.add_inflight = batch.add_inflight
        self.release_inflight = batch.release_inflight
        self.end_inflight = batch.end_inflight
        self.append_queued_many = batch.append_queued_many
        self.send_queued_many = batch.send_queued_many
        self.end_inflight_many = batch.end_inflight_many
        try:
            # The file's sessions are read at once: the changes recorded
            # later are made to them (and the broker loads them anyway).
            self._loaded: list[StoredSession] | None = self._read_sessions()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"{self.path}: cannot read: {exc}") from None
        except StoreError:
            self._db.close()
            raise

    # -- opening ------------------------------------------------------------------------

    def _open(self) -> None:
        db = self._db
        # Read before anything is written: a file that is not ours stays as it was.
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        if app_id != APPLICATION_ID:
            if tables:
                raise StoreError(f"{self.path}: not a mqttproto store (another database)")
            self._create()
        else:
            row = db.execute("SELECT version FROM schema_version").fetchone()
            version = row[0] if row is not None else 0
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"{self.path}: schema version {version} is newer than this mqttproto "
                    f"knows ({SCHEMA_VERSION}); use a newer mqttproto"
                )
            if version < SCHEMA_VERSION:
                self._migrate(version)
        mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal":
            raise StoreError(f"{self.path}: cannot use WAL mode (journal mode {mode})")
        db.execute(f"PRAGMA synchronous={_SYNC_MODES[self.sync]}")

    def _create(self) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                db.execute(statement)
            db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _migrate(self, version: int) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            while version < SCHEMA_VERSION:
                steps = _MIGRATIONS.get(version)
                if steps is None:
                    raise StoreError(f"{self.path}: no migration from schema version {version}")
                for statement in steps:
                    db.execute(statement)
                version += 1
            db.execute("UPDATE schema_version SET version = ?", (version,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- clocks --------------------------------------------------------------------------

    def _from_wall(self, when: float | None) -> float | None:
        return None if when is None else when - self._offset

    # -- loading -------------------------------------------------------------------------

    def load_sessions(self) -> list[StoredSession]:
        """Every session the file holds, deadlines on the broker's clock."""
        loaded, self._loaded = self._loaded, None
        if loaded is None:
            self.commit()
            loaded = self._read_sessions()
        return loaded

    def _read_sessions(self) -> list[StoredSession]:
        db = self._db
        batch = self._batch
        batch.reset()
        from_wall = self._from_wall
        # message id -> (its row in the picture, the record decoded once).
        messages: dict[int, tuple[Stored, StoredMessage]] = {}
        for row_id, expires, data in db.execute("SELECT id, expires_at, packet FROM messages"):
            record = StoredMessage(_decode_publish(data, keep_id=False), from_wall(expires))
            messages[row_id] = (Stored(row_id, None), record)
            batch.message_id = max(batch.message_id, row_id)
        batch.flushed_message = batch.message_id
        rows = {row[1]: row for row in db.execute(f"SELECT {SESSION_COLUMNS} FROM sessions")}
        held: dict[int, Held] = {}
        contents: dict[int, tuple[list[StoredMessage], list[StoredMessage]]] = {}
        for row in rows.values():
            number = row[0]
            held[number] = batch.sessions[row[1]] = Held(number, row)
            contents[number] = ([], [])
            batch.session_number = max(batch.session_number, number)
        for number, first, last, first_message, first_state in db.execute(
            "SELECT session, seq, last, message, packet_id FROM deliveries ORDER BY session, seq"
        ):
            session = held.get(number)
            if session is None:
                # Held by no session the file knows: the next commit deletes it.
                batch.dropped[number] = None
                continue
            if last < first or first <= session.seq or not _states_valid(first_state, last - first):
                raise StoreError(f"{self.path}: a row of deliveries is corrupt")
            session.rows[first] = (last, first_message, first_state)
            session.firsts.append(first)
            session.seq = session.flushed = last
            inflight, queued = contents[number]
            for seq in range(first, last + 1):
                found = messages.get(first_message + seq - first)
                if found is None:
                    session.gone.append(seq)  # a message the file lacks: cut off too
                    if not session.dirty:
                        session.dirty = True
                        batch.dirty.append(session)
                    continue
                stored, record = found
                stored.refs += 1
                if not first_state:
                    session.queue.append((seq, stored))
                    queued.append(record)
                    continue
                state = first_state + seq - first
                packet_id = abs(state)
                session.inflight[packet_id] = (seq, stored, state)
                inflight.append(
                    StoredMessage(
                        attrs.evolve(record.packet, packet_id=packet_id),
                        record.expires_at,
                        packet_id,
                        state < 0,
                    )
                )
        for stored, _ in messages.values():
            if not stored.refs:
                batch.messages[stored.id] = stored  # held by nothing: deleted next commit
        sessions = []
        for row in rows.values():
            number, cid, interval, expires, username, subs, awaiting, will, delay, due = row
            inflight, queued = contents[number]
            sessions.append(
                StoredSession(
                    cid,
                    interval,
                    from_wall(expires),
                    _decode_subscriptions(subs),
                    tuple(inflight),
                    tuple(queued),
                    tuple(json.loads(awaiting)),
                    None if will is None else _decode_will(will, delay),
                    from_wall(due),
                    username,
                )
            )
        return sessions

    def load_retained(self) -> list[RetainedMessage]:
        from_wall = self._from_wall
        return [
            RetainedMessage(_decode_publish(data, keep_id=False), from_wall(expires))
            for expires, data in self._db.execute("SELECT expires_at, packet FROM retained")
        ]

    # -- recording (the pending batch) ---------------------------------------------------

    def save_session(self, session: StoredSession, *, messages: bool = True) -> None:
        self._batch.save_session(session, messages=messages)

    def delete_session(self, client_id: str) -> None:
        self._batch.delete_session(client_id)

    def set_retained(self, topic: str, message: RetainedMessage | None) -> None:
        self._batch.retained[topic] = message

    @property
    def pending(self) -> bool:
        """Whether changes wait for :meth:`commit`."""
        return self._batch.pending

    # -- the commit ----------------------------------------------------------------------

    def commit(self) -> None:
        """Write the pending batch as one transaction (see the class docs for
        what ``sync`` makes it survive).

        :raises StoreError: the write failed (a full disk, an I/O error); the
            file is as before the call and the batch stays pending.
        """
        batch = self._batch
        if not batch.pending:
            return
        db = self._db
        try:
            db.execute("BEGIN IMMEDIATE")
            for statement, rows in batch.statements():
                if rows:
                    db.executemany(statement, rows)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: cannot write: {exc}") from None
        batch.committed()

    # -- the rest ------------------------------------------------------------------------

    def backup(self, destination: str | os.PathLike[str]) -> None:
        """Copy the committed state to ``destination`` with SQLite's online
        backup API (consistent while the broker runs)."""
        target = sqlite3.connect(os.fspath(destination))
        try:
            self._db.backup(target)
        finally:
            target.close()

    def close(self) -> None:
        """Close the file; changes not committed are lost."""
        self._db.close()


def _states_valid(first: int, span: int) -> bool:
    """Whether a row's states, ``first`` to ``first + span``, are all queued
    (0) or all packet identifiers of one sign."""
    if not first:
        return True
    last = first + span
    return (first > 0 and last <= 65535) or (first >= -65535 and last < 0)


def backup(source: str | os.PathLike[str], destination: str | os.PathLike[str]) -> None:
    """Copy the store ``source`` to ``destination`` (SQLite's online backup
    API: safe while a broker writes ``source``).

    :raises StoreError: ``source`` is not a mqttproto store, or a file
        cannot be read or written.
    """
    source = os.fspath(source)
    if not os.path.exists(source):
        raise StoreError(f"{source}: no such file")
    try:
        db = sqlite3.connect(f"file:{source}?mode=ro", uri=True)
        try:
            if db.execute("PRAGMA application_id").fetchone()[0] != APPLICATION_ID:
                raise StoreError(f"{source}: not a mqttproto store")
            target = sqlite3.connect(os.fspath(destination))
            try:
                db.backup(target)
            finally:
                target.close()
        finally:
            db.close()
    except sqlite3.OperationalError as exc:
        raise StoreError(f"{source}: cannot back up to {os.fspath(destination)}: {exc}") from None
    except sqlite3.Error as exc:
        raise StoreError(f"{source}: not a mqttproto store ({exc})") from None
