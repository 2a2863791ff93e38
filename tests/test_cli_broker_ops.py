"""``mqttproto broker`` as a mosquitto user runs it: ``--version``, the limits
under mosquitto's names (``--max-keepalive`` and its meaning), the TLS
WebSocket listener, WebSocket paths and the empty username.

Every broker is a process (``ProcessBroker``, stopped by its handle) on
127.0.0.1, reached with raw MQTT bytes (decoded by the codec), raw HTTP and
paho-mqtt. SIGHUP is in ``test_cli_broker_reload.py``.
"""

from __future__ import annotations

import queue
import socket
import ssl
from pathlib import Path

import pytest
from cli_tools import assert_one_line_error, cli
from interop import HOST, import_paho
from test_cli_broker import make_certificate
from test_interop_broker import WAIT, ProcessBroker

from mqttproto import __version__
from mqttproto.codec import codec_implementation, decode_packet, encode_packet
from mqttproto.enums import ProtocolVersion, ReasonCode
from mqttproto.packets import ConnAckPacket, ConnectPacket, Packet

V311 = ProtocolVersion.MQTT_3_1_1
V5 = ProtocolVersion.MQTT_5_0
PINGREQ, PINGRESP = bytes.fromhex("c000"), bytes.fromhex("d000")


# -- raw MQTT over a socket ------------------------------------------------------------


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    for _ in range(size):
        if len(data) == size:
            break
        chunk = sock.recv(size - len(data))
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def read_packet_bytes(sock: socket.socket) -> bytes:
    """One whole MQTT packet, as it came."""
    head = recv_exactly(sock, 2)
    length, shift, lengths = head[1] & 0x7F, 7, head[1:]
    for _ in range(3):
        if lengths[-1] < 0x80:
            break
        lengths += recv_exactly(sock, 1)
        length += (lengths[-1] & 0x7F) << shift
        shift += 7
    return head[:1] + lengths + recv_exactly(sock, length)


def read_packet(sock: socket.socket, version: ProtocolVersion = V5) -> Packet:
    return decode_packet(read_packet_bytes(sock), version=version)


def open_mqtt(port: int, context: ssl.SSLContext | None = None) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=WAIT)
    if context is not None:
        sock = context.wrap_socket(sock, server_hostname=HOST)
    return sock


def connect(
    port: int,
    version: ProtocolVersion = V5,
    *,
    keep_alive: int = 60,
    client_id: str = "raw",
    username: str | None = None,
    password: bytes | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[socket.socket, bytes]:
    """A connection that sent CONNECT, and the CONNACK it got (its bytes)."""
    sock = open_mqtt(port, context)
    packet = ConnectPacket(
        client_id, version, keep_alive=keep_alive, username=username, password=password
    )
    sock.sendall(encode_packet(packet, version=version))
    return sock, read_packet_bytes(sock)


def connack(port: int, version: ProtocolVersion = V5, **kwargs: object) -> bytes:
    sock, answer = connect(port, version, **kwargs)  # type: ignore[arg-type]
    sock.close()
    return answer


def connack_v5(port: int, **kwargs: object) -> ConnAckPacket:
    packet = decode_packet(connack(port, V5, **kwargs), version=V5)
    assert isinstance(packet, ConnAckPacket)
    return packet


ACCEPTED_V311 = bytes.fromhex("20020000")
IDENTIFIER_REJECTED_V311 = bytes.fromhex("20020002")
NOT_AUTHORIZED_V311 = bytes.fromhex("20020005")


# -- --version -------------------------------------------------------------------------


@pytest.mark.parametrize("command", [[], ["broker"], ["pub"], ["sub"], ["rr"], ["passwd"]])
def test_version_on_every_command_names_the_codec(command: list[str]) -> None:
    result = cli(*command, "--version")
    assert (result.returncode, result.stderr) == (0, b"")
    expected = f"mqttproto {__version__} (codec: {codec_implementation()})\n"
    assert result.stdout.decode() == expected


# -- --max-keepalive and the other mosquitto limits -------------------------------------


def test_max_keepalive_is_server_keep_alive_for_v5_and_refuses_longer_v311() -> None:
    with ProcessBroker("--max-keepalive", "60") as broker:
        # Paho's test_server_keep_alive: keep-alive 120 asked, 60 imposed.
        assert connack_v5(broker.port, keep_alive=120).server_keep_alive == 60
        assert connack_v5(broker.port, keep_alive=0).server_keep_alive == 60
        within = connack_v5(broker.port, keep_alive=30)
        assert (within.reason_code, within.server_keep_alive) == (ReasonCode.SUCCESS, None)
        # 3.1.1 cannot be told: refused, return code 2, as mosquitto 2.0;
        # no keep-alive (0) is admitted, and held to 60 s silently.
        assert connack(broker.port, V311, keep_alive=120) == IDENTIFIER_REJECTED_V311
        assert connack(broker.port, V311, keep_alive=60) == ACCEPTED_V311
        assert connack(broker.port, V311, keep_alive=0) == ACCEPTED_V311
        assert broker.stop() == 0


def test_paho_v5_client_is_told_server_keep_alive() -> None:
    paho = import_paho()
    with ProcessBroker("--max-keepalive", "60") as broker:
        connected: queue.Queue[object] = queue.Queue()
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="ka", protocol=paho.MQTTv5)
        client.on_connect = lambda c, u, flags, code, props: connected.put(props)
        client.connect(HOST, broker.port, keepalive=120)
        client.loop_start()
        try:
            properties = connected.get(timeout=WAIT)
        finally:
            client.disconnect()
            client.loop_stop()
        assert properties.ServerKeepAlive == 60  # type: ignore[attr-defined]
        assert broker.stop() == 0


def test_max_keepalive_zero_is_no_maximum_as_in_mosquitto(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text("max_keepalive = 0\n", encoding="utf-8")
    with ProcessBroker("--config", str(config)) as broker:
        assert connack(broker.port, V311, keep_alive=65535) == ACCEPTED_V311
        assert connack_v5(broker.port, keep_alive=3600).server_keep_alive is None
        # No maximum: keep-alive 0 (none) is allowed, not raised to 65535.
        assert connack_v5(broker.port, keep_alive=0).server_keep_alive is None
        assert broker.stop() == 0


def test_mosquitto_limits_from_toml_on_the_wire(tmp_path: Path) -> None:
    """mosquitto's names in TOML: the CONNACK says them, the broker keeps them."""
    config = tmp_path / "broker.toml"
    config.write_text(
        "\n".join(
            [
                "max_keepalive = 30",
                "message_size_limit = 4096",
                "retain_available = false",
                "max_connections = 2",
                "max_inflight_messages = 2",
                "max_queued_messages = 10",
            ]
        ),
        encoding="utf-8",
    )
    with ProcessBroker("--config", str(config)) as broker:
        ack = connack_v5(broker.port, keep_alive=60)
        assert ack.server_keep_alive == 30
        assert ack.maximum_packet_size == 4096
        assert ack.retain_available is False
        assert_max_inflight(broker.port, 2)
        assert broker.stop() == 0


def test_mosquitto_limits_from_flags_on_the_wire() -> None:
    with ProcessBroker(
        "--max-connections",
        "1",
        "--max-inflight-messages",
        "3",
        "--message-size-limit",
        "2048",
        "--no-retain-available",
    ) as broker:
        first, answer = connect(broker.port, client_id="first")
        try:
            ack = decode_packet(answer, version=V5)
            assert isinstance(ack, ConnAckPacket)
            assert (ack.maximum_packet_size, ack.retain_available) == (2048, False)
            # One connection is open: the next is over max_connections.
            refused = connack_v5(broker.port, client_id="second")
            assert refused.reason_code == ReasonCode.QUOTA_EXCEEDED
        finally:
            first.close()
        assert broker.stop() == 0
    with ProcessBroker("--max-inflight-messages", "3", "--max-queued-messages", "5") as broker:
        assert_max_inflight(broker.port, 3)
        assert broker.stop() == 0


def assert_max_inflight(port: int, limit: int) -> None:
    """A subscriber that acknowledges nothing gets ``limit`` QoS 1 messages
    of the ``limit + 2`` published, then its PINGRESP, then one more per PUBACK."""
    sub, answer = connect(port, V311, client_id="slow", keep_alive=20)
    publisher, _ = connect(port, V311, client_id="pub", keep_alive=20)
    try:
        assert answer == ACCEPTED_V311
        # SUBSCRIBE id 1, "q" at QoS 1 -> SUBACK granting 1.
        sub.sendall(bytes.fromhex("820600010001") + b"q" + b"\x01")
        assert read_packet_bytes(sub) == bytes.fromhex("9003000101")
        for packet_id in range(1, limit + 3):
            # PUBLISH QoS 1 "q" -> PUBACK: the broker has routed it.
            publisher.sendall(bytes.fromhex("320600017100") + bytes((packet_id,)) + b"m")
            assert read_packet_bytes(publisher) == bytes((0x40, 2, 0, packet_id))
        got = [read_packet_bytes(sub) for _ in range(limit)]
        assert all(packet[0] == 0x32 for packet in got)
        sub.sendall(PINGREQ)
        assert read_packet_bytes(sub) == PINGRESP  # nothing more in flight
        sub.sendall(bytes.fromhex("4002") + got[0][5:7])  # PUBACK the first
        assert read_packet_bytes(sub)[0] == 0x32
    finally:
        sub.close()
        publisher.close()


def test_one_setting_under_two_names_in_toml_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "broker.toml"
    config.write_text("max_keepalive = 60\nmax-keep-alive = 30\n", encoding="utf-8")
    result = cli("broker", "--port", "0", "--config", str(config))
    assert_one_line_error(result, 1, f"mqttproto broker: {config}: ".encode())
    assert b"max-keep-alive and max_keepalive are the same setting" in result.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--max-keepalive", "70000"],
            b"max_keep_alive must be between 0 (no maximum) and 65535, not 70000",
        ),
        (["--max-keep-alive", "-1"], b"between 0 (no maximum) and 65535, not -1"),
        (["--max-keepalive", "soon"], b"--max-keepalive: must be an integer, not 'soon'"),
        (["--max-inflight-messages", "0"], b"max_inflight_messages must be"),
        (["--max-connections", "many"], b"must be an integer or none, not 'many'"),
    ],
)
def test_bad_mosquitto_limits_are_one_line(argv: list[str], message: bytes) -> None:
    result = cli("broker", "--port", "0", *argv)
    assert_one_line_error(result, 1, b"mqttproto broker")
    assert message in result.stderr


# -- WebSocket: any path by default, --ws-path, and --wss-port ----------------------------

UPGRADE = (
    "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: mqtt\r\n\r\n"
)


def http_status(port: int, path: str) -> str:
    """The status line the broker answers a WebSocket upgrade to ``path`` with."""
    with socket.create_connection((HOST, port), timeout=WAIT) as sock:
        sock.sendall(UPGRADE.format(path=path).encode())
        answer = b""
        for _ in range(100):
            if b"\r\n" in answer:
                break
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    return answer.split(b"\r\n", 1)[0].decode()


def listener_port(broker: ProcessBroker, kind: str) -> int:
    """The port of the listener the broker printed as ``(kind)``."""
    for _ in range(8):
        line = broker.lines.get(timeout=WAIT)
        assert line is not None, "no more listeners"
        if line.endswith(f"({kind})"):
            return int(line.split("listening on ", 1)[1].split()[0].rsplit(":", 1)[1])
    raise AssertionError(f"no {kind} listener")


def test_websocket_accepts_any_path_by_default() -> None:
    with ProcessBroker("--ws-port", "0") as broker:
        port = listener_port(broker, "WebSocket")
        for path in ("/", "/mqtt", "/ws/anything?x=1"):
            assert http_status(port, path) == "HTTP/1.1 101 Switching Protocols", path
        assert broker.stop() == 0


def test_ws_path_requires_that_path(tmp_path: Path) -> None:
    with ProcessBroker("--ws-port", "0", "--ws-path", "/mqtt") as broker:
        port = listener_port(broker, "WebSocket")
        assert http_status(port, "/mqtt") == "HTTP/1.1 101 Switching Protocols"
        assert http_status(port, "/mqtt?token=1") == "HTTP/1.1 101 Switching Protocols"
        assert http_status(port, "/").startswith("HTTP/1.1 404")
        assert http_status(port, "/other").startswith("HTTP/1.1 404")
        assert broker.stop() == 0
    config = tmp_path / "broker.toml"
    config.write_text('ws_port = 0\nws_path = "/live"\n', encoding="utf-8")
    with ProcessBroker("--config", str(config)) as broker:
        port = listener_port(broker, "WebSocket")
        assert http_status(port, "/live") == "HTTP/1.1 101 Switching Protocols"
        assert http_status(port, "/mqtt").startswith("HTTP/1.1 404")
        assert broker.stop() == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--ws-port", "0", "--ws-path", "mqtt"], b"ws_path must be a path such as /mqtt"),
        (["--ws-path", "/mqtt"], b"--ws-path needs --ws-port or --wss-port"),
        (["--wss-port", "0"], b"--wss-port needs --certfile"),
        (["--wss-port", "70000"], b"mqttproto broker: error: argument --wss-port"),
    ],
)
def test_bad_websocket_settings_are_one_line(argv: list[str], message: bytes) -> None:
    result = cli("broker", "--port", "0", *argv)
    assert_one_line_error(result, 1, b"mqttproto broker: ")
    assert message in result.stderr


def test_wss_port_serves_paho_over_tls_websocket(tmp_path: Path) -> None:
    paho = import_paho()
    cert, key = make_certificate(tmp_path)
    config = tmp_path / "broker.toml"
    config.write_text(
        f'certfile = "{cert}"\nkeyfile = "{key}"\ntls_port = 0\nwss_port = 0\n', encoding="utf-8"
    )
    with ProcessBroker("--config", str(config)) as broker:
        tls_port = listener_port(broker, "TLS")
        wss_port = listener_port(broker, "WebSocket over TLS")
        received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        subscribed: queue.Queue[int] = queue.Queue()
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id="wss-sub", transport="websockets"
        )
        client.tls_set(ca_certs=str(cert))
        client.ws_set_options(path="/")
        client.on_message = lambda c, u, m: received.put((m.topic, m.payload))
        client.on_subscribe = lambda c, u, mid, codes, props: subscribed.put(mid)
        client.connect(HOST, wss_port, keepalive=30)
        client.loop_start()
        try:
            client.subscribe("wss/#", qos=1)
            subscribed.get(timeout=WAIT)
            # Published over plain TCP and over TLS: one broker behind them all.
            publisher, _ = connect(broker.port, V311, client_id="tcp-pub")
            with publisher:
                publisher.sendall(bytes.fromhex("300a0005") + b"wss/a" + b"tcp")
                publisher.sendall(PINGREQ)
                assert read_packet_bytes(publisher) == PINGRESP
            context = ssl.create_default_context(cafile=str(cert))
            tls_publisher, answer = connect(tls_port, V311, client_id="tls-pub", context=context)
            with tls_publisher:
                assert answer == ACCEPTED_V311
                tls_publisher.sendall(bytes.fromhex("300a0005") + b"wss/b" + b"tls")
                tls_publisher.sendall(PINGREQ)
                assert read_packet_bytes(tls_publisher) == PINGRESP
            got = {received.get(timeout=WAIT), received.get(timeout=WAIT)}
            assert got == {("wss/a", b"tcp"), ("wss/b", b"tls")}
        finally:
            client.disconnect()
            client.loop_stop()
        assert broker.stop() == 0


# -- the empty username ------------------------------------------------------------------


@pytest.mark.parametrize("allow_anonymous", [True, False])
def test_empty_username_is_anonymous_with_a_password_file(
    tmp_path: Path, allow_anonymous: bool
) -> None:
    passwords = tmp_path / "passwords"
    made = cli("passwd", "-c", "-b", str(passwords), "alice", "secret")
    assert made.returncode == 0, made.stderr
    # Anonymous clients may read "open/#" and nothing else.
    acl = tmp_path / "acl"
    acl.write_text("topic read open/#\nuser alice\ntopic readwrite #\n", encoding="utf-8")
    flag = "--allow-anonymous" if allow_anonymous else "--no-allow-anonymous"
    # Refusals from one address are slowed down, doubling: kept short here.
    quick = ("--auth-failure-delay", "0.001", "--auth-failure-max-delay", "0.01")
    with ProcessBroker(
        "--password-file", str(passwords), "--acl-file", str(acl), flag, *quick
    ) as broker:
        for password in (None, b"", b"anything"):
            v311 = connack(broker.port, V311, username="", password=password)
            v5 = connack_v5(broker.port, username="", password=password)
            if allow_anonymous:
                assert v311 == ACCEPTED_V311
                assert v5.reason_code == ReasonCode.SUCCESS
            else:
                assert v311 == NOT_AUTHORIZED_V311
                assert v5.reason_code == ReasonCode.NOT_AUTHORIZED
        # The same answer as no username at all, and users still need their password.
        no_username = connack(broker.port, V311)
        assert no_username == (ACCEPTED_V311 if allow_anonymous else NOT_AUTHORIZED_V311)
        assert connack(broker.port, V311, username="alice", password=b"x") == bytes.fromhex(
            "20020004"
        )
        assert connack(broker.port, V311, username="alice", password=b"secret") == ACCEPTED_V311
        if allow_anonymous:
            # The anonymous ACL rules apply: "open/#" granted, "closed" refused.
            sock, _ = connect(broker.port, V311, username="", password=b"pw")
            with sock:
                sock.sendall(bytes.fromhex("820b00010006") + b"open/x" + b"\x00")  # SUBSCRIBE
                assert read_packet_bytes(sock) == bytes.fromhex("9003000100")
                sock.sendall(bytes.fromhex("820b00020006") + b"closed" + b"\x00")
                assert read_packet_bytes(sock) == bytes.fromhex("9003000280")
        assert broker.stop() == 0
