"""The documentation's examples run as the pages show them.

Every file under ``docs/examples/`` is included whole into a page
(``literalinclude``) and run here: the Python examples as scripts in a child
process, against the project's broker (``python -m mqttproto broker``, or
the broker examples themselves) on 127.0.0.1 and a port the system chose,
told where by the environment (``MQTT_HOST``, ``MQTT_PORT``, ...) as a
reader would; the shell example with the mosquitto clients; the TOML files
with the broker's own loader; the systemd unit with ``systemd-analyze``.
Every child process has a bounded run time and is stopped through its handle.

The guard tests at the end keep it so: no page (but those of other owners:
``cli.rst``, ``security.rst``, ``broker-auth.rst``) has an inline Python
block, every included file exists, and every example is run by a test here.
"""

from __future__ import annotations

import asyncio
import os
import queue
import re
import shutil
import signal
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from interop import HOST, MOSQUITTO_PUB, MOSQUITTO_SUB, require_peer

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
EXAMPLES = DOCS / "examples"
#: Seconds an example may run; each one takes well under one.
RUN_TIMEOUT = 60.0
#: Seconds a server example may take to listen, and to stop.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0


def child_env(**variables: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(variables)
    return env


def run_example(name: str, cwd: Path | None = None, **variables: str) -> str:
    """Run ``docs/examples/<name>``; its standard output (it must exit 0)."""
    path = EXAMPLES / name
    command = ["/bin/sh", str(path)] if name.endswith(".sh") else [sys.executable, str(path)]
    done = subprocess.run(
        command,
        env=child_env(**variables),
        cwd=cwd or ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert done.returncode == 0, f"{name} exited {done.returncode}:\n{done.stderr}"
    return done.stdout


class Server:
    """A long-running example (or ``python -m mqttproto broker``) in a child
    process: started, read as it prints, stopped with a signal."""

    def __init__(self, command: list[str], **variables: str) -> None:
        self.command = command
        self.env = child_env(**variables)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.process: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []

    @classmethod
    def example(cls, name: str, **variables: str) -> Server:
        return cls([sys.executable, str(EXAMPLES / name)], **variables)

    def __enter__(self) -> Server:
        self.process = subprocess.Popen(
            self.command,
            env=self.env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        return self

    def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip("\n"))
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_stderr(self) -> None:
        assert self.process is not None and self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def wait_for(self, pattern: str, count: int = 1) -> list[re.Match[str]]:
        """The first *count* lines matching *pattern*, as they are printed."""
        found: list[re.Match[str]] = []
        while len(found) < count:
            try:
                line = self.lines.get(timeout=START_TIMEOUT)
            except queue.Empty:
                line = None
            if line is None:
                self.stop(expect=None)
                pytest.fail(f"{self.command} printed no {pattern!r}; stderr:\n{self.stderr}")
            match = re.search(pattern, line)
            if match:
                found.append(match)
        return found

    def port(self) -> int:
        return int(self.wait_for(r"listening on (?:port |\S+:)(\d+)")[0].group(1))

    def stop(self, signum: int = signal.SIGTERM, expect: int | None = 0) -> int | None:
        """Send *signum*, wait (bounded; kill past it); check the exit status."""
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signum)
        try:
            status = process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)
            pytest.fail(f"{self.command} did not stop on signal {signum}")
        if expect is not None:
            assert status == expect, f"exit status {status}; stderr:\n{self.stderr}"
        return status

    def __exit__(self, *exc_info: object) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.kill()
            process.wait(STOP_TIMEOUT)


def broker_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "mqttproto", "broker", "--host", HOST, "--port", "0", *args]


@pytest.fixture(scope="module")
def broker() -> Iterator[int]:
    """The port of ``python -m mqttproto broker`` on 127.0.0.1."""
    with Server(broker_command()) as server:
        yield server.port()
        server.stop()


def at(port: int) -> dict[str, str]:
    return {"MQTT_HOST": HOST, "MQTT_PORT": str(port)}


# -- the sans-IO codec (quickstart.rst) ------------------------------------------------


def test_codec_packets() -> None:
    assert run_example("codec_packets.py").startswith("52 bytes: 32 32 00 14 73 65 6e")


def test_codec_stream(broker: int) -> None:
    assert run_example("codec_stream.py", **at(broker)) == (
        "CONNACK: SUCCESS session present: False\n"
    )


def test_codec_user_properties() -> None:
    out = run_example("codec_user_properties.py")
    assert out == "refused: more than 64 user properties; kept 65\n"


# -- the sans-IO client loop (client-loop.rst) -----------------------------------------


def test_client_loop(broker: int) -> None:
    assert run_example("client_loop.py", **at(broker)) == "received: [b'hello, sans-IO']\n"


# -- the clients (clients.rst) ---------------------------------------------------------


def test_asyncio_client(broker: int) -> None:
    assert run_example("asyncio_client.py", **at(broker)).splitlines() == [
        "granted: ['GRANTED_QOS_1']",
        "acknowledged: SUCCESS",
        "message: sensors/kitchen b'21.5' 1 False",
        "alert: alerts/door b'open'",
    ]


def test_asyncio_request_response(broker: int) -> None:
    out = run_example("asyncio_request_response.py", **at(broker))
    assert re.fullmatch(r"the time is \d\d:\d\d:\d\d on caller/responses\n", out)


def test_asyncio_reconnect(broker: int) -> None:
    assert run_example("asyncio_reconnect.py", **at(broker)).splitlines() == [
        "session present: False",
        "published",
    ]


def test_trio_client(broker: int) -> None:
    lines = run_example("trio_client.py", **at(broker)).splitlines()
    assert lines[0] == "message: sensors/hall b'19.0'"
    assert re.fullmatch(r"the time is \d\d:\d\d:\d\d", lines[1]) and len(lines) == 2


def test_threads_client(broker: int) -> None:
    lines = run_example("threads_client.py", **at(broker)).splitlines()
    assert lines[:2] == ["message: sensors/kitchen b'21.5'", "alert: alerts/smoke b'kitchen'"]
    assert re.fullmatch(r"the time is \d\d:\d\d:\d\d", lines[2]) and len(lines) == 3


@pytest.mark.parametrize("client", ["auth_asyncio.py", "auth_threads.py"])
def test_enhanced_authentication(client: str) -> None:
    """auth_broker.py serves; each client example authenticates, re-authenticates
    and shows a refusal. A broker each: refusals delay the next exchange."""
    expected = {
        "auth_asyncio.py": [
            "authenticated with MQTTPROTO-HMAC-SHA256",
            "re-authenticated: MQTTPROTO-HMAC-SHA256",
            "refused: NOT_AUTHORIZED",
        ],
        "auth_threads.py": [
            "re-authenticated: MQTTPROTO-HMAC-SHA256",
            "re-authentication refused: NOT_AUTHORIZED",
        ],
    }
    secret = {"MQTT_SECRET": "s3cret"}
    with Server.example("auth_broker.py", MQTT_HOST=HOST, MQTT_PORT="0", **secret) as server:
        port = server.port()
        assert run_example(client, **at(port), **secret).splitlines() == expected[client]
        # Another secret than the broker's: refused at CONNECT.
        with pytest.raises(AssertionError, match="NOT_AUTHORIZED"):
            run_example(client, **at(port), MQTT_SECRET="wrong")
        server.stop()
    assert server.output[-1] == "stopped"


# -- the broker servers (broker.rst) ---------------------------------------------------


def test_broker_sans_io() -> None:
    assert run_example("broker_sans_io.py").splitlines() == [
        "display got sensors/kitchen b'21.5'",
        "subscribers of sensors/kitchen: [('display', <QoS.AT_MOST_ONCE: 0>)]",
        "connections left: 0",
    ]


@pytest.mark.parametrize("example", ["broker_asyncio.py", "broker_trio.py", "broker_threads.py"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_broker_servers(example: str, signum: int) -> None:
    """Each serves the client loop, and stops cleanly on the signal."""
    with Server.example(example, MQTT_HOST=HOST, MQTT_PORT="0") as server:
        port = server.port()
        assert run_example("client_loop.py", **at(port)) == "received: [b'hello, sans-IO']\n"
        server.stop(signum)
    assert server.output[-1] == "stopped"


def test_broker_listeners_and_the_transport_examples(tmp_path: Path) -> None:
    """broker_listeners.py on TCP, TLS with a client certificate, WebSocket
    and a Unix socket; the TLS, WebSocket and Unix client examples use it."""
    ca = trustme.CA()
    files = {
        "ca": tmp_path / "ca.pem",
        "cert": tmp_path / "server.pem",
        "key": tmp_path / "server.key",
        "client": tmp_path / "client.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    with files["cert"].open("wb") as out:
        for blob in server_cert.cert_chain_pems:
            out.write(blob.bytes())
    client_cert = ca.issue_cert("alice@example.org", common_name="alice")
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    socket_path = str(tmp_path / "mqtt.sock")
    with Server.example(
        "broker_listeners.py",
        MQTT_HOST=HOST,
        MQTT_PORT="0",
        MQTT_TLS_PORT="0",
        MQTT_WS_PORT="0",
        MQTT_SOCKET=socket_path,
        MQTT_CERTFILE=str(files["cert"]),
        MQTT_KEYFILE=str(files["key"]),
        MQTT_CAFILE=str(files["ca"]),
    ) as server:
        lines = [m.group(0) for m in server.wait_for(r"listening on .*", count=4)]
        ports = {
            kind: int(port)
            for port, kind in (
                re.search(r":(\d+) \((\w+)", line).groups()  # type: ignore[union-attr]
                for line in lines[:3]
            )
        }
        assert lines[3] == f"listening on {socket_path} (Unix socket)"
        assert set(ports) == {"TCP", "TLS", "WebSocket"}
        assert run_example("client_loop.py", **at(ports["TCP"])) == (
            "received: [b'hello, sans-IO']\n"
        )
        out = run_example(
            "asyncio_tls.py",
            **at(ports["TLS"]),
            MQTT_CAFILE=str(files["ca"]),
            MQTT_CLIENT_CERTFILE=str(files["client"]),
        )
        assert out == "received: tls/hello over TLS\n"
        # Without a client certificate the server ends the handshake.
        with pytest.raises(AssertionError, match="exited 1"):
            run_example("asyncio_tls.py", **at(ports["TLS"]), MQTT_CAFILE=str(files["ca"]))
        out = run_example("asyncio_websocket.py", **at(ports["WebSocket"]))
        assert out == "received: ws/hello over WebSocket\n"
        out = run_example("asyncio_unix.py", MQTT_SOCKET=socket_path)
        assert out == "received: unix/hello over a Unix socket\n"
        server.stop()
    assert server.output[-1] == "stopped"


def test_try_broker_with_the_mosquitto_clients(broker: int) -> None:
    require_peer("mosquitto_pub", MOSQUITTO_PUB)
    require_peer("mosquitto_sub", MOSQUITTO_SUB)
    assert run_example("try_broker.sh", **at(broker)) == "demo/hello hello, broker\n"


def test_broker_toml_loads_with_the_brokers_loader() -> None:
    from mqttproto._cli_broker import _check_tls_settings
    from mqttproto._cli_config import config_from
    from mqttproto.cli import broker_settings, build_parser

    path = EXAMPLES / "broker.toml"
    settings = broker_settings(build_parser().parse_args(["broker", "--config", str(path)]))
    _check_tls_settings(settings)
    config = config_from(settings)
    assert (settings.port, settings.tls_port, settings.ws_port) == (1883, 8883, 8080)
    assert settings.certfile == str(EXAMPLES / "server.pem")  # relative to the file
    assert settings.unix == "/run/mqttproto/mqtt.sock"
    assert settings.require_certificate and settings.use_identity_as_username
    assert settings.allow_anonymous is False and settings.verbose == 1
    assert config.memory_limit is None and config.max_queued_bytes == 1048576
    assert config.max_pending_authentications == 64 and config.auth_failure_delay == 1.0


# -- installation (install.rst) --------------------------------------------------------


def test_check_install() -> None:
    lines = run_example("check_install.py").splitlines()
    import mqttproto

    assert lines[0] == f"mqttproto {mqttproto.__version__}"
    assert lines[1] == f"codec: {mqttproto.codec_implementation()}"
    assert lines[2:] == [
        "the websocket extra (wsproto): installed",
        "the trio extra (trio): installed",
    ]
    pure = subprocess.run(
        [sys.executable, str(EXAMPLES / "check_install.py")],
        env=child_env(MQTTPROTO_PURE_PYTHON="1"),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
    )
    assert pure.returncode == 0 and pure.stdout.splitlines()[1] == "codec: python"


# -- deployment (deployment.rst) -------------------------------------------------------

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


def test_systemd_unit_verifies() -> None:
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
    with_script = unit.replace("/opt/mqttproto/bin/mqttproto", str(script))
    work = Path(os.environ.get("TMPDIR", "/tmp"))
    directory = Path(
        subprocess.check_output(["mktemp", "-d", str(work / "unit-XXXXXX")], text=True).strip()
    )
    try:
        path = directory / "mqttproto.service"
        path.write_text(with_script)
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
    finally:
        shutil.rmtree(directory)


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
    import json

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


# -- the guards ------------------------------------------------------------------------

#: Pages other people own; their examples are theirs to convert.
NOT_MINE = {"cli.rst", "security.rst", "broker-auth.rst"}
#: Every example file, and the test that runs (or loads) it.
RUN_BY = {
    "codec_packets.py": test_codec_packets,
    "codec_stream.py": test_codec_stream,
    "codec_user_properties.py": test_codec_user_properties,
    "client_loop.py": test_client_loop,
    "asyncio_client.py": test_asyncio_client,
    "asyncio_request_response.py": test_asyncio_request_response,
    "asyncio_reconnect.py": test_asyncio_reconnect,
    "asyncio_tls.py": test_broker_listeners_and_the_transport_examples,
    "asyncio_websocket.py": test_broker_listeners_and_the_transport_examples,
    "asyncio_unix.py": test_broker_listeners_and_the_transport_examples,
    "trio_client.py": test_trio_client,
    "threads_client.py": test_threads_client,
    "auth_broker.py": test_enhanced_authentication,
    "auth_asyncio.py": test_enhanced_authentication,
    "auth_threads.py": test_enhanced_authentication,
    "broker_sans_io.py": test_broker_sans_io,
    "broker_asyncio.py": test_broker_servers,
    "broker_trio.py": test_broker_servers,
    "broker_threads.py": test_broker_servers,
    "broker_listeners.py": test_broker_listeners_and_the_transport_examples,
    "try_broker.sh": test_try_broker_with_the_mosquitto_clients,
    "broker.toml": test_broker_toml_loads_with_the_brokers_loader,
    "check_install.py": test_check_install,
    "deploy/broker.toml": test_deployment_configuration_serves,
    "deploy/acl": test_deployment_configuration_serves,
    "deploy/mqttproto.service": test_systemd_unit_verifies,
    "deploy/Dockerfile": test_dockerfile_is_consistent,
}


def my_pages() -> list[Path]:
    return sorted(p for p in DOCS.glob("*.rst") if p.name not in NOT_MINE)


def test_every_example_is_run_by_a_test() -> None:
    files = {
        str(path.relative_to(EXAMPLES))
        for path in EXAMPLES.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert files == set(RUN_BY)


def test_every_example_is_shown_whole_on_a_page() -> None:
    """Each example is included by a page, whole (no :lines: and the like),
    and every included file exists."""
    included: set[str] = set()
    for page in my_pages():
        text = page.read_text()
        pattern = r"^( *)\.\. literalinclude:: (\S+)\n((?:\1   .*\n)*)"
        for match in re.finditer(pattern, text, re.M):
            _, target, options = match.groups()
            assert (DOCS / target).is_file(), f"{page.name} includes a missing {target}"
            assert not re.search(
                r":(lines|start-after|end-before|pyobject|emphasize-lines):", options
            ), f"{page.name} shows part of {target}"
            included.add(str((DOCS / target).relative_to(EXAMPLES)))
    assert included == set(RUN_BY)


def test_no_page_has_an_inline_python_block() -> None:
    """Literal blocks are files (literalinclude) or explicit non-Python
    code-blocks (console commands, text output); a bare ``::`` block would
    be highlighted as Python."""
    for page in my_pages():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            where = f"{page.name}:{number}"
            assert not re.match(r"\s*\.\. code-block::\s*(python|py|pycon)?\s*$", line), where
            assert not re.match(r"\s*\.\. (code|sourcecode)::", line), where
            stripped = line.rstrip()
            if stripped.endswith("::") and not stripped.lstrip().startswith(".."):
                pytest.fail(f"{where}: a '::' literal block")
