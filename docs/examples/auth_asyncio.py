"""MQTT 5 enhanced authentication with the asyncio client (trio: the same).

Connects as alice to a broker that speaks MQTTPROTO-HMAC-SHA256, such as
auth_broker.py, at MQTT_HOST:MQTT_PORT (default 127.0.0.1:1883); her
secret comes from MQTT_SECRET (default "alice's secret").
"""

from __future__ import annotations

import asyncio
import os

from mqttproto.adapters.asyncio import Client, ConnectError
from mqttproto.auth import HMAC_SHA256_METHOD, hmac_sha256_response
from mqttproto.events import AuthChallenged

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))
SECRET = os.environ.get("MQTT_SECRET", "alice's secret").encode()


def answer(challenge: AuthChallenged) -> bytes:
    """The server's nonce in, the proof that we know the secret out."""
    assert challenge.authentication_data is not None
    return hmac_sha256_response(SECRET, challenge.authentication_data)


async def main() -> None:
    async with Client(
        HOST,
        PORT,
        username="alice",
        authentication_method=HMAC_SHA256_METHOD,
        authenticator=answer,  # also answers the exchange of every reconnect
        reconnect=True,
    ) as client:
        print("authenticated with", HMAC_SHA256_METHOD)
        # The same exchange again, on the live connection (AUTH 0x19).
        result = await client.reauthenticate()
        print("re-authenticated:", result.authentication_method)

    # A wrong secret: the server refuses the CONNECT (0x87 Not authorized).
    try:
        async with Client(
            HOST,
            PORT,
            username="alice",
            authentication_method=HMAC_SHA256_METHOD,
            authenticator=lambda challenge: b"not the proof",
        ):
            pass
    except ConnectError as exc:
        assert exc.reason_code is not None
        print("refused:", exc.reason_code.name)


asyncio.run(main())
