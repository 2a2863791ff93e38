"""The durable :class:`SQLiteStore`: one SQLite file in WAL mode.

Recording (``save_session``, ``append_queued``, ``delete_session``,
``set_retained``) only adds to a pending batch in memory; :meth:`SQLiteStore.commit`
writes the batch as one transaction. The broker holds its acknowledgements
until that commit returned, so an acknowledged message is in the file.

A session snapshot is written as a *difference* against what the file holds
(kept in memory as ``_Disk``): the session row only when its scalars or
subscriptions changed, the in-flight rows that changed, and for the queue the
messages taken from its head and added at its tail. A busy session therefore
costs a few row writes per commit, not a rewrite of its whole queue.

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
from collections.abc import Callable
from typing import Any

from ._store_records import (
    RetainedMessage,
    StoredMessage,
    StoredSession,
    StoreError,
)
from ._store_rows import (
    _decode_publish,
    _decode_subscriptions,
    _decode_will,
    _encode_subscriptions,
    _encode_will,
    _head,
    _Rows,
    _same,
)

__all__ = ["SCHEMA_VERSION", "SQLiteStore", "backup"]

#: The schema this version writes (and the newest it can read).
SCHEMA_VERSION = 1
#: ``PRAGMA application_id`` of a mqttproto store: "MQTP".
APPLICATION_ID = 0x4D515450

_SYNC_MODES = {"off": "OFF", "normal": "NORMAL", "full": "FULL"}

_SCHEMA = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE sessions ("
    " client_id TEXT PRIMARY KEY, expiry_interval INTEGER NOT NULL, expires_at REAL,"
    " username TEXT, subscriptions TEXT NOT NULL, awaiting_release TEXT NOT NULL,"
    " will BLOB, will_delay INTEGER, will_due REAL)",
    "CREATE TABLE inflight ("
    " client_id TEXT NOT NULL, packet_id INTEGER NOT NULL, released INTEGER NOT NULL,"
    " expires_at REAL, packet BLOB NOT NULL, seq INTEGER NOT NULL,"
    " PRIMARY KEY (client_id, packet_id))",
    "CREATE TABLE queued ("
    " seq INTEGER PRIMARY KEY, client_id TEXT NOT NULL, expires_at REAL, packet BLOB NOT NULL)",
    "CREATE INDEX queued_by_client ON queued (client_id, seq)",
    "CREATE TABLE retained (topic TEXT PRIMARY KEY, expires_at REAL, packet BLOB NOT NULL)",
)

#: version -> the statements that take a file of that version to the next.
#: Version 1 is the first; a change of schema adds its step here and raises
#: SCHEMA_VERSION, and every earlier file is migrated step by step on open.
_MIGRATIONS: dict[int, tuple[str, ...]] = {}


class _Disk:
    """What the file holds for one session (to write differences only)."""

    __slots__ = ("head", "inflight", "queued")

    def __init__(
        self,
        head: tuple[Any, ...],
        inflight: dict[int, StoredMessage],
        queued: list[tuple[int, StoredMessage]],
    ) -> None:
        self.head = head
        self.inflight = inflight
        #: (row seq, message), oldest first.
        self.queued = queued


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
        #: client id -> what the file holds for it.
        self._disk: dict[str, _Disk] = {}
        #: The last row number of the queue table.
        self._seq = 0
        # The pending batch: client id -> snapshot (None: delete), messages
        # appended after it, topic -> retained message (None: delete).
        self._sessions: dict[str, StoredSession | None] = {}
        self._appended: dict[str, list[StoredMessage]] = {}
        self._retained: dict[str, RetainedMessage | None] = {}
        try:
            # The file's sessions are read at once: the differences written
            # later are against them (and the broker loads them anyway).
            self._loaded: list[StoredSession] | None = self._read_sessions()
        except sqlite3.Error as exc:
            self._db.close()
            raise StoreError(f"{self.path}: cannot read: {exc}") from None

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
        self._disk.clear()
        from_wall = self._from_wall
        inflight: dict[str, dict[int, StoredMessage]] = {}
        for cid, pid, released, expires, data, seq in db.execute(
            "SELECT client_id, packet_id, released, expires_at, packet, seq FROM inflight"
            " ORDER BY seq"
        ):
            inflight.setdefault(cid, {})[pid] = StoredMessage(
                _decode_publish(data, keep_id=True), from_wall(expires), pid, bool(released)
            )
            self._seq = max(self._seq, seq)
        queued: dict[str, list[tuple[int, StoredMessage]]] = {}
        for seq, cid, expires, data in db.execute(
            "SELECT seq, client_id, expires_at, packet FROM queued ORDER BY seq"
        ):
            queued.setdefault(cid, []).append(
                (seq, StoredMessage(_decode_publish(data, keep_id=False), from_wall(expires)))
            )
            self._seq = max(self._seq, seq)
        sessions = []
        for row in db.execute("SELECT * FROM sessions"):
            cid, interval, expires, username, subs, awaiting, will, delay, due = row
            mine = inflight.get(cid, {})
            mine_queued = queued.get(cid, [])
            session = StoredSession(
                cid,
                interval,
                from_wall(expires),
                _decode_subscriptions(subs),
                tuple(mine.values()),
                tuple(m for _, m in mine_queued),
                tuple(json.loads(awaiting)),
                None if will is None else _decode_will(will, delay),
                from_wall(due),
                username,
            )
            self._disk[cid] = _Disk(_head(session), dict(mine), list(mine_queued))
            sessions.append(session)
        return sessions

    def load_retained(self) -> list[RetainedMessage]:
        from_wall = self._from_wall
        return [
            RetainedMessage(_decode_publish(data, keep_id=False), from_wall(expires))
            for expires, data in self._db.execute("SELECT expires_at, packet FROM retained")
        ]

    # -- recording (the pending batch) ---------------------------------------------------

    def save_session(self, session: StoredSession) -> None:
        self._sessions[session.client_id] = session
        self._appended.pop(session.client_id, None)

    def append_queued(self, client_id: str, message: StoredMessage) -> None:
        if client_id in self._sessions:
            if self._sessions[client_id] is None:
                return
        elif client_id not in self._disk:
            return
        self._appended.setdefault(client_id, []).append(message)

    def delete_session(self, client_id: str) -> None:
        self._sessions[client_id] = None
        self._appended.pop(client_id, None)

    def set_retained(self, topic: str, message: RetainedMessage | None) -> None:
        self._retained[topic] = message

    @property
    def pending(self) -> bool:
        """Whether changes wait for :meth:`commit`."""
        return bool(self._sessions or self._appended or self._retained)

    # -- the commit ----------------------------------------------------------------------

    def commit(self) -> None:
        """Write the pending batch as one transaction (see the class docs for
        what ``sync`` makes it survive).

        :raises StoreError: the write failed (a full disk, an I/O error); the
            file is as before the call and the batch stays pending.
        """
        if not (self._sessions or self._appended or self._retained):
            return
        db = self._db
        written: dict[str, _Disk | None] = {}
        rows = _Rows(self._offset)
        seq = self._seq
        for cid, record in self._sessions.items():
            if record is None:
                rows.gone.append((cid,))
                written[cid] = None
            else:
                written[cid], seq = self._write_session(rows, record, self._disk.get(cid), seq)
        for cid, messages in self._appended.items():
            disk = written[cid] if cid in written else self._disk.get(cid)
            if disk is None:
                continue
            queue = list(disk.queued)
            for message in messages:
                seq += 1
                rows.queue(cid, seq, message)
                queue.append((seq, message))
            written[cid] = _Disk(disk.head, disk.inflight, queue)
        for topic, retained in self._retained.items():
            if retained is None:
                rows.retained_gone.append((topic,))
            else:
                rows.retained.append(
                    (
                        topic,
                        rows.wall(retained.expires_at),
                        rows.encode(retained.packet, None),
                    )
                )
        try:
            db.execute("BEGIN IMMEDIATE")
            rows.write(db)
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise StoreError(f"{self.path}: cannot write: {exc}") from None
        self._seq = seq
        for cid, disk in written.items():
            if disk is None:
                self._disk.pop(cid, None)
            else:
                self._disk[cid] = disk
        self._sessions.clear()
        self._appended.clear()
        self._retained.clear()

    def _write_session(
        self, rows: _Rows, record: StoredSession, old: _Disk | None, seq: int
    ) -> tuple[_Disk, int]:
        """The rows that take the file from ``old`` to ``record``."""
        cid = record.client_id
        wall = rows.wall
        head = _head(record)
        if old is None or old.head != head:
            will = record.will
            rows.sessions.append(
                (
                    cid,
                    record.session_expiry_interval,
                    wall(record.expires_at),
                    record.username,
                    _encode_subscriptions(record.subscriptions),
                    json.dumps(list(record.awaiting_release)),
                    None if will is None else _encode_will(will),
                    None if will is None else will.will_delay_interval,
                    wall(record.will_due),
                )
            )
        old_inflight = old.inflight if old is not None else {}
        inflight: dict[int, StoredMessage] = {}
        for message in record.inflight:
            packet_id = message.packet_id
            assert packet_id is not None
            inflight[packet_id] = message
            before = old_inflight.get(packet_id)
            if before is None:
                # New flows go last: the order they load in is the order
                # they were first recorded in (the order of resending).
                seq += 1
                rows.inflight.append(
                    (
                        cid,
                        packet_id,
                        int(message.released),
                        wall(message.expires_at),
                        rows.encode(message.packet, packet_id),
                        seq,
                    )
                )
            elif not (
                # The broker makes a new record per snapshot around the same
                # packet: compared field by field, not through the packets.
                before.packet is message.packet
                and before.released == message.released
                and before.expires_at == message.expires_at
            ) and not _same(before, message):
                rows.inflight_changed.append(
                    (
                        int(message.released),
                        wall(message.expires_at),
                        rows.encode(message.packet, packet_id),
                        cid,
                        packet_id,
                    )
                )
        for packet_id in old_inflight:
            if packet_id not in inflight:
                rows.inflight_gone.append((cid, packet_id))
        old_queue = old.queued if old is not None else []
        new_queue = record.queued
        kept = self._queue_overlap(old_queue, new_queue)
        if kept is None:
            rows.queue_gone.append((cid, old_queue[-1][0] + 1))
            queue: list[tuple[int, StoredMessage]] = []
            start = 0
        else:
            first = len(old_queue) - kept
            if first:
                # Taken from the head (sent, expired, dropped): rows below the first kept.
                limit = old_queue[first][0] if kept else old_queue[-1][0] + 1
                rows.queue_gone.append((cid, limit))
            queue = old_queue[first:]
            start = kept
        for message in new_queue[start:]:
            seq += 1
            rows.queue(cid, seq, message)
            queue.append((seq, message))
        return _Disk(head, inflight, queue), seq

    @staticmethod
    def _queue_overlap(
        old: list[tuple[int, StoredMessage]], new: tuple[StoredMessage, ...]
    ) -> int | None:
        """How many messages at the tail of ``old`` are the head of ``new``
        (the queue lost its head and grew at its tail); None: no such shape."""
        if not new:
            return 0
        if not old:
            return 0
        head = new[0]
        for index, (_, message) in enumerate(old):
            if _same(message, head):
                kept = len(old) - index
                if kept > len(new):
                    return None
                if all(_same(old[index + i][1], new[i]) for i in range(1, kept)):
                    return kept
                return None
        return 0

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
