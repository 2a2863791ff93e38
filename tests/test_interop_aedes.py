"""The project's clients against aedes, the Node.js MQTT 3.1.1 broker: a
second broker implementation besides mosquitto.

aedes is pinned in ``tests/js/package.json`` and installed by ``.ci/run``
(``npm ci --prefix tests/js``); ``tests/js/aedes.mjs`` serves on a free
127.0.0.1 port until its standard input closes, so it never outlives the
test that holds the pipe (and is also stopped by its handle). Without
Node.js or the package the tests skip, or fail when
``MQTTPROTO_REQUIRE_INTEROP`` is set.

Covered: the asyncio, trio and threads clients (QoS 0/1/2 both ways, a
per-subscription iterator), a persistent session queueing QoS 1 messages
while its client is away, and ``mqttproto pub``/``sub`` printing what
mosquitto_sub prints from the same broker.
"""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from cli_tools import at, cli, mosquitto
from interop import HOST, MOSQUITTO_SUB, stop_process
from test_clients_async import LIBS, client_class, roundtrip, run
from test_interop_mqttjs import JS, NODE, require_js_peer

from mqttproto import ProtocolVersion, QoS
from mqttproto.adapters.asyncio import Client as AsyncioClient
from mqttproto.adapters.threads import Client as ThreadsClient

V311 = ProtocolVersion.MQTT_3_1_1
#: Seconds for aedes to start, and for each wait on it.
WAIT = 15.0


@pytest.fixture(scope="module")
def aedes() -> Iterator[SimpleNamespace]:
    """An aedes process on 127.0.0.1; ``.port``."""
    require_js_peer("aedes")
    process = subprocess.Popen(
        [NODE, str(JS / "aedes.mjs")],
        cwd=JS,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    first: list[str] = []
    reader = threading.Thread(
        target=lambda: first.append(process.stdout.readline() if process.stdout else ""),
        daemon=True,
    )
    reader.start()
    reader.join(WAIT)
    try:
        if not first or not first[0]:
            raise AssertionError(f"aedes did not start: {process.stderr and process.stderr.read()}")
        yield SimpleNamespace(host=HOST, port=json.loads(first[0])["listening"])
    finally:
        assert process.stdin is not None
        process.stdin.close()  # aedes.mjs stops when its input ends
        stop_process(process, WAIT)


@LIBS
def test_asyncio_and_trio_clients_round_trip(aedes: SimpleNamespace, lib: str) -> None:
    run(lib, roundtrip, client_class(lib), HOST, aedes.port, version=V311, client_id=f"{lib}-rt")


def test_threads_client_round_trip(aedes: SimpleNamespace) -> None:
    with ThreadsClient(HOST, aedes.port, version=V311, client_id="threads-rt") as client:
        assert client.subscribe("thr/#", qos=2) == (QoS.EXACTLY_ONCE,)
        for qos in (0, 1, 2):
            client.publish(f"thr/{qos}", f"payload {qos}".encode(), qos=qos)
        messages = client.messages(timeout=WAIT)
        received = sorted(
            (m.topic, m.payload, int(m.qos)) for m in (next(messages) for _ in range(3))
        )
        assert received == [(f"thr/{q}", f"payload {q}".encode(), q) for q in (0, 1, 2)]


def test_persistent_session_queues_while_away(aedes: SimpleNamespace) -> None:
    async def main() -> None:
        options: dict[str, Any] = {"version": V311, "client_id": "aedes-ps"}
        async with AsyncioClient(HOST, aedes.port, **options):
            pass  # a clean start: no session left from an earlier run
        async with AsyncioClient(HOST, aedes.port, clean_start=False, **options) as client:
            assert client.connack is not None and not client.connack.session_present
            await client.subscribe("aedes/ps", qos=1)
        async with AsyncioClient(HOST, aedes.port, version=V311, client_id="aedes-pp") as pub:
            for n in (1, 2, 3):
                await pub.publish("aedes/ps", f"queued {n}".encode(), qos=1)
        async with AsyncioClient(HOST, aedes.port, clean_start=False, **options) as client:
            assert client.connack is not None and client.connack.session_present
            received = []
            async for message in client.messages():
                received.append((message.payload, int(message.qos)))
                if len(received) == 3:
                    break
            assert received == [(f"queued {n}".encode(), 1) for n in (1, 2, 3)]

    run("asyncio", main)


def test_cli_pub_and_sub_print_as_mosquitto_sub(aedes: SimpleNamespace) -> None:
    for topic, payload in (("cli/a", "one"), ("cli/b/c", "two words")):
        assert cli("pub", *at(aedes), "-t", topic, "-m", payload, "-r", "-q", "1").returncode == 0
    args = [*at(aedes), "-t", "cli/#", "-v", "-C", "2", "-W", "10"]
    mine, theirs = cli("sub", *args), mosquitto(MOSQUITTO_SUB, *args)
    assert (mine.returncode, mine.stdout, mine.stderr) == (
        theirs.returncode,
        theirs.stdout,
        theirs.stderr,
    )
    assert sorted(mine.stdout.splitlines()) == [b"cli/a one", b"cli/b/c two words"]
