"""The broker's log as an operator reads it: each connection's lines name
its client id, username and address; who closed it and why; a refusal
once; a TLS handshake failure with the peer and the cause; ``-vv`` adds a
packet trace that never shows payloads or passwords; ``--log-file`` and
``--log-format json``.
"""

from __future__ import annotations

import json
import queue
import socket
from pathlib import Path
from typing import Any

from cli_tools import assert_one_line_error, cli
from interop import HOST, import_paho
from test_cli_broker import make_certificate
from test_http_ops import subscribe
from test_interop_broker import WAIT, ProcessBroker

SECRET_PAYLOAD = "SECRET-PAYLOAD-1234"
PASSWORD = "hunter2-password"


def paho_session(port: int, client_id: str, *, username: str | None = None) -> Any:
    """Connect, subscribe, publish at QoS 1, disconnect normally."""
    paho = import_paho()
    client = paho.Client(
        paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5
    )
    if username is not None:
        client.username_pw_set(username, PASSWORD)
    connected: queue.Queue[Any] = queue.Queue()
    received: queue.Queue[Any] = queue.Queue()
    client.on_connect = lambda c, u, flags, code, props: connected.put(code)
    client.on_message = lambda c, u, message: received.put(message)
    client.connect(HOST, port)
    client.loop_start()
    try:
        assert not connected.get(timeout=WAIT).is_failure
        subscribe(client, ("log/+", 1))
        client.publish("log/x", SECRET_PAYLOAD, qos=1).wait_for_publish(WAIT)
        assert received.get(timeout=WAIT).payload == SECRET_PAYLOAD.encode()
    finally:
        client.disconnect()
        client.loop_stop()


def test_json_log_file_names_the_client_and_traces_packets_without_secrets(tmp_path: Path) -> None:
    log = tmp_path / "broker.log"
    with ProcessBroker("-vv", "--log-file", str(log), "--log-format", "json") as broker:
        paho_session(broker.port, "logme", username="ann")
        assert broker.stop() == 0
    assert broker.stderr == ""
    text = log.read_text()
    records = [json.loads(line) for line in text.splitlines()]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    connection = [r["message"] for r in records if r["logger"] == "mqttproto.broker"]
    accepted = [m for m in connection if "CONNECT accepted" in m]
    assert len(accepted) == 1
    assert "127.0.0.1:" in accepted[0]
    assert "(client 'logme', user 'ann')" in accepted[0]
    closed = [m for m in connection if " closed: " in m]
    assert len(closed) == 1
    assert "(client 'logme', user 'ann')" in closed[0]
    assert closed[0].endswith("closed: client sent DISCONNECT NORMAL_DISCONNECTION (0x00)")
    trace = [r["message"] for r in records if r["logger"] == "mqttproto.broker.packets"]
    assert any("-> CONNECT " in m for m in trace)
    assert any("<- CONNACK " in m for m in trace)
    assert any("-> SUBSCRIBE id=" in m for m in trace)
    assert any("-> PUBLISH topic='log/x' qos=1 id=" in m for m in trace)
    assert any("<- PUBLISH topic='log/x' qos=1 id=" in m for m in trace)
    assert any("-> PUBACK id=" in m for m in trace)
    assert any("-> DISCONNECT " in m for m in trace)
    assert all(m.endswith(" bytes") for m in trace)
    assert SECRET_PAYLOAD not in text
    assert PASSWORD not in text


def test_v_logs_connections_without_the_packet_trace() -> None:
    with ProcessBroker("-v") as broker:
        paho_session(broker.port, "quiet")
        assert broker.stop() == 0
    assert "CONNECT accepted" in broker.stderr
    assert "(client 'quiet', anonymous)" in broker.stderr
    assert "mqttproto.broker.packets" not in broker.stderr
    assert "PUBLISH" not in broker.stderr


def test_refused_connect_is_logged_once_with_the_client_and_reason() -> None:
    paho = import_paho()
    with ProcessBroker("--no-allow-anonymous") as broker:
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="intruder", protocol=paho.MQTTv5
        )
        client.username_pw_set("mallory", PASSWORD)
        refused: queue.Queue[Any] = queue.Queue()
        client.on_connect = lambda c, u, flags, code, props: refused.put(code)
        client.connect(HOST, broker.port)
        client.loop_start()
        try:
            assert refused.get(timeout=WAIT).is_failure
        finally:
            client.loop_stop()
            client.disconnect()
        assert broker.stop() == 0
    lines = [line for line in broker.stderr.splitlines() if "intruder" in line]
    assert len(lines) == 1, broker.stderr
    assert "WARNING" in lines[0]
    assert "(client 'intruder', user 'mallory')" in lines[0]
    assert "CONNECT refused: BAD_USER_NAME_OR_PASSWORD (0x86)" in lines[0]
    assert PASSWORD not in broker.stderr


def test_tls_handshake_failure_is_logged_with_peer_and_cause(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    with ProcessBroker("-v", "--certfile", str(cert), "--keyfile", str(key)) as broker:
        with socket.create_connection((HOST, broker.port), timeout=WAIT) as sock:
            # Plain MQTT on the TLS port.
            sock.sendall(b"\x10\x10\x00\x04MQTT\x04\x02\x00\x3c\x00\x04abcd")
            sock.settimeout(WAIT)
            for _ in range(100):
                if not sock.recv(4096):
                    break
            local = sock.getsockname()
        assert broker.stop() == 0
    lines = [line for line in broker.stderr.splitlines() if "TLS handshake failed" in line]
    assert len(lines) == 1, broker.stderr
    assert f"{local[0]}:{local[1]}" in lines[0]
    assert "not a TLS handshake" in lines[0]


def test_unwritable_log_file_is_one_line(tmp_path: Path) -> None:
    target = tmp_path / "missing" / "broker.log"
    assert_one_line_error(
        cli("broker", "--port", "0", "--log-file", str(target)), 1, b"mqttproto broker: --log-file"
    )


def test_log_settings_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text('verbose = 1\nlog_file = "b.log"\nlog-format = "json"\n')
    with ProcessBroker("--config", str(config)) as broker:
        paho_session(broker.port, "tomlish")
        assert broker.stop() == 0
    records = [json.loads(line) for line in (tmp_path / "b.log").read_text().splitlines()]
    assert any("(client 'tomlish', anonymous)" in r["message"] for r in records)
    bad = tmp_path / "bad.toml"
    bad.write_text('log_format = "xml"\n')
    assert_one_line_error(
        cli("broker", "--config", str(bad)), 1, b"mqttproto broker: " + str(bad).encode()
    )
