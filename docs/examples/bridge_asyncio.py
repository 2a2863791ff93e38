"""An edge broker bridged to a central one, from Python (no TOML file).

The central broker is CENTRAL ("HOST:PORT", default 127.0.0.1:1883): a
mosquitto, an EMQX, or another mqttproto broker. The edge listens on a port
the system chooses; a device publishes "sensors/temp" to it, and a client of
the central broker receives it as "site1/sensors/temp".
"""

from __future__ import annotations

import asyncio
import os

from mqttproto.adapters.asyncio import BrokerServer, Client
from mqttproto.bridge import BridgeConfig, parse_address

CENTRAL = os.environ.get("CENTRAL", "127.0.0.1:1883")


async def main() -> None:
    bridge = BridgeConfig(
        "central",
        CENTRAL,
        topics=['sensors/# out 1 "" site1/', 'commands/# in 1 "" site1/'],
        client_id="edge-site1",
        protocol_version=5,
    )
    async with BrokerServer(port=0, bridges=[bridge]) as edge:
        for _ in range(100):  # the bridge connects in the background
            if edge.bridges[0].state == "connected":
                break
            await asyncio.sleep(0.1)
        host, port = parse_address(CENTRAL)
        async with Client(host, port) as central, Client("127.0.0.1", edge.port) as device:
            await central.subscribe("site1/sensors/#", qos=1)
            await device.publish("sensors/temp", b"21.5", qos=1)
            async for message in central.messages():
                print(message.topic, message.payload.decode())
                break
        status = edge.bridges[0]  # state, counters, last error: see "Seeing the state"
        print(f"bridge {status.name}: {status.state}")


asyncio.run(main())
