"""The broker's HTTP listener (``--http-port``) as an operator uses it:
``/metrics`` read by prometheus_client's own parser after real paho-mqtt
traffic, the admin API (sessions, subscribers with wildcards and shared
groups, retained sizes, kicking a client), ``mqttproto ctl``, the bearer
token, the refusals of the flags, and the request bounds.

Every broker is a process on 127.0.0.1 with ports the system chose, stopped
by its handle; every wait is bounded.
"""

from __future__ import annotations

import json
import queue
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from cli_tools import ROOT, assert_one_line_error, cli
from interop import HOST, import_paho
from prometheus_client.parser import text_string_to_metric_families
from test_interop_broker import WAIT, ProcessBroker

from mqttproto.adapters._metrics import METRIC_NAMES

TOKEN = "s3cret-token"


class HttpBroker(ProcessBroker):
    """A broker process with ``--http-port 0``; :attr:`http_port` is the port."""

    def __enter__(self) -> HttpBroker:
        super().__enter__()
        self.http_port = 0
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            if line is None:
                break
            if line.endswith("(HTTP)"):
                self.http_port = int(line.rsplit(":", 1)[1].split()[0])
                return self
        self.stop()
        pytest.fail(f"no HTTP listener announced; stderr:\n{self.stderr}")


def http(
    broker: HttpBroker, path: str, *, method: str = "GET", token: str | None = None
) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(f"http://{HOST}:{broker.http_port}{path}", method=method)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def get_json(broker: HttpBroker, path: str, **kwargs: Any) -> Any:
    status, headers, body = http(broker, path, **kwargs)
    assert status == 200, body
    assert headers["Content-Type"] == "application/json"
    return json.loads(body)


@contextmanager
def paho_client(
    broker: ProcessBroker, client_id: str, *, v5: bool = True
) -> Iterator[tuple[Any, queue.Queue[Any]]]:
    """A connected paho client; its messages arrive in the queue."""
    paho = import_paho()
    protocol = paho.MQTTv5 if v5 else paho.MQTTv311
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    messages: queue.Queue[Any] = queue.Queue()
    connected: queue.Queue[object] = queue.Queue()
    client.on_connect = lambda c, u, flags, code, props: connected.put(code)
    client.on_message = lambda c, u, message: messages.put(message)
    client.connect(HOST, broker.port)
    client.loop_start()
    try:
        assert not connected.get(timeout=WAIT).is_failure
        yield client, messages
    finally:
        client.disconnect()
        client.loop_stop()


def subscribe(client: Any, *filters: tuple[str, int]) -> None:
    done: queue.Queue[object] = queue.Queue()
    client.on_subscribe = lambda c, u, mid, codes, props: done.put(codes)
    client.subscribe(list(filters))
    done.get(timeout=WAIT)


def metrics(broker: HttpBroker) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` as prometheus_client parses it: (sample name, labels) -> value."""
    status, headers, body = http(broker, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_metrics_parse_and_count_the_paho_traffic_sent() -> None:
    with HttpBroker("--http-port", "0") as broker:
        with paho_client(broker, "sub") as (sub, received), paho_client(broker, "pub") as (pub, _):
            subscribe(sub, ("t/#", 1))
            for n in range(3):
                pub.publish("t/zero", f"m{n}", qos=0)
            for n in range(2):
                pub.publish("t/one", f"q{n}", qos=1).wait_for_publish(WAIT)
            pub.publish("nobody/listens", b"x", qos=1).wait_for_publish(WAIT)
            payloads = sorted(received.get(timeout=WAIT).payload for _ in range(5))
            assert payloads == [b"m0", b"m1", b"m2", b"q0", b"q1"]
            samples = metrics(broker)
        names = {name for name, _ in samples}
        for name in METRIC_NAMES:
            assert name in names, name
        assert samples[("mqttproto_clients_connected", ())] == 2
        assert samples[("mqttproto_connections_total", ())] == 2
        assert samples[("mqttproto_messages_received_total", (("qos", "0"),))] == 3
        assert samples[("mqttproto_messages_received_total", (("qos", "1"),))] == 3
        assert samples[("mqttproto_messages_received_total", (("qos", "2"),))] == 0
        assert samples[("mqttproto_messages_sent_total", (("qos", "0"),))] == 3
        assert samples[("mqttproto_messages_sent_total", (("qos", "1"),))] == 2
        dropped = {
            dict(labels)["reason"]: value
            for (name, labels), value in samples.items()
            if name == "mqttproto_messages_dropped_total"
        }
        assert dropped == {
            "no_subscribers": 1,
            "queue_full": 0,
            "expired": 0,
            "too_large": 0,
            "not_authorized": 0,
        }
        assert samples[("mqttproto_subscriptions", ())] == 1
        assert samples[("mqttproto_retained_messages", ())] == 0
        assert samples[("mqttproto_sessions", (("state", "online"),))] == 2
        assert samples[("mqttproto_sessions", (("state", "offline"),))] == 0
        # CONNECT, SUBSCRIBE and PUBLISH bytes in; CONNACK, SUBACK, PUBACK, PUBLISH out.
        assert samples[("mqttproto_bytes_received_total", ())] > 6 * 10
        assert samples[("mqttproto_bytes_sent_total", ())] > 5 * 10
        assert broker.stop() == 0


def test_admin_api_sessions_subscribers_retained_and_kick() -> None:
    with HttpBroker("--http-port", "0") as broker:
        with (
            paho_client(broker, "alice") as (alice, _),
            paho_client(broker, "bob", v5=False) as (bob, _),
            paho_client(broker, "carol") as (carol, _),
        ):
            subscribe(alice, ("sensors/+/temp", 1), ("sensors/#", 0))
            subscribe(bob, ("$share/workers/sensors/#", 1))
            subscribe(carol, ("$share/workers/sensors/#", 0))
            carol.publish("sensors/1/temp", b"21.5", qos=1, retain=True).wait_for_publish(WAIT)

            sessions = {s["client_id"]: s for s in get_json(broker, "/api/v1/sessions")}
            assert set(sessions) == {"alice", "bob", "carol"}
            alice_session = sessions["alice"]
            assert alice_session["connected"] is True
            assert alice_session["protocol_version"] == "5.0"
            assert sessions["bob"]["protocol_version"] == "3.1.1"
            assert alice_session["address"].startswith("127.0.0.1:")
            assert alice_session["subscriptions"] == [
                {"topic_filter": "sensors/+/temp", "qos": 1},
                {"topic_filter": "sensors/#", "qos": 0},
            ]
            assert {"queued", "inflight", "expires_in", "username"} <= set(alice_session)

            found = get_json(broker, "/api/v1/subscribers?topic=sensors/1/temp")
            plain = [r for r in found if "client_id" in r]
            groups = [r for r in found if "group" in r]
            assert sorted((r["client_id"], r["topic_filter"], r["qos"]) for r in plain) == [
                ("alice", "sensors/#", 0),
                ("alice", "sensors/+/temp", 1),
            ]
            assert len(groups) == 1
            assert groups[0]["group"] == "workers"
            assert groups[0]["topic_filter"] == "$share/workers/sensors/#"
            assert sorted(m["client_id"] for m in groups[0]["members"]) == ["bob", "carol"]
            assert get_json(broker, "/api/v1/subscribers?topic=other") == []

            retained = get_json(broker, "/api/v1/retained?filter=sensors/%23")
            assert retained == [
                {"topic": "sensors/1/temp", "size": 4, "qos": 1, "expires_in": None}
            ]
            assert b"21.5" not in http(broker, "/api/v1/retained?filter=%23")[2]

            # Kick alice (MQTT 5): DISCONNECT 0x98, then her session is gone.
            reasons: queue.Queue[Any] = queue.Queue()
            alice.on_disconnect = lambda c, u, flags, code, props: reasons.put(code)
            status, _, body = http(broker, "/api/v1/sessions/alice", method="DELETE")
            assert (status, json.loads(body)) == (200, {"client_id": "alice", "disconnected": True})
            assert reasons.get(timeout=WAIT).value == 0x98
            alice.reconnect_delay_set(120, 120)  # no reconnection during the rest of the test
            sessions_after = {s["client_id"] for s in get_json(broker, "/api/v1/sessions")}
            assert "alice" not in sessions_after
        assert broker.stop() == 0


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/subscribers", "topic"),
        ("/api/v1/subscribers?topic=a/%23", "topic"),
        ("/api/v1/subscribers?topic=a&topic=b", "topic"),
        ("/api/v1/retained", "filter"),
        ("/api/v1/retained?filter=a/%23/b", "filter"),
    ],
)
def test_bad_query_parameter_is_a_400_naming_it(path: str, parameter: str) -> None:
    with HttpBroker("--http-port", "0") as broker:
        status, headers, body = http(broker, path)
        assert status == 400
        assert headers["Content-Type"] == "application/json"
        error = json.loads(body)
        assert error["status"] == 400 and error["parameter"] == parameter
        assert parameter in error["error"]
        assert http(broker, "/nothing/here")[0] == 404
        assert http(broker, "/api/v1/sessions", method="POST")[0] == 405
        assert http(broker, "/api/v1/sessions/nobody", method="DELETE")[0] == 404


def test_token_guards_everything_but_metrics_unless_asked() -> None:
    with HttpBroker("--http-port", "0", "--http-token", TOKEN) as broker:
        status, headers, body = http(broker, "/api/v1/sessions")
        assert status == 401 and headers["WWW-Authenticate"] == "Bearer"
        assert json.loads(body)["status"] == 401
        assert http(broker, "/api/v1/sessions", token="wrong")[0] == 401
        assert http(broker, "/", token="wrong")[0] == 401
        assert http(broker, "/api/v1/sessions", token=TOKEN)[0] == 200
        assert http(broker, f"/?token={TOKEN}")[0] == 200
        assert http(broker, "/metrics")[0] == 200
    with HttpBroker("--http-port", "0", "--http-token", TOKEN, "--http-token-metrics") as broker:
        assert http(broker, "/metrics")[0] == 401
        assert http(broker, "/metrics", token=TOKEN)[0] == 200


def test_ctl_commands_and_their_exit_statuses() -> None:
    with HttpBroker("--http-port", "0", "--http-token", TOKEN) as broker:
        port = str(broker.http_port)
        with paho_client(broker, "dave") as (dave, _):
            subscribe(dave, ("a/+", 1))
            dave.publish("a/b", b"12345", retain=True).wait_for_publish(WAIT)
            auth = ["ctl", "--http-port", port, "--http-token", TOKEN]
            result = cli(*auth, "sessions")
            assert result.returncode == 0, result.stderr
            assert result.stdout.startswith(b"dave\t")
            assert b"a/+@1" in result.stdout
            result = cli(*auth, "subscribers", "a/b")
            assert (result.returncode, result.stdout) == (0, b"dave\ta/+\tQoS 1\n")
            result = cli(*auth, "retained", "#")
            assert (result.returncode, result.stdout) == (0, b"a/b\t5 bytes\tQoS 0\n")
            assert_one_line_error(
                cli("ctl", "--http-port", port, "sessions"), 1, b"mqttproto ctl: HTTP 401"
            )
            assert_one_line_error(cli(*auth, "kick", "nobody"), 2, b"mqttproto ctl: HTTP 404")
            assert_one_line_error(
                cli(*auth, "subscribers", "a/#"), 1, b"mqttproto ctl: HTTP 400: topic"
            )
            result = cli(*auth, "kick", "dave")
            assert (result.returncode, result.stdout) == (0, b"disconnected dave\n")
        assert broker.stop() == 0
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        free = str(sock.getsockname()[1])
    assert_one_line_error(
        cli("ctl", "--http-port", free, "sessions"), 1, b"mqttproto ctl: cannot reach the broker"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--http-host", "0.0.0.0", "--http-port", "0"], b"mqttproto broker: --http-host 0.0.0.0"),
        (["--http-token", "x"], b"mqttproto broker: --http-token needs --http-port"),
        (["--http-port", "0", "--http-token-metrics"], b"mqttproto broker: --http-token-metrics"),
        (["--http-port", "0", "--http-token", ""], b"mqttproto broker: --http-token must"),
    ],
)
def test_bad_http_flags_are_one_line(argv: list[str], message: bytes) -> None:
    assert_one_line_error(cli("broker", "--port", "0", *argv), 1, message)


def test_http_settings_from_toml(tmp_path: Any) -> None:
    config = tmp_path / "broker.toml"
    config.write_text(f'http_port = 0\nhttp-token = "{TOKEN}"\nhttp_token_metrics = true\n')
    with HttpBroker("--config", str(config)) as broker:
        assert http(broker, "/metrics")[0] == 401
        assert http(broker, "/metrics", token=TOKEN)[0] == 200


def test_missing_h11_is_one_line_naming_the_extra(tmp_path: Any) -> None:
    # A package named h11 that cannot be imported stands for a missing one.
    (tmp_path / "h11.py").write_text("raise ImportError('no h11 here')\n")
    result = subprocess.run(
        [sys.executable, "-m", "mqttproto", "broker", "--port", "0", "--http-port", "0"],
        capture_output=True,
        timeout=WAIT,
        cwd=ROOT,
        env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert_one_line_error(result, 1, b"mqttproto broker: --http-port needs h11")
    assert b"mqttproto[http]" in result.stderr


def read_all(sock: socket.socket) -> bytes:
    sock.settimeout(WAIT)
    chunks = []
    for _ in range(1000):
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def test_requests_are_bounded_in_size_headers_and_time() -> None:
    # A request timeout of the default 10 s would be slow to test: the
    # limits of the listener class are checked on the listener in-process
    # by test_http_listener_limits; here, the process refuses a huge head.
    with HttpBroker("--http-port", "0") as broker:
        with socket.create_connection((HOST, broker.http_port), timeout=WAIT) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n")
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 431 ") or answer.startswith(b"HTTP/1.1 413 "), answer
        with socket.create_connection((HOST, broker.http_port), timeout=WAIT) as sock:
            headers = b"".join(b"X-H%d: v\r\n" % n for n in range(100))
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
            answer = read_all(sock)
        assert answer.startswith(b"HTTP/1.1 431 "), answer
        with socket.create_connection((HOST, broker.http_port), timeout=WAIT) as sock:
            sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
            assert read_all(sock).startswith(b"HTTP/1.1 400 ")


def test_slow_request_is_closed_and_connections_are_bounded() -> None:
    import asyncio

    from mqttproto.adapters._http_asyncio import start_http
    from mqttproto.adapters.asyncio import BrokerServer

    async def main() -> tuple[bytes, bytes, bytes]:
        async with BrokerServer(port=0) as server:
            listener = await start_http(server, request_timeout=0.2, max_connections=1)
            try:
                reader, writer = await asyncio.open_connection(HOST, listener.port)
                writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # never finished
                # The second connection is over max_connections: closed at once.
                reader2, writer2 = await asyncio.open_connection(HOST, listener.port)
                second = await asyncio.wait_for(reader2.read(), WAIT)
                writer2.close()
                slow = await asyncio.wait_for(reader.read(), WAIT)
                writer.close()
                # The slow one gone, a third one is served.
                reader3, writer3 = await asyncio.open_connection(HOST, listener.port)
                writer3.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                third = await asyncio.wait_for(reader3.read(), WAIT)
                writer3.close()
                return slow, second, third
            finally:
                await listener.close()

    slow, second, third = asyncio.run(main())
    assert (slow, second) == (b"", b"")
    assert third.startswith(b"HTTP/1.1 200 ")
