"""Authentication in the broker servers, on the wire.

- The CLI broker with a password file (``mqttproto passwd``'s default scrypt
  cost) keeps answering a connected client while a burst of CONNECTs for an
  unknown user arrives: the hashes run on worker threads.
- The asyncio, threads and trio servers run deferred authentications on
  their worker threads (a cheaper probe with an authenticator that takes
  its time).
- The failure log line as an operator sees it; an authenticator that
  raises on a worker refuses that client only.
- The knobs on the command line and in ``--config``; the pending bound as a
  client sees it.
- ``--use-identity-as-username`` without a password file: a plain listener
  refuses a username nobody proved; the certificate path still works.

Brokers listen on 127.0.0.1, on ports the system chooses; every process is
stopped and every wait bounded.
"""

from __future__ import annotations

import collections
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from auth_probe import HOST, burst_probe, connect_bytes, recv_exactly
from certs import make_pki
from test_cli_broker_listeners import port_in, read_listening_lines, settings
from test_interop_broker import ROOT, WAIT, ProcessBroker, ThreadedBroker
from test_servers_trio_threads import serving

from mqttproto.auth import (
    AuthResult,
    ConnectInfo,
    DeferredAuthResult,
    IdentityAuthenticator,
    PasswordFile,
)
from mqttproto.cli import broker_auth, main
from mqttproto.config import BrokerConfig
from mqttproto.enums import ProtocolVersion, ReasonCode

#: A connected client's round trip must stay below this during the burst.
RTT_LIMIT = 0.5


@contextmanager
def cli_broker(tmp_path: Path, *args: str) -> Iterator[tuple[int, Path]]:
    """``python -m mqttproto broker`` on a free port; its standard error goes
    to a file (a burst logs more than a pipe holds). Yields (port, log)."""
    log = tmp_path / "broker.log"
    with open(log, "w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "mqttproto", "broker", "--host", HOST, "--port", "0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            cwd=ROOT,
        )
        try:
            assert process.stdout is not None
            lines: collections.deque[str] = collections.deque()
            reader = threading.Thread(target=lambda: lines.append(process.stdout.readline()))
            reader.start()
            reader.join(WAIT)
            line = lines[0] if lines else ""
            assert "listening on" in line, f"no start: {line!r} {log.read_text()}"
            yield int(line.rsplit(":", 1)[1].split()[0]), log
        finally:
            process.terminate()
            try:
                assert process.wait(WAIT) == 0
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait(WAIT)
                assert process.stdout is not None
                process.stdout.close()


def test_cli_broker_serves_a_client_during_a_burst_of_unknown_user_connects(
    tmp_path: Path,
) -> None:
    passwords = PasswordFile()
    passwords.set("alice", "wonderland")  # the default cost: tens of milliseconds
    path = tmp_path / "passwd"
    passwords.save(path)
    with cli_broker(tmp_path, "--password-file", str(path)) as (port, log):
        result = burst_probe(port, "alice", b"wonderland", connects=300)
    assert result.worst < RTT_LIMIT, (
        f"worst round trip {result.worst * 1000:.0f} ms, median {result.median * 1000:.1f} ms"
    )
    answers = collections.Counter(result.answers)
    # Refused as unknown (4), or at once as busy past the pending bound (3),
    # or, arriving after the first failures, held until the connect timeout.
    assert set(answers) <= {3, 4, None}, answers
    assert answers[4] >= 1, answers
    text = log.read_text(encoding="utf-8")
    assert "mqttproto.auth: authentication failed from 127.0.0.1: 1 failure, " in text
    assert "next authentication from there delayed 1.0 s" in text


class SlowAuthenticator:
    """Accepts ``alice``/``right``; every answer takes ``pause`` seconds of
    the thread that computes it, which is recorded."""

    def __init__(self, pause: float) -> None:
        self.pause = pause
        self.threads: list[str] = []

    def authenticate(self, info: ConnectInfo) -> DeferredAuthResult:
        username, password = info.username, info.password

        def compute() -> AuthResult:
            self.threads.append(threading.current_thread().name)
            time.sleep(self.pause)
            if (username, password) == ("alice", b"right"):
                return AuthResult.accept()
            return AuthResult.reject(ReasonCode.BAD_USER_NAME_OR_PASSWORD)

        return DeferredAuthResult(compute)

    def continue_authentication(self, info: ConnectInfo, data: bytes | None) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)


def probe_slow_server(port: int, authenticator: SlowAuthenticator, loop_thread: str) -> None:
    # 20 answers of 50 ms on one worker: a loop that computed them would
    # hold a ping for a second.
    result = burst_probe(port, "alice", b"right", connects=20)
    assert result.worst < RTT_LIMIT, f"worst round trip {result.worst * 1000:.0f} ms"
    assert collections.Counter(result.answers) == {4: 20}
    # Where the answers were computed: trio interleaves the tasks of its
    # connections, so an answer computed on its thread holds each ping for a
    # few answers only (about 200 ms here), but holds it all the same.
    assert len(authenticator.threads) == 21
    assert all(name.startswith("mqttproto-auth") for name in authenticator.threads)
    assert loop_thread not in authenticator.threads


def test_asyncio_server_runs_authentication_off_its_loop() -> None:
    authenticator = SlowAuthenticator(0.05)
    config = BrokerConfig(auth_failure_delay=None)
    with ThreadedBroker(authenticator=authenticator, config=config, auth_workers=1) as broker:
        probe_slow_server(broker.port, authenticator, broker.thread.name)


@pytest.mark.parametrize("kind", ["threads", "trio"])
def test_threads_and_trio_servers_run_authentication_off_their_loop(kind: str) -> None:
    authenticator = SlowAuthenticator(0.05)
    config = BrokerConfig(auth_failure_delay=None)
    with serving(kind, authenticator=authenticator, config=config, auth_workers=1) as server:
        probe_slow_server(server.port, authenticator, "mqttproto-broker")


class BrokenAuthenticator:
    """Its deferred answer raises: a bug in an authenticator."""

    def authenticate(self, info: ConnectInfo) -> AuthResult | DeferredAuthResult:
        if info.username is None:
            return AuthResult.accept()

        def compute() -> AuthResult:
            raise RuntimeError("the directory is down")

        return DeferredAuthResult(compute)

    def continue_authentication(self, info: ConnectInfo, data: bytes | None) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)


@pytest.mark.parametrize("kind", ["threads", "trio"])
def test_an_authenticator_that_raises_on_a_worker_refuses_that_client_only(
    kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(kind, authenticator=BrokenAuthenticator()) as server:
        with socket.create_connection((HOST, server.port), timeout=WAIT) as sock:
            sock.sendall(connect_bytes("broken", "alice", b"pw"))
            # 0x80 Unspecified error: return code 3 in MQTT 3.1.1.
            assert recv_exactly(sock, 4) == b"\x20\x02\x00\x03"
        with socket.create_connection((HOST, server.port), timeout=WAIT) as sock:
            sock.sendall(connect_bytes("anonymous", None, None))
            assert recv_exactly(sock, 4) == b"\x20\x02\x00\x00"
    assert "the authenticator raised for connection" in caplog.text
    assert "the directory is down" in caplog.text


def test_cli_pending_bound_answers_server_unavailable(tmp_path: Path) -> None:
    passwords = PasswordFile()
    passwords.set("alice", "wonderland")
    path = tmp_path / "passwd"
    passwords.save(path)
    args = ("--password-file", str(path), "--max-pending-authentications", "1")
    with cli_broker(tmp_path, *args, "--auth-workers", "1") as (port, _):
        socks = [socket.create_connection((HOST, port), timeout=WAIT) for _ in range(3)]
        try:
            for index, sock in enumerate(socks):
                sock.sendall(connect_bytes(f"c{index}", "alice", b"wonderland"))
            answers = sorted(recv_exactly(sock, 4) for sock in socks)
        finally:
            for sock in socks:
                sock.close()
    # One waits for its hash and is accepted; the others are refused at
    # once with return code 3 (Server unavailable: MQTT 5's 0x89 Server busy).
    assert answers == [b"\x20\x02\x00\x00", b"\x20\x02\x00\x03", b"\x20\x02\x00\x03"]


def test_cli_authentication_settings_from_flags_and_config(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(
        "max-pending-authentications = 8\nauth-failure-delay = 0.5\n"
        "auth_failure_max_delay = 4.0\nauth-failure-decay = 30\n"
        "auth-failure-addresses = 100\nauth-workers = 2\n",
        encoding="utf-8",
    )
    resolved = settings("--config", str(config), "--auth-failure-delay", "2")
    assert (resolved.max_pending_authentications, resolved.auth_failure_delay) == (8, 2.0)
    assert (resolved.auth_failure_max_delay, resolved.auth_failure_decay) == (4.0, 30.0)
    assert (resolved.auth_failure_addresses, resolved.auth_workers) == (100, 2)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--max-pending-authentications", "0"], "max_pending_authentications must be at least 1"),
        (["--auth-failure-delay", "-1"], "auth_failure_delay must be positive or None"),
        (["--auth-failure-delay", "9"], "must not exceed auth_failure_max_delay"),
        (["--auth-workers", "0"], "must be positive"),
    ],
)
def test_cli_authentication_settings_are_checked(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "--port", "0", *argv]) == 1
    assert message in capsys.readouterr().err


def test_cli_auth_workers_from_config_is_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text("auth-workers = 0\n", encoding="utf-8")
    assert main(["broker", "--port", "0", "--config", str(config)]) == 1
    assert "auth_workers must be at least 1" in capsys.readouterr().err


def test_cli_help_names_the_authentication_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in (
        "--max-pending-authentications",
        "--auth-failure-delay",
        "--auth-failure-max-delay",
        "--auth-failure-decay",
        "--auth-failure-addresses",
        "--auth-workers",
    ):
        assert flag in out


# -- --use-identity-as-username without a password file ---------------------------


def info(username: str | None, *, verified: bool = False) -> ConnectInfo:
    return ConnectInfo("c", username, None, ProtocolVersion.MQTT_3_1_1, username_verified=verified)


def test_identity_without_a_password_file_admits_only_verified_usernames() -> None:
    base = ("--certfile", "c.pem", "--cafile", "ca.pem", "--use-identity-as-username")
    authenticator, _ = broker_auth(settings(*base))
    assert isinstance(authenticator, IdentityAuthenticator)
    assert authenticator.authenticate(info("alice")).reason_code is ReasonCode.NOT_AUTHORIZED
    assert authenticator.authenticate(info("alice", verified=True)).accepted
    assert authenticator.authenticate(info(None)).accepted
    strict, _ = broker_auth(settings(*base, "--no-allow-anonymous"))
    assert strict is not None and not strict.authenticate(info(None)).accepted


def test_identity_broker_refuses_an_unproved_username_on_the_plain_listener(
    tmp_path: Path,
) -> None:
    pki = make_pki(tmp_path, client_cn="alice")
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic readwrite alice/#\n", encoding="utf-8")
    args = (
        *("--certfile", str(pki.server_cert), "--keyfile", str(pki.server_key)),
        *("--cafile", str(pki.ca), "--tls-port", "0", "--use-identity-as-username"),
        *("--acl-file", str(acl)),
    )
    with ProcessBroker(*args) as broker:
        (tls_line,) = read_listening_lines(broker, 1)
        tls_port = port_in(tls_line)
        with socket.create_connection((HOST, broker.port), timeout=WAIT) as plain:
            plain.sendall(connect_bytes("typed", "alice", None))
            # Return code 5, not authorized: the name was not proved.
            assert recv_exactly(plain, 4) == b"\x20\x02\x00\x05"
        with socket.create_connection((HOST, broker.port), timeout=WAIT) as anonymous:
            anonymous.sendall(connect_bytes("anon", None, None))
            assert recv_exactly(anonymous, 4) == b"\x20\x02\x00\x00"
        context = ssl.create_default_context(cafile=str(pki.ca))
        context.load_cert_chain(str(pki.client_cert), str(pki.client_key))
        with (
            socket.create_connection((HOST, tls_port), timeout=WAIT) as raw,
            context.wrap_socket(raw, server_hostname=HOST) as tls,
        ):
            tls.sendall(connect_bytes("cert", "mallory", None))
            assert recv_exactly(tls, 4) == b"\x20\x02\x00\x00"
        assert broker.stop() == 0
