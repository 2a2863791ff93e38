"""A broker that authenticates with MQTT 5 enhanced authentication.

The method is MQTTPROTO-HMAC-SHA256: the server answers CONNECT with a
random nonce, the client proves it knows its shared secret with
HMAC-SHA256(secret, nonce). The user is alice; her secret comes from
MQTT_SECRET (default "alice's secret"). Listens on MQTT_HOST:MQTT_PORT
(default 127.0.0.1:1883) until SIGINT or SIGTERM.
"""

from __future__ import annotations

import asyncio
import os
import signal

from mqttproto.adapters.asyncio import BrokerServer
from mqttproto.auth import ChallengeResponseAuthenticator

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))
SECRETS = {"alice": os.environ.get("MQTT_SECRET", "alice's secret").encode()}


async def main() -> None:
    authenticator = ChallengeResponseAuthenticator(SECRETS, nonce=lambda: os.urandom(16))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with BrokerServer(host=HOST, port=PORT, authenticator=authenticator) as server:
        print("listening on port", server.port, flush=True)
        await stop.wait()
    print("stopped")


asyncio.run(main())
