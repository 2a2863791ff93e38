"""Self-tests of the interop infrastructure (tests/interop.py).

They show that the peers work: mosquitto starts and stops, mosquitto_pub and
mosquitto_sub exchange messages through it, and paho-mqtt does a round trip.
mqttproto's own interop tests build on these helpers.
"""

from __future__ import annotations

import subprocess
import time
from typing import Any

import pytest
from interop import (
    HOST,
    MosquittoBroker,
    finish,
    free_port,
    import_paho,
    mosquitto_pub,
    require_peer,
    start_mosquitto_sub,
)


def test_free_port_is_bindable() -> None:
    port = free_port()
    assert 0 < port < 65536


def test_require_peer_skips_or_fails_for_a_missing_peer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MQTTPROTO_REQUIRE_INTEROP", raising=False)
    with pytest.raises(pytest.skip.Exception, match="no-such-peer"):
        require_peer("no-such-peer", "/nonexistent/no-such-peer")
    with pytest.raises(pytest.skip.Exception, match="no_such_module"):
        require_peer("no-such-module", "no_such_module_for_mqttproto")
    monkeypatch.setenv("MQTTPROTO_REQUIRE_INTEROP", "1")
    with pytest.raises(pytest.fail.Exception, match="MQTTPROTO_REQUIRE_INTEROP"):
        require_peer("no-such-peer", "/nonexistent/no-such-peer")


def test_mosquitto_starts_and_stops(mosquitto_broker: MosquittoBroker) -> None:
    host, port = mosquitto_broker.address
    assert host == HOST
    process = mosquitto_broker._process
    assert process is not None and process.poll() is None
    mosquitto_broker.__exit__(None, None, None)
    assert process.poll() is not None
    log = mosquitto_broker.log()
    assert f"Opening ipv4 listen socket on port {port}" in log, log
    assert "terminating" in log, log


def test_mosquitto_broker_without_a_directory_keeps_its_log() -> None:
    with MosquittoBroker() as broker:
        assert broker.log_path is not None and broker.log_path.exists()
    assert broker.log_path is not None and not broker.log_path.exists()
    assert "mosquitto version" in broker.log()


def test_retained_message_through_mosquitto(mosquitto: tuple[str, int]) -> None:
    host, port = mosquitto
    published = mosquitto_pub(host, port, "infra/retained", "hello", "-r", "-q", "1")
    assert published.returncode == 0, published.stderr
    # The retained message arrives as soon as the subscription is made.
    sub = start_mosquitto_sub(host, port, "infra/retained", "-v")
    code, out, err = finish(sub)
    assert code == 0, err
    assert out == "infra/retained hello\n"


def test_live_message_through_mosquitto(mosquitto: tuple[str, int]) -> None:
    host, port = mosquitto
    sub = start_mosquitto_sub(host, port, "infra/live", "-q", "1", wait=10)
    # The subscription's start is not observable from outside, so publish until
    # the subscriber has had one message (it exits after -C 1); bounded.
    for _ in range(50):
        published = mosquitto_pub(host, port, "infra/live", "ping", "-q", "1")
        assert published.returncode == 0, published.stderr
        try:
            sub.wait(timeout=0.2)
        except subprocess.TimeoutExpired:
            continue
        break
    code, out, err = finish(sub)
    assert code == 0, err
    assert out == "ping\n"


@pytest.mark.parametrize("version", ["MQTTv311", "MQTTv5"])
def test_paho_round_trip_through_mosquitto(mosquitto: tuple[str, int], version: str) -> None:
    mqtt = import_paho()
    from paho.mqtt.enums import CallbackAPIVersion

    protocol = getattr(mqtt, version)
    received: list[Any] = []
    subscribed: list[Any] = []
    connected: list[Any] = []
    client = mqtt.Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"infra-{version}",
        protocol=protocol,
    )
    client.on_connect = lambda c, userdata, flags, code, props: connected.append(code)
    client.on_subscribe = lambda c, userdata, mid, codes, props: subscribed.append(codes)
    client.on_message = lambda c, userdata, message: received.append(message)

    def loop_until(done: list[Any], what: str) -> None:
        deadline = time.monotonic() + 10
        for _ in range(400):
            if done or time.monotonic() > deadline:
                break
            client.loop(timeout=0.05)
        assert done, f"paho: no {what} within 10 s"

    host, port = mosquitto
    client.connect(host, port, keepalive=30)
    try:
        loop_until(connected, "CONNACK")
        assert not connected[0].is_failure
        client.subscribe("infra/paho", qos=1)
        loop_until(subscribed, "SUBACK")
        assert [int(code.value) for code in subscribed[0]] == [1]
        client.publish("infra/paho", b"\x00binary\xff", qos=1)
        loop_until(received, "message")
    finally:
        client.disconnect()
    assert received[0].topic == "infra/paho"
    assert received[0].payload == b"\x00binary\xff"
    assert received[0].qos == 1
