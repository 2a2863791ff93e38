"""The deployment page's files (docs/examples/deploy/), checked as far as
this machine allows.

- ``broker.toml`` and ``acl``: served by ``mqttproto broker --config`` with
  a password file and a certificate made as the page says, and used over
  TLS and the Unix socket; the TOML also goes through the broker's loader.
- ``mqttproto.service``: ``systemd-analyze verify`` and ``security``.
- ``Dockerfile``: Docker cannot run here, so its instructions, JSON forms,
  stages and command line are checked, not built.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import trustme
from doc_examples import EXAMPLES, RUN_TIMEOUT, Server, broker_command
from interop import HOST, require_peer

DEPLOY = EXAMPLES / "deploy"


def deployment_folder(tmp_path: Path) -> tuple[Path, trustme.CA]:
    """/etc/mqttproto as deployment.rst makes it, in *tmp_path*."""
    etc = tmp_path / "etc"
    (etc / "tls").mkdir(parents=True)
    shutil.copy(DEPLOY / "broker.toml", etc)
    shutil.copy(DEPLOY / "acl", etc)
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    with (etc / "tls" / "fullchain.pem").open("wb") as out:
        for blob in server_cert.cert_chain_pems:
            out.write(blob.bytes())
    server_cert.private_key_pem.write_to_path(str(etc / "tls" / "privkey.pem"))
    from mqttproto.cli import main

    assert main(["passwd", "-c", "-b", str(etc / "passwd"), "sensor", "sensor-pw"]) == 0
    assert main(["passwd", "-b", str(etc / "passwd"), "display", "display-pw"]) == 0
    for name in ("passwd", "acl", "tls/privkey.pem"):
        (etc / name).chmod(0o640)
    return etc, ca


def test_deployment_configuration_serves(tmp_path: Path) -> None:
    """The deployment's broker.toml, ACL and files, served by ``mqttproto
    broker --config`` (with the address and socket moved into the test's
    reach by flags, which win over the file): TLS with passwords, the ACL,
    the Unix socket, and a clean stop on SIGTERM."""
    from mqttproto.adapters.asyncio import Client, ConnectError, SubscribeError

    etc, ca = deployment_folder(tmp_path)
    socket_path = str(tmp_path / "mqtt.sock")
    command = broker_command("--config", str(etc / "broker.toml"), "--unix", socket_path)
    tls = ssl.create_default_context()
    ca.configure_trust(tls)

    async def clients(port: int) -> None:
        with pytest.raises(ConnectError):
            async with Client(HOST, port, tls=tls):
                pass
        async with (
            Client(HOST, port, tls=tls, username="display", password="display-pw") as display,
            Client(
                socket_path, transport="unix", username="sensor", password="sensor-pw"
            ) as sensor,
        ):
            await display.subscribe("sensors/#", qos=1)
            with pytest.raises(SubscribeError):
                await sensor.subscribe("sensors/#", qos=1)  # the ACL: write only
            await sensor.publish("sensors/hall", b"19.5", qos=1)
            async for message in display.messages():
                assert (message.topic, message.payload) == ("sensors/hall", b"19.5")
                break

    with Server(command) as server:
        port = server.port()
        asyncio.run(asyncio.wait_for(clients(port), RUN_TIMEOUT))
        server.stop(signal.SIGTERM)
    assert any(f"{HOST}:{port} (TLS)" in line for line in server.output)


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """``systemd-analyze verify`` finds nothing to say about the unit, and its
    hardening scores OK (``systemd-analyze security``). The unit names the
    broker at /opt/mqttproto; here it is this environment's console script."""
    analyze = shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"
    require_peer("systemd-analyze", analyze)
    script = Path(sys.executable).parent / "mqttproto"
    assert script.exists(), "the mqttproto console script is not installed next to Python"
    unit = (DEPLOY / "mqttproto.service").read_text()
    assert (
        "ExecStart=/opt/mqttproto/bin/mqttproto broker --config /etc/mqttproto/broker.toml" in unit
    )
    path = tmp_path / "mqttproto.service"
    path.write_text(unit.replace("/opt/mqttproto/bin/mqttproto", str(script)))
    verify = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, timeout=RUN_TIMEOUT
    )
    assert (verify.returncode, verify.stdout, verify.stderr) == (0, "", "")
    security = subprocess.run(
        [analyze, "security", "--offline=yes", str(path)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    match = re.search(
        r"Overall exposure level for mqttproto\.service: ([\d.]+) (\w+)", security.stdout
    )
    assert match is not None, security.stdout + security.stderr
    assert float(match.group(1)) <= 2.0 and match.group(2) == "OK"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, arguments = pending.strip().partition(" ")
        instructions.append((keyword, arguments.strip()))
        pending = ""
    assert not pending, "a continuation line ends the Dockerfile"
    return instructions


def test_dockerfile_is_consistent() -> None:
    """What can be checked without Docker: the instructions, their JSON
    forms, the stages, and that the command it runs is a valid broker
    command line reading its configuration from the volume."""

    from mqttproto.cli import build_parser

    instructions = dockerfile_instructions()
    known = {"FROM", "RUN", "COPY", "USER", "VOLUME", "EXPOSE", "STOPSIGNAL", "ENTRYPOINT", "CMD"}
    assert {keyword for keyword, _ in instructions} <= known
    stages = [
        args.split(" AS ")[1]
        for keyword, args in instructions
        if keyword == "FROM" and " AS " in args
    ]
    assert stages == ["build"]
    copies = [args for keyword, args in instructions if keyword == "COPY"]
    assert copies == [". /src", "--from=build /opt/mqttproto /opt/mqttproto"]
    forms = {
        keyword: json.loads(args)
        for keyword, args in instructions
        if keyword in ("ENTRYPOINT", "CMD", "VOLUME")
    }
    argv = forms["ENTRYPOINT"] + forms["CMD"]
    assert argv[0] == "/opt/mqttproto/bin/mqttproto"
    parsed = build_parser().parse_args(argv[1:])
    assert parsed.config == "/etc/mqttproto/broker.toml"
    assert forms["VOLUME"] == [str(Path(parsed.config).parent)]
    assert dict(instructions)["STOPSIGNAL"] == "SIGTERM"
    assert dict(instructions)["EXPOSE"] == "8883"
    # It installs the websocket extra, and makes the TOML's socket folder.
    runs = [args for keyword, args in instructions if keyword == "RUN"]
    assert any("pip install --no-cache-dir '/src[websocket]'" in args for args in runs)
    toml = (DEPLOY / "broker.toml").read_text()
    assert 'unix = "/run/mqttproto/mqtt.sock"' in toml
    assert any("/run/mqttproto" in args for args in runs)


def test_deployment_toml_loads_with_the_brokers_loader() -> None:
    from mqttproto._cli_config import config_from
    from mqttproto.cli import broker_settings, build_parser

    path = DEPLOY / "broker.toml"
    settings = broker_settings(build_parser().parse_args(["broker", "--config", str(path)]))
    config = config_from(settings)
    assert (settings.host, settings.port, settings.tls_port) == ("0.0.0.0", 8883, None)
    assert settings.certfile == str(DEPLOY / "tls" / "fullchain.pem")
    assert settings.password_file == str(DEPLOY / "passwd")
    assert settings.allow_anonymous is False
    assert config.max_connections == 10000 and config.memory_limit == 268435456
