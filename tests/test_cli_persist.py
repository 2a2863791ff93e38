"""``mqttproto broker --persist FILE`` and ``mqttproto backup``: files that
cannot be used are one line naming the file, exit status 1, no traceback,
and the file as it was."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from cli_tools import assert_one_line_error, cli

from mqttproto.packets import PublishPacket
from mqttproto.store import RetainedMessage, SQLiteStore


def _newer(path: Path) -> None:
    SQLiteStore(path).close()
    db = sqlite3.connect(path)
    db.execute("UPDATE schema_version SET version = 99")
    db.commit()
    db.close()


def _foreign(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE invoices (id INTEGER)")
    db.commit()
    db.close()


def _corrupt(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 5000)


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (_corrupt, b"not a mqttproto store"),
        (_foreign, b"not a mqttproto store (another database)"),
        (_newer, b"schema version 99 is newer"),
    ],
    ids=["corrupt", "foreign", "newer-schema"],
)
def test_a_file_that_cannot_be_used(tmp_path: Path, make, says: bytes) -> None:
    path = tmp_path / "broker.db"
    make(path)
    before = path.read_bytes()
    result = cli("broker", "--port", "0", "--persist", str(path))
    assert_one_line_error(result, 1, b"mqttproto broker: " + str(path).encode())
    assert says in result.stderr
    assert path.read_bytes() == before


def test_a_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "gone" / "broker.db"
    result = cli("broker", "--port", "0", "--persist", str(path))
    assert_one_line_error(result, 1, b"mqttproto broker: " + str(path).encode())
    assert b"does not exist" in result.stderr


def test_persist_and_sync_from_toml_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text('persist = "broker.db"\nsync = "sometimes"\n')
    result = cli("broker", "--config", str(config))
    assert_one_line_error(result, 1, b"mqttproto broker: " + str(config).encode())
    assert b"sync must be one of" in result.stderr


def test_backup_copies_a_store_and_refuses_other_files(tmp_path: Path) -> None:
    source = tmp_path / "broker.db"
    store = SQLiteStore(source)
    store.set_retained("a", RetainedMessage(PublishPacket("a", b"kept", retain=True)))
    store.commit()
    result = cli("backup", str(source), str(tmp_path / "copy.db"))
    assert (result.returncode, result.stdout, result.stderr) == (0, b"", b"")
    copy = SQLiteStore(tmp_path / "copy.db")
    assert [m.payload for m in copy.load_retained()] == [b"kept"]
    copy.close()
    store.close()
    other = tmp_path / "notes.txt"
    other.write_text("not a store\n")
    result = cli("backup", str(other), str(tmp_path / "copy2.db"))
    assert_one_line_error(result, 1, b"mqttproto backup: " + str(other).encode())
