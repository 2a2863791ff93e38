"""MQTT 5 enhanced authentication with the blocking client.

The authenticator is a plain function; the client runs it on a worker
thread, so it may block. Connects as alice to a broker that speaks
MQTTPROTO-HMAC-SHA256, such as auth_broker.py, at MQTT_HOST:MQTT_PORT
(default 127.0.0.1:1883); her secret comes from MQTT_SECRET.
"""

from __future__ import annotations

import os

from mqttproto.adapters.threads import AuthenticationError, Client
from mqttproto.auth import HMAC_SHA256_METHOD, hmac_sha256_response
from mqttproto.events import AuthChallenged

HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
PORT = int(os.environ.get("MQTT_PORT", "1883"))
secret = os.environ.get("MQTT_SECRET", "alice's secret").encode()


def answer(challenge: AuthChallenged) -> bytes:
    assert challenge.authentication_data is not None
    return hmac_sha256_response(secret, challenge.authentication_data)


with Client(
    HOST, PORT, username="alice", authentication_method=HMAC_SHA256_METHOD, authenticator=answer
) as client:
    print("re-authenticated:", client.reauthenticate(timeout=10).authentication_method)
    secret = b"a secret the server does not know"
    try:
        client.reauthenticate(timeout=10)
    except AuthenticationError as exc:
        # The server ends the connection with DISCONNECT [MQTT-4.12.1-2].
        assert exc.reason_code is not None
        print("re-authentication refused:", exc.reason_code.name)
