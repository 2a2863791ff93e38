"""SIGHUP on a ``mqttproto broker`` process: the password file, the ACL file
and the TLS certificate are reloaded, connected clients stay connected unless
their password was changed or removed, and
the log says what was reloaded, or which file could not be and why.

Each broker is a process (``ProcessBroker``, stopped by its handle) on
127.0.0.1 reached with raw MQTT 3.1.1 bytes; the signal goes to it by its
handle. Every wait is bounded in count and time.
"""

from __future__ import annotations

import shutil
import signal
import ssl
import time
from pathlib import Path

import attrs
import pytest
from cli_tools import cli
from test_cli_broker import make_certificate
from test_cli_broker_ops import (
    ACCEPTED_V311,
    PINGREQ,
    PINGRESP,
    V5,
    V311,
    connack,
    connect,
    listener_port,
    open_mqtt,
    read_packet,
    read_packet_bytes,
)
from test_interop_broker import ProcessBroker

from mqttproto import ConnAckPacket, ConnectPacket, DisconnectPacket, ReasonCode, encode_packet

BAD_PASSWORD_V311 = bytes.fromhex("20020004")
#: Refusals from one address are slowed down, doubling: kept short here.
QUICK = ("--auth-failure-delay", "0.001", "--auth-failure-max-delay", "0.01")


def stderr_of(broker: ProcessBroker) -> str:
    return "".join(broker._stderr_parts)


def wait_for_log(broker: ProcessBroker, text: str, count: int = 1) -> str:
    """The broker's standard error once ``text`` is in it ``count`` times (10 s at most)."""
    for _ in range(200):
        logged = stderr_of(broker)
        if logged.count(text) >= count:
            return logged
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not logged {count} times; stderr:\n{stderr_of(broker)}")


def hangup(broker: ProcessBroker) -> None:
    assert broker.process is not None
    broker.process.send_signal(signal.SIGHUP)


def set_password(path: Path, user: str, password: str, *, create: bool = False) -> None:
    result = cli("passwd", *(("-c",) if create else ()), "-b", str(path), user, password)
    assert result.returncode == 0, result.stderr


def test_sighup_reloads_passwords_and_acl_keeping_clients(tmp_path: Path) -> None:
    passwords, acl = tmp_path / "passwords", tmp_path / "acl"
    set_password(passwords, "alice", "secret", create=True)
    acl.write_text("user alice\ntopic readwrite #\n", encoding="utf-8")
    files = ("--password-file", str(passwords), "--acl-file", str(acl))
    with ProcessBroker(*files, *QUICK) as broker:
        keeper, answer = connect(
            broker.port, V311, client_id="keeper", username="alice", password=b"secret"
        )
        with keeper:
            assert answer == ACCEPTED_V311
            keeper.sendall(bytes.fromhex("820b00010006") + b"news/#" + b"\x00")
            assert read_packet_bytes(keeper) == bytes.fromhex("9003000100")
            assert connack(broker.port, V311, username="bob", password=b"pw") == BAD_PASSWORD_V311

            # bob arrives, alice's entry is untouched; bob may write the news.
            set_password(passwords, "bob", "pw")
            acl.write_text(
                "user alice\ntopic read news/#\nuser bob\ntopic write news/#\n", encoding="utf-8"
            )
            hangup(broker)
            logged = wait_for_log(broker, "reloaded the ACL file")
            assert f"reloaded the password file {passwords} (2 users)" in logged
            assert f"reloaded the ACL file {acl} (2 rules)" in logged
            assert "disconnected" not in logged

            bob, answer = connect(
                broker.port, V311, client_id="bob", username="bob", password=b"pw"
            )
            with bob:
                assert answer == ACCEPTED_V311
                bob.sendall(bytes.fromhex("300d0006") + b"news/1" + b"hello")
                bob.sendall(PINGREQ)
                assert read_packet_bytes(bob) == PINGRESP
            # Still connected, and the new rules let it read what bob wrote.
            assert read_packet_bytes(keeper) == bytes.fromhex("300d0006") + b"news/1" + b"hello"
            keeper.sendall(PINGREQ)
            assert read_packet_bytes(keeper) == PINGRESP
        assert "Traceback" not in stderr_of(broker)
        assert broker.stop() == 0


def test_sighup_disconnects_users_removed_or_given_a_new_password(tmp_path: Path) -> None:
    """As mosquitto does, a reload ends the connections whose password no
    longer holds; the others, and every session, stay."""
    passwords = tmp_path / "passwords"
    set_password(passwords, "alice", "secret", create=True)
    for user in ("bob", "carol"):
        set_password(passwords, user, "pw")
    with ProcessBroker("--password-file", str(passwords), *QUICK) as broker:
        alice, answer = connect(
            broker.port, V311, client_id="a", username="alice", password=b"secret"
        )
        # bob (MQTT 5) keeps his session for 10 minutes.
        bob_packet = ConnectPacket(
            "b", V5, clean_start=False, username="bob", password=b"pw", session_expiry_interval=600
        )
        bob = open_mqtt(broker.port)
        bob.sendall(encode_packet(bob_packet, version=V5))
        bob_ack = read_packet(bob, V5)
        carol, carol_answer = connect(
            broker.port, V311, client_id="c", username="carol", password=b"pw"
        )
        with alice, bob, carol:
            assert answer == ACCEPTED_V311 and carol_answer == ACCEPTED_V311
            assert isinstance(bob_ack, ConnAckPacket) and bob_ack.reason_code == 0
            # bob's password changes, carol leaves the file, alice's entry stays.
            set_password(passwords, "bob", "new")
            text = passwords.read_text(encoding="utf-8")
            passwords.write_text(
                "".join(line + "\n" for line in text.splitlines() if not line.startswith("carol:")),
                encoding="utf-8",
            )
            hangup(broker)
            logged = wait_for_log(broker, "whose password was changed or removed")
            assert "disconnected 2 clients whose password was changed or removed: b, c" in logged

            goodbye = read_packet(bob, V5)
            assert isinstance(goodbye, DisconnectPacket)
            assert goodbye.reason_code == ReasonCode.NOT_AUTHORIZED  # 0x87
            assert bob.recv(1) == b""
            # 3.1.1 has no server DISCONNECT: carol's connection just closes.
            assert carol.recv(1) == b""
            alice.sendall(PINGREQ)
            assert read_packet_bytes(alice) == PINGRESP

        # bob's old password is refused; the new one finds his session.
        assert connack(broker.port, V311, username="bob", password=b"pw") == BAD_PASSWORD_V311
        with open_mqtt(broker.port) as again:
            again.sendall(encode_packet(attrs.evolve(bob_packet, password=b"new"), version=V5))
            back = read_packet(again, V5)
        assert isinstance(back, ConnAckPacket)
        assert back.reason_code == 0 and back.session_present
        assert "Traceback" not in stderr_of(broker)
        assert broker.stop() == 0


def test_acl_lines_that_look_misspelt_are_logged_at_start_and_reload(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic raed alice/#\n", encoding="utf-8")
    warning = (
        f"ACL file {acl} line 2: topic 'raed alice/#' gives readwrite on the filter"
        " 'raed alice/#' ('raed' is not read, write, readwrite or deny)"
    )
    with ProcessBroker("--acl-file", str(acl)) as broker:
        assert connack(broker.port, V311) == ACCEPTED_V311  # serving
        assert warning in stderr_of(broker)
        acl.write_text("user alice\ntopic read alice/#\n", encoding="utf-8")
        hangup(broker)
        wait_for_log(broker, "reloaded the ACL file")
        acl.write_text("user alice\ntopic raed alice/#\n", encoding="utf-8")
        hangup(broker)
        logged = wait_for_log(broker, "reloaded the ACL file", count=2)
        assert logged.count(warning) == 2
        assert broker.stop() == 0


def test_failed_reload_keeps_the_old_files_and_says_why(tmp_path: Path) -> None:
    passwords, acl = tmp_path / "passwords", tmp_path / "acl"
    set_password(passwords, "alice", "secret", create=True)
    acl.write_text("user alice\ntopic readwrite #\n", encoding="utf-8")
    files = ("--password-file", str(passwords), "--acl-file", str(acl))
    with ProcessBroker(*files, *QUICK) as broker:
        passwords.unlink()
        acl.write_text("user alice\ntopic sideways #\n", encoding="utf-8")
        hangup(broker)
        logged = wait_for_log(broker, "ACL file")
        failures = [line for line in logged.splitlines() if "not reloaded" in line]
        assert len(failures) == 2, logged
        assert failures[0].endswith(
            f"password file {passwords} not reloaded, keeping the previous one: "
            "No such file or directory"
        )
        assert (
            f"ACL file {acl} not reloaded, keeping the previous one: ACL file line 2:"
            in (failures[1])
        )
        # The old password file and rules still apply.
        alice, answer = connect(
            broker.port, V311, client_id="alice", username="alice", password=b"secret"
        )
        with alice:
            assert answer == ACCEPTED_V311
            alice.sendall(bytes.fromhex("82060001000123") + b"\x00")  # SUBSCRIBE "#"
            assert read_packet_bytes(alice) == bytes.fromhex("9003000100")
        # Fixed files are taken at the next SIGHUP.
        set_password(passwords, "carol", "pw", create=True)
        acl.write_text("user carol\ntopic readwrite #\n", encoding="utf-8")
        hangup(broker)
        wait_for_log(broker, "reloaded the ACL file")
        assert connack(broker.port, V311, username="carol", password=b"pw") == ACCEPTED_V311
        assert "Traceback" not in stderr_of(broker)
        assert broker.stop() == 0


def presented_certificate(port: int, cafile: Path) -> tuple[bytes, bytes]:
    """The certificate (DER) a new TLS handshake presents, verified against
    ``cafile``, and the CONNACK of a CONNECT sent over it."""
    context = ssl.create_default_context(cafile=str(cafile))
    sock, answer = connect(port, V311, client_id="tls", context=context)
    with sock:
        certificate = sock.getpeercert(binary_form=True)  # type: ignore[attr-defined]
    assert certificate is not None
    return certificate, answer


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text(encoding="ascii"))


def test_sighup_reloads_the_tls_certificate_for_new_handshakes(tmp_path: Path) -> None:
    old_dir, new_dir, live = tmp_path / "old", tmp_path / "new", tmp_path / "live"
    for directory in (old_dir, new_dir, live):
        directory.mkdir()
    old_cert, old_key = make_certificate(old_dir)
    new_cert, new_key = make_certificate(new_dir)
    cert, key = live / "cert.pem", live / "key.pem"
    shutil.copy(old_cert, cert)
    shutil.copy(old_key, key)
    with ProcessBroker("--certfile", str(cert), "--keyfile", str(key), "--tls-port", "0") as broker:
        tls_port = listener_port(broker, "TLS")
        assert presented_certificate(tls_port, old_cert) == (der(old_cert), ACCEPTED_V311)
        context = ssl.create_default_context(cafile=str(old_cert))
        established, answer = connect(tls_port, V311, client_id="kept", context=context)
        with established:
            assert answer == ACCEPTED_V311
            shutil.copy(new_cert, cert)
            shutil.copy(new_key, key)
            hangup(broker)
            wait_for_log(broker, f"reloaded the TLS certificate {cert}")
            assert presented_certificate(tls_port, new_cert) == (der(new_cert), ACCEPTED_V311)
            with pytest.raises(ssl.SSLCertVerificationError):
                presented_certificate(tls_port, old_cert)
            # The connection made before keeps its session.
            established.sendall(PINGREQ)
            assert read_packet_bytes(established) == PINGRESP

            # A key that is not PEM: the certificate in use stays, one line says why.
            key.write_text("not a key\n", encoding="ascii")
            hangup(broker)
            logged = wait_for_log(broker, "not reloaded")
            assert (
                f"TLS key file {key} not reloaded, keeping the previous certificate: "
                "not a PEM file (no -----BEGIN line)"
            ) in logged
            # A key of another certificate: named as not matching.
            shutil.copy(old_key, key)
            hangup(broker)
            logged = wait_for_log(broker, "not reloaded", count=2)
            assert (
                f"TLS certificate {cert} not reloaded, keeping the previous one: "
                "the key does not match the certificate"
            ) in logged
            assert presented_certificate(tls_port, new_cert) == (der(new_cert), ACCEPTED_V311)
            established.sendall(PINGREQ)
            assert read_packet_bytes(established) == PINGRESP
        assert "Traceback" not in stderr_of(broker)
        assert broker.stop() == 0


def test_sighup_without_files_is_logged_and_harmless() -> None:
    with ProcessBroker() as broker:
        hangup(broker)
        wait_for_log(broker, "nothing to reload")
        assert connack(broker.port, V311) == ACCEPTED_V311
        assert broker.stop() == 0
