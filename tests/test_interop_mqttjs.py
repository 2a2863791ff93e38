"""MQTT.js (the JavaScript client of browsers and Node.js) against the broker.

MQTT.js 5 is pinned in ``tests/js/package.json`` and installed by ``.ci/run``
(``npm ci --prefix tests/js``); ``tests/js/peer.mjs`` runs one scenario per
process against a ``python -m mqttproto broker`` process and prints what
MQTT.js saw, one JSON object per line. Without Node.js or the installed
package the tests skip, or fail when ``MQTTPROTO_REQUIRE_INTEROP`` is set.

Covered for MQTT 3.1.1 and 5.0: QoS 0, 1 and 2 both ways (with MQTT 5
properties), over TCP, WebSocket and TLS; retained messages set and cleared;
wills; persistent sessions queueing while away; refused credentials; topic
aliases both ways, checked on the wire in the broker's packet trace. And
MQTT.js's browser bundle in headless Chromium (Debian's, which ``.ci/run``
installs) over WebSocket, as a web page uses the broker.
"""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_tools import cli
from interop import interop_required, require_peer, stop_process
from test_cli_broker import make_certificate
from test_cli_broker_ops import listener_port
from test_http_ops import paho_client, subscribe
from test_interop_broker import WAIT, ProcessBroker
from test_status_page import CHROMIUM

JS = Path(__file__).parent / "js"
PEER = JS / "peer.mjs"
NODE = shutil.which("node") or "/usr/bin/node"
#: Longer than the peer's own bound (15 s), so that the peer reports a hang.
RUN_TIMEOUT = 30
VERSIONS = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


def require_js_peer(package: str) -> None:
    """Node.js and ``package`` installed under tests/js, or skip (fail when
    ``MQTTPROTO_REQUIRE_INTEROP`` is set)."""
    require_peer("Node.js", NODE)
    if not (JS / "node_modules" / package / "package.json").is_file():
        reason = f"interop peer {package} is not installed (npm ci --prefix {JS})"
        if interop_required():
            pytest.fail(f"{reason}, and MQTTPROTO_REQUIRE_INTEROP is set")
        pytest.skip(reason)


def require_mqttjs() -> None:
    require_js_peer("mqtt")


def mqttjs(scenario: str, url: str, version: int, **options: Any) -> list[dict[str, Any]]:
    """Run one scenario of peer.mjs; what MQTT.js printed, line by line."""
    command = [NODE, str(PEER), scenario, url, str(version)]
    if options:
        command.append(json.dumps(options))
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=RUN_TIMEOUT, cwd=JS, check=False
    )
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    assert result.returncode == 0, (lines, result.stderr)
    return lines


@pytest.fixture(scope="module")
def broker() -> Iterator[tuple[ProcessBroker, int]]:
    """One broker for the module, TCP and WebSocket, with a packet trace."""
    require_mqttjs()
    with ProcessBroker("--ws-port", "0", "-vv") as running:
        ws_port = listener_port(running, "WebSocket")
        yield running, ws_port
        assert running.stop() == 0
        assert "Traceback" not in running.stderr


def message(
    topic: str, payload: str, qos: int, retain: bool = False, **more: Any
) -> dict[str, Any]:
    return {"topic": topic, "payload": payload, "qos": qos, "retain": retain, **more}


#: The MQTT 5 properties peer.mjs publishes with, as MQTT.js reads them back.
PROPERTIES = {
    "userProperties": {"origin": "mqttjs"},
    "contentType": "text/plain",
    "responseTopic": "mqttjs/replies",
    "correlationData": "c-1",
    "messageExpiryInterval": 3600,
}


@VERSIONS
@pytest.mark.parametrize("transport", ["mqtt", "ws"])
def test_qos_0_1_2_round_trip(
    broker: tuple[ProcessBroker, int], version: int, transport: str
) -> None:
    process, ws_port = broker
    port = process.port if transport == "mqtt" else ws_port
    lines = mqttjs("roundtrip", f"{transport}://127.0.0.1:{port}", version)
    more = PROPERTIES if version == 5 else {}
    # MQTT 5 properties come through unaltered: Response Topic, Correlation
    # Data, User Properties, Content Type [MQTT-3.3.2-15] [MQTT-3.3.2-16]
    # [MQTT-3.3.2-17] [MQTT-3.3.2-20]; the expiry is what is left of it, here
    # all of it [MQTT-3.3.2-6].
    assert lines == [
        {"granted": [2]},
        *(message(f"mqttjs/rt/{qos}", f"payload {qos}", qos, **more) for qos in (0, 1, 2)),
    ]


@VERSIONS
def test_retained_message_kept_then_cleared(
    broker: tuple[ProcessBroker, int], version: int
) -> None:
    lines = mqttjs("retained", f"mqtt://127.0.0.1:{broker[0].port}", version)
    assert lines == [
        # [MQTT-3.3.1-10]: a new subscription gets the retained message, flagged.
        {"subscriber": 1, **message("mqttjs/ret", "kept", 1, retain=True)},
        # [MQTT-3.3.1-6]: an empty retained payload removes it.
        {"subscriber": 2, **message("mqttjs/ret", "live", 1)},
    ]


@VERSIONS
def test_will_of_a_dropped_connection(broker: tuple[ProcessBroker, int], version: int) -> None:
    lines = mqttjs("will", f"mqtt://127.0.0.1:{broker[0].port}", version)
    assert lines == [message("mqttjs/will", "gone", 1)]  # [MQTT-3.1.2-8]


@VERSIONS
def test_persistent_session_queues_while_away(
    broker: tuple[ProcessBroker, int], version: int
) -> None:
    lines = mqttjs("session", f"mqtt://127.0.0.1:{broker[0].port}", version)
    assert lines == [
        {"sessionPresent": False},
        {"sessionPresent": True},  # [MQTT-3.2.2-2]
        *(message("mqttjs/ps", f"queued {n}", 1) for n in (1, 2, 3)),
    ]


def test_topic_aliases_both_ways_on_the_wire(broker: tuple[ProcessBroker, int]) -> None:
    process, _ = broker
    lines = mqttjs("aliases", f"mqtt://127.0.0.1:{process.port}", 5)
    topic = "mqttjs/alias/a-topic-long-enough-to-alias"
    assert lines == [
        {"brokerAliases": 64},
        *(message(topic, f"n{n}", 1) for n in (1, 2, 3, 4)),
    ]
    trace = [line for line in process._stderr_parts if "'mqttjs-alias'" in line]
    # The first PUBLISH each way names the topic, the next three only the
    # alias (an empty topic name) [MQTT-3.3.2-12].
    for arrow in ("->", "<-"):
        topics = [
            line.split("topic=", 1)[1].split()[0] for line in trace if f"{arrow} PUBLISH" in line
        ]
        assert topics == [repr(topic), "''", "''", "''"], arrow


@VERSIONS
def test_refused_credentials(tmp_path: Path, version: int) -> None:
    require_mqttjs()
    passwords = tmp_path / "passwords"
    assert cli("passwd", "-c", "-b", str(passwords), "alice", "secret").returncode == 0
    with ProcessBroker("--password-file", str(passwords)) as process:
        lines = mqttjs("refused", f"mqtt://127.0.0.1:{process.port}", version)
        # 3.1.1 return code 4, MQTT 5 reason code 0x86: bad user name or password.
        assert lines == [{"refused": 4 if version == 4 else 0x86}]
        assert process.stop() == 0


@VERSIONS
def test_round_trip_over_tls(tmp_path: Path, version: int) -> None:
    require_mqttjs()
    cert, key = make_certificate(tmp_path)
    with ProcessBroker(
        "--certfile", str(cert), "--keyfile", str(key), "--tls-port", "0"
    ) as process:
        tls_port = listener_port(process, "TLS")
        lines = mqttjs(
            "roundtrip",
            f"mqtts://127.0.0.1:{tls_port}",
            version,
            ca=cert.read_text(encoding="ascii"),
            rejectUnauthorized=True,
        )
        assert lines[0] == {"granted": [2]}
        assert [line["payload"] for line in lines[1:]] == ["payload 0", "payload 1", "payload 2"]
        assert process.stop() == 0


#: A web page using MQTT.js's browser bundle: it subscribes to browser/in,
#: says it is ready on browser/out, then echoes what it receives there.
PAGE = """<!doctype html>
<html><body>
<script src="MQTT_JS"></script>
<script>
const client = mqtt.connect("ws://127.0.0.1:PORT/mqtt", {
  protocolVersion: 5, clientId: "browser", reconnectPeriod: 0,
});
client.on("connect", async () => {
  client.on("message", (topic, payload, packet) => {
    const properties = JSON.stringify(packet.properties?.userProperties ?? {});
    client.publish("browser/out", `${topic} ${payload} qos=${packet.qos} ${properties}`, { qos: 1 });
  });
  await client.subscribeAsync("browser/in", { qos: 1 });
  client.publish("browser/out", "ready in " + (navigator.userAgent.includes("Chrome") ? "Chrome" : "?"), { qos: 1 });
});
</script>
</body></html>
"""


def test_mqttjs_in_a_browser_over_websocket(tmp_path: Path) -> None:
    require_mqttjs()
    require_peer("chromium", CHROMIUM)
    with ProcessBroker("--ws-port", "0") as process:
        ws_port = listener_port(process, "WebSocket")
        page = tmp_path / "page.html"
        bundle = JS / "node_modules" / "mqtt" / "dist" / "mqtt.min.js"
        page.write_text(
            PAGE.replace("MQTT_JS", bundle.as_uri()).replace("PORT", str(ws_port)),
            encoding="utf-8",
        )
        with paho_client(process, "watcher") as (watcher, received):
            subscribe(watcher, ("browser/out", 1))
            browser = subprocess.Popen(
                [
                    CHROMIUM,
                    "--headless",
                    "--no-sandbox",  # as root in CI containers
                    "--disable-gpu",
                    "--no-first-run",
                    "--disable-background-networking",
                    f"--user-data-dir={tmp_path / 'profile'}",
                    page.as_uri(),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                ready = received.get(timeout=6 * WAIT)
                assert (ready.topic, ready.payload, ready.qos) == (
                    "browser/out",
                    b"ready in Chrome",
                    1,
                )
                info = watcher.publish("browser/in", b"hello", qos=1, properties=user_properties())
                info.wait_for_publish(timeout=WAIT)
                echo = received.get(timeout=WAIT)
                assert echo.payload == b'browser/in hello qos=1 {"from":"paho"}'
            except queue.Empty:
                raise AssertionError("the page did not answer") from None
            finally:
                stop_process(browser, WAIT)
        assert process.stop() == 0


def user_properties() -> Any:
    """MQTT 5 PUBLISH properties with one User Property, as paho builds them."""
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    properties = Properties(PacketTypes.PUBLISH)
    properties.UserProperty = [("from", "paho")]
    return properties
