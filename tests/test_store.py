"""The store suite: every :class:`~mqttproto.store.SessionStore` passes it.

As aedes-persistence does for its backends, one set of tests runs against
each store (the ``store`` fixture: :class:`MemoryStore`, :class:`SQLiteStore`):
what is recorded and committed is what a store opened again loads. Then the
SQLite store's own promises: uncommitted changes are lost and committed ones
are not, clocks across a restart, bad files refused untouched, a failed
commit that keeps its batch, and the backup.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from mqttproto._store_sqlite import SCHEMA_VERSION
from mqttproto.enums import QoS, RetainHandling
from mqttproto.packets import PublishPacket, Will
from mqttproto.store import (
    MemoryStore,
    RetainedMessage,
    SessionStore,
    SQLiteStore,
    StoredMessage,
    StoredSession,
    StoredSubscription,
    StoreError,
)

Reopen = Callable[[], SessionStore]


def _message(n: int, qos: int = 1, **fields: object) -> StoredMessage:
    return StoredMessage(PublishPacket(f"t/{n}", b"p%d" % n, QoS(qos)), **fields)  # type: ignore[arg-type]


def _session(client_id: str = "c", **fields: object) -> StoredSession:
    return StoredSession(client_id, 60, **fields)  # type: ignore[arg-type]


def _fan_out(store: SessionStore, client_ids: str, messages: list[StoredMessage]) -> None:
    """New sessions ``client_ids`` (one letter each), every message queued
    for each of them in turn, committed."""
    for client_id in client_ids:
        store.save_session(_session(client_id))
    for message in messages:
        for client_id in client_ids:
            store.append_queued(client_id, message)
    store.commit()


@pytest.fixture(params=["memory", "sqlite"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SessionStore, Reopen]]:
    """A store and how to get "the same store, opened again": the same
    object for MemoryStore (it outlives a Broker, not the process), a new
    SQLiteStore on the same file."""
    opened: list[SessionStore] = []
    if request.param == "memory":
        memory = MemoryStore()

        def reopen() -> SessionStore:
            return memory

        first: SessionStore = memory
    else:
        path = tmp_path / "store.db"

        def reopen() -> SessionStore:
            opened[-1].close()
            store = SQLiteStore(path, clock=lambda: 0.0, wall_clock=lambda: 0.0)
            opened.append(store)
            return store

        first = SQLiteStore(path, clock=lambda: 0.0, wall_clock=lambda: 0.0)
    opened.append(first)
    yield first, reopen
    for store in opened:
        store.close()


def test_a_new_store_is_empty(stores: tuple[SessionStore, Reopen]) -> None:
    store, _ = stores
    assert store.load_sessions() == []
    assert store.load_retained() == []


def test_a_committed_session_loads_with_everything_it_holds(
    stores: tuple[SessionStore, Reopen],
) -> None:
    store, reopen = stores
    session = StoredSession(
        "c",
        3600,
        expires_at=120.0,
        subscriptions=(
            StoredSubscription("a/#", QoS.AT_LEAST_ONCE),
            StoredSubscription(
                "$share/g/b",
                QoS.EXACTLY_ONCE,
                no_local=True,
                retain_as_published=True,
                retain_handling=RetainHandling.DO_NOT_SEND,
                subscription_identifier=7,
            ),
        ),
        inflight=(
            StoredMessage(PublishPacket("a/1", b"x", QoS.AT_LEAST_ONCE, packet_id=4), None, 4),
            StoredMessage(
                PublishPacket("a/2", b"y", QoS.EXACTLY_ONCE, packet_id=5), None, 5, released=True
            ),
        ),
        queued=(_message(1), _message(2, 2, expires_at=90.0)),
        awaiting_release=(9, 11),
        will=Will("will/c", b"gone", QoS.AT_LEAST_ONCE, True, will_delay_interval=30),
        will_due=150.0,
        username="alice",
    )
    store.save_session(session)
    store.commit()
    assert reopen().load_sessions() == [session]


def test_messages_appended_after_a_snapshot_follow_its_queue(
    stores: tuple[SessionStore, Reopen],
) -> None:
    store, reopen = stores
    store.save_session(_session(queued=(_message(1),)))
    store.commit()
    store.append_queued("c", _message(2))
    store.append_queued("c", _message(3, 2))
    store.append_queued("nobody", _message(4))  # no such session: ignored
    store.commit()
    [loaded] = reopen().load_sessions()
    assert loaded.queued == (_message(1), _message(2), _message(3, 2))


def test_a_snapshot_replaces_the_queue_as_it_changed(stores: tuple[SessionStore, Reopen]) -> None:
    store, reopen = stores
    store.save_session(_session(queued=(_message(1), _message(2), _message(3))))
    store.commit()
    # Head sent, tail grown: what a busy session's snapshots look like.
    store.save_session(_session(queued=(_message(2), _message(3), _message(4))))
    store.commit()
    store.save_session(_session(queued=(_message(5), _message(3))))  # any other shape
    store.commit()
    [loaded] = reopen().load_sessions()
    assert loaded.queued == (_message(5), _message(3))


def test_in_flight_messages_change_and_end(stores: tuple[SessionStore, Reopen]) -> None:
    store, reopen = stores
    first = StoredMessage(PublishPacket("a", b"1", QoS.EXACTLY_ONCE, packet_id=1), None, 1)
    second = StoredMessage(PublishPacket("a", b"2", QoS.AT_LEAST_ONCE, packet_id=2), None, 2)
    store.save_session(_session(inflight=(first, second)))
    store.commit()
    released = StoredMessage(first.packet, None, 1, released=True)
    store.save_session(_session(inflight=(released,), awaiting_release=(3,)))
    store.commit()
    [loaded] = reopen().load_sessions()
    assert loaded.inflight == (released,)
    assert loaded.awaiting_release == (3,)


def _sent(message: StoredMessage, packet_id: int, *, released: bool = False) -> StoredMessage:
    """``message`` as a store loads it once in flight with ``packet_id``."""
    packet = attrs.evolve(message.packet, packet_id=packet_id)
    return StoredMessage(packet, message.expires_at, packet_id, released)


def test_messages_are_recorded_one_change_at_a_time(stores: tuple[SessionStore, Reopen]) -> None:
    store, reopen = stores
    m = [_message(n, 2 if n == 1 else 1, expires_at=50.0 if n == 5 else None) for n in range(6)]
    store.save_session(_session(queued=(m[1], m[2], m[3])))
    store.commit()
    store.send_queued("c", 7)  # the head goes in flight
    store.remove_queued("c", 1)  # m[3] (m[2] is the head now): expired, say
    store.append_queued("c", m[4])
    store.add_inflight("c", 9, m[5])  # sent at once
    store.release_inflight("c", 7)  # PUBREC came
    store.commit()
    [loaded] = reopen().load_sessions()
    assert sorted(loaded.inflight, key=lambda i: i.packet_id or 0) == [
        _sent(m[1], 7, released=True),
        _sent(m[5], 9),
    ]
    assert loaded.queued == (m[2], m[4])
    store = reopen()
    store.end_inflight("c", 7)  # PUBCOMP
    store.send_queued("c", 10)
    store.remove_queued("c", 0)  # m[4]: delivered at QoS 0, say
    store.commit()
    [loaded] = reopen().load_sessions()
    assert sorted(loaded.inflight, key=lambda i: i.packet_id or 0) == [
        _sent(m[5], 9),
        _sent(m[2], 10),
    ]
    assert loaded.queued == ()


def test_many_messages_recorded_in_one_batch_load_in_order(
    stores: tuple[SessionStore, Reopen],
) -> None:
    store, reopen = stores
    messages = [_message(n) for n in range(150)]
    _fan_out(store, "ab", messages)
    store = reopen()
    for n in range(100):
        store.send_queued("a", n + 1)
    store.commit()
    for n in range(0, 100, 3):
        store.end_inflight("a", n + 1)
    store.commit()
    loaded = {s.client_id: s for s in reopen().load_sessions()}
    assert loaded["b"].queued == tuple(messages)
    assert loaded["a"].queued == tuple(messages[100:])
    assert sorted(m.packet_id or 0 for m in loaded["a"].inflight) == [
        n + 1 for n in range(100) if n % 3
    ]


def test_a_session_saved_without_its_messages_keeps_them(
    stores: tuple[SessionStore, Reopen],
) -> None:
    store, reopen = stores
    store.save_session(_session(queued=(_message(1),)))
    store.commit()
    store.append_queued("c", _message(2))
    changed = _session(
        expires_at=30.0, subscriptions=(StoredSubscription("new"),), awaiting_release=(4,)
    )
    store.save_session(changed, messages=False)
    store.save_session(_session("unknown"), messages=False)  # not stored: ignored
    store.commit()
    assert reopen().load_sessions() == [attrs.evolve(changed, queued=(_message(1), _message(2)))]


def test_changes_to_what_is_not_there_are_ignored(stores: tuple[SessionStore, Reopen]) -> None:
    store, reopen = stores
    store.save_session(_session(queued=(_message(1),)))
    store.commit()
    for other in ("nobody", "c"):
        store.remove_queued(other, 5)
        store.end_inflight(other, 3)
        store.release_inflight(other, 3)
    for call in (store.send_queued, store.end_inflight):
        call("nobody", 1)
    store.add_inflight("nobody", 1, _message(2))
    store.commit()
    assert reopen().load_sessions() == [_session(queued=(_message(1),))]


def test_a_deleted_session_is_gone_with_its_queue(stores: tuple[SessionStore, Reopen]) -> None:
    store, reopen = stores
    store.save_session(_session("a", queued=(_message(1),)))
    store.save_session(_session("b"))
    store.commit()
    store.append_queued("a", _message(2))
    store.delete_session("a")
    store.append_queued("a", _message(3))  # after the delete: ignored
    store.commit()
    assert [s.client_id for s in reopen().load_sessions()] == ["b"]


def test_a_session_deleted_and_made_anew_in_one_batch(stores: tuple[SessionStore, Reopen]) -> None:
    store, reopen = stores
    store.save_session(_session(queued=(_message(1),), subscriptions=(StoredSubscription("x"),)))
    store.commit()
    store.delete_session("c")
    store.save_session(_session(queued=(_message(2),)))
    store.commit()
    assert reopen().load_sessions() == [_session(queued=(_message(2),))]


def test_retained_messages_are_set_replaced_and_deleted(
    stores: tuple[SessionStore, Reopen],
) -> None:
    store, reopen = stores

    def retained(topic: str, payload: bytes, expires_at: float | None = None) -> RetainedMessage:
        return RetainedMessage(PublishPacket(topic, payload, retain=True), expires_at)

    store.set_retained("a", retained("a", b"1"))
    store.set_retained("b", retained("b", b"2", 30.0))
    store.set_retained("c", retained("c", b"3"))
    store.commit()
    store.set_retained("a", retained("a", b"new"))
    store.set_retained("c", None)
    store.commit()
    loaded = sorted(reopen().load_retained(), key=lambda m: m.topic)
    assert loaded == [retained("a", b"new"), retained("b", b"2", 30.0)]


# -- the SQLite store's own promises ---------------------------------------------------


def test_a_message_for_many_sessions_is_one_row(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    for client_id in "abc":
        store.save_session(_session(client_id))
    store.commit()
    shared = _message(1)
    for client_id in "abc":
        store.append_queued(client_id, shared)
    store.commit()

    def count(table: str) -> int:
        return int(store._db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])

    assert (count("messages"), count("deliveries")) == (1, 3)
    for client_id in "ab":
        store.send_queued(client_id, 1)
        store.end_inflight(client_id, 1)
    store.commit()
    assert (count("messages"), count("deliveries")) == (1, 1)
    store.remove_queued("c", 0)
    store.commit()
    assert (count("messages"), count("deliveries")) == (0, 0)
    store.close()


def test_a_message_queued_sent_and_acknowledged_between_commits_writes_nothing(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.save_session(_session())
    store.commit()
    before = store._db.total_changes
    for n in range(10):
        store.append_queued("c", _message(n))
        store.send_queued("c", n + 1)
        store.end_inflight("c", n + 1)
    store.commit()
    assert store._db.total_changes == before
    store.close()


def test_changes_not_committed_are_lost_and_committed_ones_are_not(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.save_session(_session("kept"))
    store.commit()
    store.save_session(_session("lost"))
    store.set_retained("lost", RetainedMessage(PublishPacket("lost", b"x", retain=True)))
    store.close()  # as a SIGKILL would: the batch was never written
    again = SQLiteStore(path)
    assert [s.client_id for s in again.load_sessions()] == ["kept"]
    assert again.load_retained() == []
    again.close()


def test_deadlines_are_kept_in_wall_clock_terms(tmp_path: Path) -> None:
    """A deadline 30 s ahead, the broker stopped for 100 s, restarted with a
    monotonic clock that starts again at 5: the deadline passed 70 s ago."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path, clock=lambda: 1000.0, wall_clock=lambda: 50_000.0)
    store.save_session(_session(expires_at=1030.0, queued=(_message(1, expires_at=1020.0),)))
    store.set_retained("r", RetainedMessage(PublishPacket("r", b"x", retain=True), 1010.0))
    store.commit()
    store.close()
    later = SQLiteStore(path, clock=lambda: 5.0, wall_clock=lambda: 50_100.0)
    [session] = later.load_sessions()
    assert session.expires_at == -65.0
    assert session.queued[0].expires_at == -75.0
    assert later.load_retained()[0].expires_at == -85.0
    later.close()


def _unchanged(path: Path) -> Callable[[], bool]:
    before = path.read_bytes()
    return lambda: path.read_bytes() == before


def _edit(path: Path, *statements: tuple[str, tuple[Any, ...]]) -> None:
    """Change the file with SQL, as another program would, and commit."""
    db = sqlite3.connect(path)
    for sql, parameters in statements:
        db.execute(sql, parameters)
    db.commit()
    db.close()


def _refused_untouched(path: Path, match: str) -> StoreError:
    """Opening ``path`` raises a StoreError saying ``match`` and leaves every
    byte of the file as it was."""
    unchanged = _unchanged(path)
    with pytest.raises(StoreError, match=match) as caught:
        SQLiteStore(path)
    assert unchanged()
    return caught.value


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a database at all, just some text\n" * 100, "not a mqttproto store"),
        (b"", None),  # an empty file becomes a store
    ],
)
def test_a_file_that_is_not_sqlite(tmp_path: Path, content: bytes, message: str | None) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(content)
    if message is None:
        SQLiteStore(path).close()
        return
    assert str(path) in str(_refused_untouched(path, message))


def test_another_applications_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    _edit(path, ("CREATE TABLE accounts (id INTEGER)", ()))
    _refused_untouched(path, "another database")


def test_a_newer_schema_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SQLiteStore(path).close()
    _edit(path, ("UPDATE schema_version SET version = 99", ()))
    _refused_untouched(path, "schema version 99 is newer")


#: The schema of version 1 files (mqttproto 0.x before the delivery rows).
_SCHEMA_1 = (
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


def _version_1_file(path: Path) -> None:
    """A file as mqttproto wrote schema version 1: two sessions, one with
    messages in flight (one past PUBREC) and queued, a queued copy of a
    session that is not there, a retained message."""
    from mqttproto import encode_packet
    from mqttproto.enums import ProtocolVersion

    def blob(packet: PublishPacket) -> bytes:
        return encode_packet(packet, version=ProtocolVersion.MQTT_5_0)

    db = sqlite3.connect(path)
    for statement in _SCHEMA_1:
        db.execute(statement)
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("PRAGMA application_id=1297175632")
    db.execute(
        "INSERT INTO sessions VALUES ('a', 60, 100.0, 'alice', ?, '[3]', NULL, NULL, NULL)",
        ('[["t/#", 1, false, false, 0, null]]',),
    )
    db.execute("INSERT INTO sessions VALUES ('b', 60, NULL, NULL, '[]', '[]', NULL, NULL, NULL)")
    rows = [
        (1, "a", 4, 0, None, PublishPacket("t/1", b"1", QoS.AT_LEAST_ONCE, packet_id=4)),
        (2, "a", 5, 1, 90.0, PublishPacket("t/2", b"2", QoS.EXACTLY_ONCE, packet_id=5)),
    ]
    for seq, cid, packet_id, released, expires, packet in rows:
        db.execute(
            "INSERT INTO inflight VALUES (?, ?, ?, ?, ?, ?)",
            (cid, packet_id, released, expires, blob(packet), seq),
        )
    for seq, cid in [(3, "a"), (4, "gone"), (5, "a"), (6, "b")]:
        packet = PublishPacket(f"t/{seq}", b"q", QoS.AT_LEAST_ONCE, packet_id=1)
        db.execute("INSERT INTO queued VALUES (?, ?, NULL, ?)", (seq, cid, blob(packet)))
    db.execute(
        "INSERT INTO retained VALUES ('r', NULL, ?)",
        (blob(PublishPacket("r", b"kept", retain=True)),),
    )
    db.commit()
    db.close()


def test_a_version_1_file_is_migrated_with_everything_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _version_1_file(path)
    store = SQLiteStore(path, clock=lambda: 0.0, wall_clock=lambda: 0.0)
    sessions = {s.client_id: s for s in store.load_sessions()}
    assert sessions["a"] == StoredSession(
        "a",
        60,
        100.0,
        (StoredSubscription("t/#", QoS.AT_LEAST_ONCE),),
        (
            StoredMessage(PublishPacket("t/1", b"1", QoS.AT_LEAST_ONCE, packet_id=4), None, 4),
            StoredMessage(
                PublishPacket("t/2", b"2", QoS.EXACTLY_ONCE, packet_id=5), 90.0, 5, released=True
            ),
        ),
        (_queued("t/3"), _queued("t/5")),
        (3,),
        username="alice",
    )
    assert sessions["b"] == StoredSession("b", 60, queued=(_queued("t/6"),))
    assert set(sessions) == {"a", "b"}  # the copy for "gone" is not kept
    assert store.load_retained() == [RetainedMessage(PublishPacket("r", b"kept", retain=True))]
    # It goes on as a file of this version: changes are written and read back.
    store.end_inflight("a", 4)
    store.send_queued("a", 6)
    store.append_queued("b", _queued("t/7"))
    store.commit()
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"schema_version", "sessions", "messages", "deliveries", "retained"}
    db.close()
    again = SQLiteStore(path, clock=lambda: 0.0, wall_clock=lambda: 0.0)
    sessions = {s.client_id: s for s in again.load_sessions()}
    assert [m.packet_id for m in sessions["a"].inflight] == [5, 6]
    assert sessions["a"].inflight[1].packet.topic == "t/3"
    assert sessions["a"].queued == (_queued("t/5"),)
    assert sessions["b"].queued == (_queued("t/6"), _queued("t/7"))
    again.close()


def _version_2_file(path: Path) -> None:
    """A file as mqttproto wrote schema version 2 (one row per delivery):
    session 1 with two messages in flight (the second past PUBREC) and one
    queued, session 2 with the third message queued too."""
    from mqttproto import encode_packet
    from mqttproto.enums import ProtocolVersion

    def blob(topic: str, qos: int) -> bytes:
        packet = PublishPacket(topic, b"2", QoS(qos), packet_id=1)
        return encode_packet(packet, version=ProtocolVersion.MQTT_5_0)

    db = sqlite3.connect(path)
    for statement in (
        "CREATE TABLE schema_version (version INTEGER NOT NULL)",
        "CREATE TABLE sessions (number INTEGER PRIMARY KEY, client_id TEXT NOT NULL UNIQUE,"
        " expiry_interval INTEGER NOT NULL, expires_at REAL, username TEXT,"
        " subscriptions TEXT NOT NULL, awaiting_release TEXT NOT NULL, will BLOB,"
        " will_delay INTEGER, will_due REAL)",
        "CREATE TABLE messages (id INTEGER PRIMARY KEY, expires_at REAL, packet BLOB NOT NULL)",
        "CREATE TABLE deliveries (session INTEGER NOT NULL, seq INTEGER NOT NULL,"
        " message INTEGER NOT NULL, packet_id INTEGER NOT NULL,"
        " PRIMARY KEY (session, seq)) WITHOUT ROWID",
        "CREATE TABLE retained (topic TEXT PRIMARY KEY, expires_at REAL, packet BLOB NOT NULL)",
        "INSERT INTO schema_version VALUES (2)",
        "PRAGMA application_id=1297175632",
        "INSERT INTO sessions VALUES (1, 'a', 60, NULL, NULL, '[]', '[]', NULL, NULL, NULL)",
        "INSERT INTO sessions VALUES (2, 'b', 60, NULL, NULL, '[]', '[]', NULL, NULL, NULL)",
    ):
        db.execute(statement)
    for row_id, topic, qos in [(1, "m/1", 1), (2, "m/2", 2), (3, "m/3", 1)]:
        db.execute("INSERT INTO messages VALUES (?, NULL, ?)", (row_id, blob(topic, qos)))
    for row in [(1, 1, 1, 7), (1, 2, 2, -8), (1, 3, 3, 0), (2, 1, 3, 0)]:
        db.execute("INSERT INTO deliveries VALUES (?, ?, ?, ?)", row)
    db.commit()
    db.close()


def test_a_version_2_file_is_migrated_with_everything_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    _version_2_file(path)
    store = SQLiteStore(path)
    sessions = {s.client_id: s for s in store.load_sessions()}

    def m(topic: str, qos: int, packet_id: int | None = None) -> PublishPacket:
        return PublishPacket(topic, b"2", QoS(qos), packet_id=packet_id)

    assert sessions["a"].inflight == (
        StoredMessage(m("m/1", 1, 7), None, 7),
        StoredMessage(m("m/2", 2, 8), None, 8, released=True),
    )
    assert sessions["a"].queued == (StoredMessage(m("m/3", 1)),)
    assert sessions["b"].queued == (StoredMessage(m("m/3", 1)),)
    # It goes on as a file of this version.
    store.end_inflight("a", 7)
    store.send_queued("a", 9)
    store.commit()
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    assert db.execute("SELECT * FROM deliveries ORDER BY session, seq").fetchall() == [
        (1, 2, 2, 2, -8),
        (1, 3, 3, 3, 9),
        (2, 1, 1, 3, 0),
    ]
    db.close()
    again = SQLiteStore(path)
    sessions = {s.client_id: s for s in again.load_sessions()}
    assert [(x.packet_id, x.released) for x in sessions["a"].inflight] == [(8, True), (9, False)]
    assert sessions["a"].queued == ()
    again.close()


def _rows(store: SQLiteStore) -> list[tuple[int, ...]]:
    return store._db.execute("SELECT * FROM deliveries ORDER BY session, seq").fetchall()


def test_a_stream_of_deliveries_is_a_row_per_run(tmp_path: Path) -> None:
    """What a commit adds to a session is one row; sending part of it from
    the queue and acknowledging part of that cuts it into its runs; what
    loads is what was recorded, delivery by delivery."""
    store = SQLiteStore(tmp_path / "s.db")
    stream = [_message(n) for n in range(50)]
    _fan_out(store, "ab", stream)
    assert _rows(store) == [(1, 1, 50, 1, 0), (2, 1, 50, 1, 0)]
    for packet_id in range(100, 120):
        store.send_queued("a", packet_id)
    store.commit()
    assert _rows(store) == [(1, 1, 20, 1, 100), (1, 21, 50, 21, 0), (2, 1, 50, 1, 0)]
    for packet_id in range(100, 110):
        store.end_inflight("a", packet_id)
    store.end_inflight("a", 115)
    store.remove_queued("b", 10)
    store.commit()
    assert _rows(store) == [
        (1, 11, 15, 11, 110),
        (1, 17, 20, 17, 116),
        (1, 21, 50, 21, 0),
        (2, 1, 10, 1, 0),
        (2, 12, 50, 12, 0),
    ]
    store.close()
    again = SQLiteStore(tmp_path / "s.db")
    sessions = {s.client_id: s for s in again.load_sessions()}
    assert [x.packet_id for x in sessions["a"].inflight] == [*range(110, 115), *range(116, 120)]
    assert [x.packet.topic for x in sessions["a"].inflight] == [
        f"t/{n}" for n in [*range(10, 15), *range(16, 20)]
    ]
    assert sessions["a"].queued == tuple(stream[20:])
    assert sessions["b"].queued == tuple(stream[:10] + stream[11:])
    # Everything acknowledged: no row is left.
    for packet_id in [*range(110, 115), *range(116, 120)]:
        again.end_inflight("a", packet_id)
    for _ in range(30):
        again.remove_queued("a", 0)
    for _ in range(49):
        again.remove_queued("b", 0)
    again.commit()
    assert _rows(again) == []
    assert again._db.execute("SELECT COUNT(*) FROM messages").fetchone() == (0,)
    again.close()


def test_a_run_in_flight_does_not_span_the_wrap_of_packet_identifiers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    store.save_session(_session())
    stream = [_message(n) for n in range(4)]
    for message in stream:
        store.append_queued("c", message)
    store.commit()
    for packet_id in (65534, 65535, 1, 2):
        store.send_queued("c", packet_id)
    store.release_inflight("c", 65535)
    store.commit()
    assert _rows(store) == [(1, 1, 1, 1, 65534), (1, 2, 2, 2, -65535), (1, 3, 4, 3, 1)]
    store.close()
    again = SQLiteStore(tmp_path / "s.db")
    (session,) = again.load_sessions()
    assert [(x.packet_id, x.released) for x in session.inflight] == [
        (65534, False),
        (65535, True),
        (1, False),
        (2, False),
    ]
    assert [x.packet.topic for x in session.inflight] == ["t/0", "t/1", "t/2", "t/3"]
    again.close()


@pytest.mark.parametrize(
    "row",
    [
        (1, 5, 4, 1, 0),  # ends before it begins
        (1, 1, 2, 1, 65535),  # past the highest packet identifier
        (1, 1, 2, 1, -1),  # crosses from past PUBREC to queued
    ],
)
def test_a_corrupt_row_of_deliveries_is_refused(tmp_path: Path, row: tuple[int, ...]) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.save_session(_session())
    store.append_queued("c", _message(1))
    store.commit()
    store.close()
    _edit(
        path,
        ("DELETE FROM deliveries", ()),
        ("INSERT INTO deliveries VALUES (?, ?, ?, ?, ?)", row),
    )
    _refused_untouched(path, "a row of deliveries is corrupt")


def _queued(topic: str) -> StoredMessage:
    return StoredMessage(PublishPacket(topic, b"q", QoS.AT_LEAST_ONCE))


def test_a_newer_version_is_reached_step_by_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each version's step runs in turn: a version 1 file opened by a
    version 4 store takes the steps to 2, to 3 and then to 4."""
    from mqttproto import _store_sqlite

    path = tmp_path / "s.db"
    _version_1_file(path)
    monkeypatch.setattr(_store_sqlite, "SCHEMA_VERSION", 4)
    monkeypatch.setattr(
        _store_sqlite,
        "_MIGRATIONS",
        {**_store_sqlite._MIGRATIONS, 3: ("ALTER TABLE sessions ADD COLUMN note TEXT",)},
    )
    store = SQLiteStore(path)
    assert {s.client_id for s in store.load_sessions()} == {"a", "b"}
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT version FROM schema_version").fetchall() == [(4,)]
    assert "note" in [row[1] for row in db.execute("PRAGMA table_info(sessions)")]
    db.close()


def test_a_file_without_a_step_for_its_version_is_refused_untouched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mqttproto import _store_sqlite

    path = tmp_path / "s.db"
    _version_1_file(path)
    monkeypatch.setattr(_store_sqlite, "_MIGRATIONS", {})
    _refused_untouched(path, "no migration from schema version 1")


def test_a_missing_directory_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "s.db"
    with pytest.raises(StoreError, match="does not exist"):
        SQLiteStore(path)
    assert not path.parent.exists()


def test_a_failed_commit_keeps_its_batch_for_the_next(tmp_path: Path) -> None:
    """A full disk (here: the file's page limit) fails the commit, changes
    nothing in the file, and the next commit, with room again, writes it all."""
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    store.save_session(_session("small"))
    store.commit()
    pages = store._db.execute("PRAGMA page_count").fetchone()[0]
    store._db.execute(f"PRAGMA max_page_count={pages}")
    big = tuple(
        StoredMessage(PublishPacket(f"t/{n}", os.urandom(2000), QoS.AT_LEAST_ONCE))
        for n in range(20)
    )
    store.save_session(_session("big", queued=big))
    with pytest.raises(StoreError, match="cannot write") as caught:
        store.commit()
    assert str(path) in str(caught.value)
    assert store.pending
    store._db.execute("PRAGMA max_page_count=1000000")
    store.commit()
    store.close()
    again = SQLiteStore(path)
    assert {s.client_id: len(s.queued) for s in again.load_sessions()} == {"small": 0, "big": 20}
    again.close()


def test_backup_copies_the_committed_state(tmp_path: Path) -> None:
    from mqttproto._store_sqlite import backup

    store = SQLiteStore(tmp_path / "s.db")
    store.save_session(_session("c", queued=(_message(1),)))
    store.commit()
    store.save_session(_session("not-yet"))
    backup(tmp_path / "s.db", tmp_path / "copy.db")
    copy = SQLiteStore(tmp_path / "copy.db")
    assert [s.client_id for s in copy.load_sessions()] == ["c"]
    copy.close()
    store.close()
    with pytest.raises(StoreError, match="not a mqttproto store"):
        (tmp_path / "text").write_text("hello")
        backup(tmp_path / "text", tmp_path / "copy2.db")
