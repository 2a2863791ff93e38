"""``mqttproto broker``: option handling (in-process) and a TLS listener (a process).

Serving itself is exercised through a real process in
``tests/test_interop_broker.py``; here are the refusals that must happen
before anything listens, and what the options turn into.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import ssl
import subprocess
from pathlib import Path

import pytest
from interop import HOST, require_peer

from mqttproto.auth import AclAuthorizer, ConnectInfo, PasswordAuthenticator
from mqttproto.cli import broker_auth, broker_settings, build_parser, main
from mqttproto.enums import ProtocolVersion

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["broker", *argv])


def info(username: str | None = None, password: bytes | None = None) -> ConnectInfo:
    return ConnectInfo("c", username, password, ProtocolVersion.MQTT_5_0)


def settings(*argv: str) -> argparse.Namespace:
    return broker_settings(parse(*argv))


def test_defaults() -> None:
    resolved = settings()
    assert (resolved.host, resolved.port, resolved.verbose) == ("127.0.0.1", 1883, 0)
    assert resolved.allow_anonymous is None
    assert (resolved.tls_port, resolved.ws_port, resolved.unix) == (None, None, None)
    assert broker_auth(resolved) == (None, None)
    assert settings("-vv").verbose == 2


def test_no_anonymous_without_a_password_file_admits_nobody() -> None:
    authenticator, _ = broker_auth(settings("--no-allow-anonymous"))
    assert isinstance(authenticator, PasswordAuthenticator)
    assert not authenticator.authenticate(info()).accepted
    assert not authenticator.authenticate(info("u", b"p")).accepted


def test_password_file_refuses_anonymous_unless_allowed(tmp_path: Path) -> None:
    passwords = tmp_path / "passwords"
    assert main(["passwd", "-c", "-b", str(passwords), "alice", "secret"]) == 0
    authenticator, _ = broker_auth(settings("--password-file", str(passwords)))
    assert isinstance(authenticator, PasswordAuthenticator)
    assert authenticator.authenticate(info("alice", b"secret")).accepted
    assert not authenticator.authenticate(info("alice", b"wrong")).accepted
    assert not authenticator.authenticate(info()).accepted
    allowing, _ = broker_auth(settings("--password-file", str(passwords), "--allow-anonymous"))
    assert allowing is not None and allowing.authenticate(info()).accepted


def test_acl_file(tmp_path: Path) -> None:
    acl = tmp_path / "acl"
    acl.write_text("topic read public/#\n", encoding="utf-8")
    _, authorizer = broker_auth(settings("--acl-file", str(acl)))
    assert isinstance(authorizer, AclAuthorizer)
    assert authorizer.may_subscribe("c", None, "public/x")
    assert not authorizer.may_publish("c", None, "public/x")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--tls-key", "key.pem"], "--keyfile needs --certfile"),
        (["--tls-port", "0"], "--tls-port needs --certfile"),
        (["--certfile", "c.pem", "--require-certificate"], "--require-certificate needs --cafile"),
        (["--certfile", "c.pem", "--use-identity-as-username"], "needs --cafile"),
        (["--config", "/nonexistent/broker.toml"], "No such file"),
        (["--password-file", "/nonexistent/passwords"], "No such file"),
        (["--acl-file", "/nonexistent/acl"], "No such file"),
        (["--tls-cert", "/nonexistent/cert.pem"], "TLS:"),
        (["--max-packet-size", "1"], "max_packet_size"),
        (["--sys-interval", "0"], "must be positive"),
    ],
)
def test_refusals_exit_1_before_listening(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "--port", "0", *argv]) == 1
    assert message in capsys.readouterr().err


def test_address_in_use_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        port = taken.getsockname()[1]
        # SO_REUSEADDR does not allow two listeners on one port.
        assert main(["broker", "--host", HOST, "--port", str(port)]) == 1
    assert "cannot listen" in capsys.readouterr().err


def make_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (openssl, EC P-256, one day)."""
    require_peer("openssl", OPENSSL)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            OPENSSL,
            *("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key


def test_tls_listener(tmp_path: Path) -> None:
    from test_interop_broker import ProcessBroker

    cert, key = make_certificate(tmp_path)
    context = ssl.create_default_context(cafile=str(cert))

    async def connect(port: int) -> bytes:
        reader, writer = await asyncio.open_connection(HOST, port, ssl=context)
        # CONNECT 3.1.1, client id "tls"; CONNACK accepted is 20 02 00 00.
        writer.write(bytes.fromhex("100f00044d5154540402003c0003746c73"))
        connack = await asyncio.wait_for(reader.readexactly(4), 10)
        writer.close()
        return connack

    with ProcessBroker("--tls-cert", str(cert), "--tls-key", str(key)) as broker:
        assert asyncio.run(asyncio.wait_for(connect(broker.port), 20)) == bytes.fromhex("20020000")
        assert broker.stop() == 0


# -- every BrokerConfig setting on the command line and in TOML --------------------------


def test_every_broker_config_field_has_a_flag_a_toml_key_and_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import attrs

    from mqttproto._cli_broker import SETTINGS
    from mqttproto._cli_config import HELP, config_from
    from mqttproto.config import BrokerConfig

    fields = [f.name for f in attrs.fields(BrokerConfig)]
    assert sorted(HELP) == sorted(fields)
    assert set(fields) <= set(SETTINGS)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["broker", "--help"])
    help_text = capsys.readouterr().out
    for name in fields:
        assert "--" + name.replace("_", "-") in help_text, name
    # Given nothing, the library's defaults apply.
    assert config_from(settings()) == BrokerConfig()


def test_limits_from_flags_and_from_toml(tmp_path: Path) -> None:
    from mqttproto._cli_config import config_from

    config = tmp_path / "broker.toml"
    config.write_text(
        "\n".join(
            [
                "max-queued-bytes = 1000",
                'memory_limit = "none"',
                "retain-available = false",
                'session-identity-mismatch = "discard"',
                "connect_timeout = 2.5",
                "max-session-expiry-interval = 3600",
            ]
        ),
        encoding="utf-8",
    )
    resolved = config_from(settings("--config", str(config)))
    assert resolved.max_queued_bytes == 1000
    assert resolved.memory_limit is None
    assert resolved.retain_available is False
    assert resolved.session_identity_mismatch == "discard"
    assert resolved.connect_timeout == 2.5
    assert resolved.max_session_expiry_interval == 3600
    # Flags win over the file; "none" lifts a limit, mosquitto's spelling works.
    flags = config_from(
        settings(
            "--config",
            str(config),
            "--memory-limit",
            "5000",
            "--max-session-expiry-interval",
            "none",
            "--retain-available",
            "--message-size-limit",
            "4096",
        )
    )
    assert (flags.memory_limit, flags.max_session_expiry_interval) == (5000, None)
    assert flags.retain_available is True
    assert flags.max_packet_size == 4096


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--memory-limit", "lots"], "--memory-limit: must be an integer or none, not 'lots'"),
        (["--max-queued-bytes", "none"], "--max-queued-bytes: must be an integer, not 'none'"),
        (["--max-queued-bytes", "0"], "max_queued_bytes must be at least 1, not 0"),
        (["--session-identity-mismatch", "ignore"], "invalid choice: 'ignore'"),
        (["--connect-timeout", "-1"], "connect_timeout must be positive or None"),
    ],
)
def test_bad_limits_are_one_line_naming_the_setting(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["broker", "--port", "0", *argv]) == 1
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("memory-limit = 1.5", 'memory-limit must be an integer or "none", not 1.5'),
        ("max-queued-bytes = 'none'", "max-queued-bytes must be an integer, not 'none'"),
        ("retain-available = 'no'", "retain-available must be true or false"),
        ("session-identity-mismatch = 'x'", "must be 'refuse' or 'discard', not 'x'"),
    ],
)
def test_bad_limits_in_toml_are_one_line_naming_the_file_and_key(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(text + "\n", encoding="utf-8")
    assert main(["broker", "--port", "0", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"mqttproto broker: {config}: ")
    assert message in err
    assert len(err.strip().splitlines()) == 1
