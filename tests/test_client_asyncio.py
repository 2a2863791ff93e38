"""The asyncio client (mqttproto.adapters.asyncio.Client) on real sockets.

Against our broker (``start_server`` on the test's own loop, 127.0.0.1 port 0)
and against mosquitto (the ``mosquitto`` fixture). Every test runs under
``asyncio.run`` with a global timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest

from mqttproto import ProtocolVersion, QoS
from mqttproto.adapters.asyncio import BrokerServer, Client

T = TypeVar("T")
HOST = "127.0.0.1"
TIMEOUT = 20.0
VERSIONS = [ProtocolVersion.MQTT_3_1_1, ProtocolVersion.MQTT_5_0]


def run(factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(factory(), TIMEOUT)

    return asyncio.run(bounded())


async def roundtrip(host: str, port: int, version: ProtocolVersion) -> None:
    """Subscribe, publish at each QoS, read back from messages() and a subscription."""
    async with Client(host, port, client_id=f"rt-{int(version)}", version=version) as client:
        assert client.connected
        assert await client.subscribe("rt/all/#", qos=2) == (QoS.EXACTLY_ONCE,)
        assert await client.publish("rt/all/0", b"zero", qos=0) is None
        ack1 = await client.publish("rt/all/1", b"one", qos=1)
        ack2 = await client.publish("rt/all/2", "two", qos=2)
        assert ack1 is not None and ack1.reason_code < 0x80
        assert ack2 is not None and ack2.reason_code < 0x80
        received = []
        async for message in client.messages():
            received.append((message.topic, message.payload, int(message.qos)))
            if len(received) == 3:
                break
        assert sorted(received) == [
            ("rt/all/0", b"zero", 0),
            ("rt/all/1", b"one", 1),
            ("rt/all/2", b"two", 2),
        ]
        async with client.subscription("rt/one/+", qos=1) as messages:
            await client.publish("rt/one/a", b"A", qos=1)
            async for message in messages:
                assert (message.topic, message.payload, message.qos) == ("rt/one/a", b"A", 1)
                break


@pytest.mark.parametrize("version", VERSIONS, ids=["v311", "v5"])
def test_roundtrip_our_broker(version: ProtocolVersion) -> None:
    async def main() -> None:
        async with BrokerServer(host=HOST, port=0) as server:
            await roundtrip(HOST, server.port, version)

    run(main)


@pytest.mark.parametrize("version", VERSIONS, ids=["v311", "v5"])
def test_roundtrip_mosquitto(mosquitto: tuple[str, int], version: ProtocolVersion) -> None:
    run(lambda: roundtrip(*mosquitto, version))
