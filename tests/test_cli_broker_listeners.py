"""``mqttproto broker``: --config (TOML), and the TLS, WebSocket and Unix listeners.

Settings are checked in-process; the listeners through a broker process
(``ProcessBroker``, stopped by its handle) reached by mosquitto_pub over TLS
with a client certificate, paho-mqtt over WebSocket and raw bytes on a Unix
socket.
"""

from __future__ import annotations

import argparse
import queue
import socket
from pathlib import Path

import pytest
from certs import make_pki
from interop import HOST, MOSQUITTO_PUB, import_paho, run_mosquitto_client
from test_interop_broker import WAIT, ProcessBroker

from mqttproto.cli import broker_settings, build_parser, main


def settings(*argv: str) -> argparse.Namespace:
    return broker_settings(build_parser().parse_args(["broker", *argv]))


def test_config_file_sets_everything_and_flags_override_it(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(
        "\n".join(
            [
                'host = "127.0.0.2"',
                "port = 1884",
                "tls-port = 8884",
                "ws_port = 8080",
                'unix = "mqtt.sock"',
                'certfile = "/etc/cert.pem"',
                'keyfile = "key.pem"',
                'cafile = "ca.pem"',
                "require-certificate = true",
                "use-identity-as-username = true",
                "allow-anonymous = false",
                "verbose = 1",
                "max-packet-size = 4096",
                "sys-interval = 10",
                "max-buffered-output = 65536",
            ]
        ),
        encoding="utf-8",
    )
    resolved = settings("--config", str(config))
    assert (resolved.host, resolved.port, resolved.tls_port, resolved.ws_port) == (
        "127.0.0.2",
        1884,
        8884,
        8080,
    )
    # Relative file names are relative to the configuration file.
    assert resolved.unix == str(tmp_path / "mqtt.sock")
    assert resolved.keyfile == str(tmp_path / "key.pem")
    assert resolved.certfile == "/etc/cert.pem"
    assert resolved.require_certificate is True
    assert resolved.use_identity_as_username is True
    assert resolved.allow_anonymous is False
    assert (resolved.verbose, resolved.max_packet_size) == (1, 4096)
    assert resolved.sys_interval == 10.0
    assert resolved.max_buffered_output == 65536
    flags = settings(
        "--config", str(config), "--port", "1999", "--allow-anonymous", "--tls-key", "k.pem"
    )
    assert (flags.port, flags.allow_anonymous, flags.keyfile) == (1999, True, "k.pem")
    assert flags.tls_port == 8884


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("port = 'x'", "port must be an integer, not 'x'"),
        ("colour = 1", "unknown setting 'colour'"),
        ("require-certificate = 1", "must be true or false"),
        ("port = ", "not valid TOML"),
    ],
)
def test_config_file_errors_exit_1(
    tmp_path: Path, text: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(text + "\n", encoding="utf-8")
    assert main(["broker", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("mqttproto broker: ")
    assert message in err


def test_missing_wsproto_or_bad_unix_path_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["broker", "--port", "0", "--unix", "/nonexistent/dir/mqtt.sock"]) == 1
    assert "cannot listen" in capsys.readouterr().err


def read_listening_lines(broker: ProcessBroker, count: int) -> list[str]:
    lines = []
    for _ in range(count):
        line = broker.lines.get(timeout=WAIT)
        assert line is not None and "listening on" in line, line
        lines.append(line)
    return lines


def port_in(line: str) -> int:
    # "mqttproto broker listening on 127.0.0.1:PORT (KIND)"
    return int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])


def test_broker_process_serves_tls_with_identity_websocket_and_unix(tmp_path: Path) -> None:
    paho = import_paho()
    pki = make_pki(tmp_path)
    unix_path = tmp_path / "mqtt.sock"
    acl = tmp_path / "acl"
    acl.write_text("topic read #\nuser device-7\ntopic write devices/7/#\n", encoding="utf-8")
    config = tmp_path / "broker.toml"
    config.write_text(
        "\n".join(
            [
                f'certfile = "{pki.server_cert.name}"',
                f'keyfile = "{pki.server_key.name}"',
                f'cafile = "{pki.ca.name}"',
                "require-certificate = true",
                "use-identity-as-username = true",
                "tls-port = 0",
                "ws-port = 0",
                'unix = "mqtt.sock"',
                'acl-file = "acl"',
            ]
        ),
        encoding="utf-8",
    )
    with ProcessBroker("--config", str(config)) as broker:
        tls_line, ws_line, unix_line = read_listening_lines(broker, 3)
        assert tls_line.endswith("(TLS)") and ws_line.endswith("(WebSocket)")
        assert unix_line == f"mqttproto broker listening on {unix_path} (Unix socket)"
        tls_port, ws_port = port_in(tls_line), port_in(ws_line)
        assert len({broker.port, tls_port, ws_port}) == 3

        received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        subscribed: queue.Queue[int] = queue.Queue()
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="ws-sub", transport="websockets"
        )
        client.on_message = lambda c, u, m: received.put((m.topic, m.payload))
        client.on_subscribe = lambda c, u, mid, codes, props: subscribed.put(mid)
        client.connect(HOST, ws_port, keepalive=30)
        client.loop_start()
        try:
            client.subscribe("devices/#", qos=1)
            subscribed.get(timeout=WAIT)
            # The certificate's CN (device-7) may write devices/7/#; the
            # username mosquitto_pub sends is ignored.
            result = run_mosquitto_client(
                MOSQUITTO_PUB,
                [
                    *("-h", HOST, "-p", str(tls_port), "--cafile", str(pki.ca)),
                    *("--cert", str(pki.client_cert), "--key", str(pki.client_key)),
                    *("-u", "mallory", "-t", "devices/7/temp", "-m", "21.5", "-q", "1"),
                ],
            )
            assert result.returncode == 0, result.stderr
            assert received.get(timeout=WAIT) == ("devices/7/temp", b"21.5")
            # Over the Unix socket, raw MQTT 3.1.1: anonymous may not write.
            with socket.socket(socket.AF_UNIX) as raw:
                raw.settimeout(WAIT)
                raw.connect(str(unix_path))
                raw.sendall(bytes.fromhex("100f00044d5154540402003c0003726177"))
                assert raw.recv(4) == bytes.fromhex("20020000")
                # PUBLISH devices/9 "x" (denied: dropped), then PINGREQ.
                raw.sendall(bytes.fromhex("300c0009") + b"devices/9" + b"x" + bytes.fromhex("c000"))
                assert raw.recv(2) == bytes.fromhex("d000")
            with pytest.raises(queue.Empty):
                received.get(timeout=0.5)
        finally:
            client.disconnect()
            client.loop_stop()
        assert broker.stop() == 0
    assert not unix_path.exists()
