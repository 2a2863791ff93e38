"""The documentation's examples run as the pages show them.

Every file under ``docs/examples/`` is included whole into a page
(``literalinclude``) and run by a test: here the Python examples of the
codec, client, broker, authentication and installation pages, as scripts in a child process
against the project's broker (``python -m mqttproto broker``, or the broker
examples themselves) on 127.0.0.1 and a port the system chose, told where by
the environment as a reader would; the shell example with the mosquitto
clients; the TOML and ACL files with the project's own loaders. The deployment page's
files are in tests/test_doc_deployment.py. Helpers: tests/doc_examples.py.

The guard tests at the end keep it so: no page has an inline Python block,
every included file exists, and every example is run by a test.
"""

from __future__ import annotations

import importlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from doc_examples import (
    DOCS,
    EXAMPLES,
    RUN_TIMEOUT,
    Server,
    at,
    broker_command,
    child_env,
    run_example,
)
from interop import HOST, MOSQUITTO_PUB, MOSQUITTO_SUB, require_peer

from mqttproto.auth import PasswordFile


@pytest.fixture(scope="module")
def broker() -> Iterator[int]:
    """The port of ``python -m mqttproto broker`` on 127.0.0.1."""
    with Server(broker_command()) as server:
        yield server.port()
        server.stop()


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
        found = server.wait_for(r"listening on (\S+) \((.+)\)", count=4)
        where = {match.group(2): match.group(1) for match in found}
        assert set(where) == {"TCP", "TLS", "WebSocket", "Unix socket"}
        assert where["Unix socket"] == socket_path
        ports = {kind: int(where[kind].rsplit(":", 1)[1]) for kind in ("TCP", "TLS", "WebSocket")}
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


# -- authentication and authorization (broker-auth.rst) ---------------------------------


def test_password_file_in_code(tmp_path: Path) -> None:
    """A new file (mode 0600), then an existing one (another user, mode
    0644, which loses its permissions for others: 0640), every entry
    verifying."""
    path = tmp_path / "passwd"
    out = run_example("auth_password_file.py", MQTT_PASSWORD_FILE=str(path))
    assert out.splitlines() == [
        f"saved {path}: mode 0600, users carol",
        "carol, her password: SUCCESS",
        "carol, a guess: BAD_USER_NAME_OR_PASSWORD",
    ]
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert PasswordFile.load(path).verify("carol", "s3cret")

    existing = PasswordFile()
    existing.set("dave", "d4ve")
    path.write_text(existing.dump())
    path.chmod(0o644)
    out = run_example("auth_password_file.py", MQTT_PASSWORD_FILE=str(path), MQTT_PASSWORD="n3w")
    assert out.splitlines()[0] == f"saved {path}: mode 0640, users dave, carol"
    assert os.stat(path).st_mode & 0o777 == 0o640
    saved = PasswordFile.load(path)
    assert saved.verify("dave", "d4ve") and saved.verify("carol", "n3w")
    assert not saved.verify("carol", "s3cret")
    assert [p.name for p in tmp_path.iterdir()] == ["passwd"]  # no temporary file left


def test_identity_authenticator() -> None:
    assert run_example("auth_identity.py").splitlines() == [
        "alice (certificate): accepted",
        "mallory (typed alice): refused, NOT_AUTHORIZED",
        "anonymous: refused, NOT_AUTHORIZED",
    ]


def test_driving_the_broker_with_a_worker_pool() -> None:
    assert run_example("auth_worker_pool.py").splitlines() == [
        "alice: accepted",
        "mallory: refused, BAD_USER_NAME_OR_PASSWORD",
        "authentication failed from 203.0.113.9: 1 failure(s), next authentication from"
        " there delayed 1.0 s",
    ]


def test_acl_authorizer(tmp_path: Path) -> None:
    """The page's ACL file, then one with an error, named by its line."""
    assert run_example("auth_acl.py").splitlines() == [
        "True",
        "False",
        "False",
        "False",
        "True",
        "False",
        "True",
    ]
    acl = tmp_path / "acl"
    acl.write_text("user alice\ntopic read alice/#/inbox\n")
    with pytest.raises(AssertionError, match="ACL file line 2: topic filter"):
        run_example("auth_acl.py", MQTT_ACL_FILE=str(acl))


def test_token_authenticator() -> None:
    assert run_example("auth_token.py").splitlines() == [
        "good token: accepted",
        "bad token: refused, BAD_USER_NAME_OR_PASSWORD",
    ]


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


# -- the guards ------------------------------------------------------------------------

#: Every example file, and the test that runs (or loads) it: "module.function".
RUN_BY = {
    "own_server.py": "test_own_server.test_paho_clients_publish_subscribe_and_unsubscribe",
    "codec_packets.py": "test_doc_examples.test_codec_packets",
    "codec_stream.py": "test_doc_examples.test_codec_stream",
    "codec_user_properties.py": "test_doc_examples.test_codec_user_properties",
    "client_loop.py": "test_doc_examples.test_client_loop",
    "asyncio_client.py": "test_doc_examples.test_asyncio_client",
    "asyncio_request_response.py": "test_doc_examples.test_asyncio_request_response",
    "asyncio_reconnect.py": "test_doc_examples.test_asyncio_reconnect",
    "asyncio_tls.py": "test_doc_examples.test_broker_listeners_and_the_transport_examples",
    "asyncio_websocket.py": "test_doc_examples.test_broker_listeners_and_the_transport_examples",
    "asyncio_unix.py": "test_doc_examples.test_broker_listeners_and_the_transport_examples",
    "trio_client.py": "test_doc_examples.test_trio_client",
    "threads_client.py": "test_doc_examples.test_threads_client",
    "auth_broker.py": "test_doc_examples.test_enhanced_authentication",
    "auth_asyncio.py": "test_doc_examples.test_enhanced_authentication",
    "auth_threads.py": "test_doc_examples.test_enhanced_authentication",
    "broker_sans_io.py": "test_doc_examples.test_broker_sans_io",
    "broker_asyncio.py": "test_doc_examples.test_broker_servers",
    "broker_trio.py": "test_doc_examples.test_broker_servers",
    "broker_threads.py": "test_doc_examples.test_broker_servers",
    "broker_listeners.py": "test_doc_examples.test_broker_listeners_and_the_transport_examples",
    "try_broker.sh": "test_doc_examples.test_try_broker_with_the_mosquitto_clients",
    "broker.toml": "test_doc_examples.test_broker_toml_loads_with_the_brokers_loader",
    "check_install.py": "test_doc_examples.test_check_install",
    "bridge_asyncio.py": "test_bridge_mosquitto.test_doc_example_bridge_asyncio_against_mosquitto",
    "bridge_edge.toml": (
        "test_bridge_mosquitto.test_doc_example_bridge_edge_toml_loads_with_the_brokers_loader"
    ),
    "auth_password_file.py": "test_doc_examples.test_password_file_in_code",
    "auth_identity.py": "test_doc_examples.test_identity_authenticator",
    "auth_worker_pool.py": "test_doc_examples.test_driving_the_broker_with_a_worker_pool",
    "acl": "test_doc_examples.test_acl_authorizer",
    "auth_acl.py": "test_doc_examples.test_acl_authorizer",
    "auth_token.py": "test_doc_examples.test_token_authenticator",
    "deploy/broker.toml": "test_doc_deployment.test_deployment_configuration_serves",
    "deploy/acl": "test_doc_deployment.test_deployment_configuration_serves",
    "deploy/mqttproto.service": "test_doc_deployment.test_systemd_unit_verifies",
    "deploy/Dockerfile": "test_doc_deployment.test_dockerfile_is_consistent",
}


def checked_pages() -> list[Path]:
    return sorted(DOCS.glob("*.rst"))


def test_every_example_is_run_by_a_test() -> None:
    for test in set(RUN_BY.values()):
        module, _, function = test.partition(".")
        assert callable(getattr(importlib.import_module(module), function, None)), test
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
    for page in checked_pages():
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
    for page in checked_pages():
        for number, line in enumerate(page.read_text().splitlines(), 1):
            where = f"{page.name}:{number}"
            assert not re.match(r"\s*\.\. code-block::\s*(python|py|pycon)?\s*$", line), where
            assert not re.match(r"\s*\.\. (code|sourcecode)::", line), where
            stripped = line.rstrip()
            if stripped.endswith("::") and not stripped.lstrip().startswith(".."):
                pytest.fail(f"{where}: a '::' literal block")
