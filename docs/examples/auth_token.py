"""A custom authenticator: a broker that accepts tokens from a known set.

The client sends its token as the MQTT 5 Password (no username needed).
The sans-IO Broker uses TokenAuthenticator; two clients, wired to it in
memory, connect: one with a good token, one with a bad one.
"""

from __future__ import annotations

import time

from mqttproto import Broker, BrokerConfig, ClientConnection
from mqttproto.auth import AuthResult, ConnectInfo
from mqttproto.enums import ReasonCode
from mqttproto.events import ConnectionAccepted, ConnectionRefused


class TokenAuthenticator:
    def __init__(self, tokens: set[bytes]) -> None:
        self.tokens = tokens

    def authenticate(self, info: ConnectInfo) -> AuthResult:
        if info.authentication_method is not None:
            return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)
        if info.password in self.tokens:
            return AuthResult.accept()
        return AuthResult.reject(ReasonCode.BAD_USER_NAME_OR_PASSWORD)

    def continue_authentication(
        self, info: ConnectInfo, authentication_data: bytes | None
    ) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)


broker = Broker(BrokerConfig(), authenticator=TokenAuthenticator({b"t0k3n-4b1c"}))


def now() -> float:
    return time.monotonic()


for name, token in [("good token", b"t0k3n-4b1c"), ("bad token", b"forged")]:
    conn = broker.open_connection(now(), peer=f"memory/{name}")
    client = ClientConnection()  # MQTT 5
    client.connect(client_id=name.replace(" ", "-"), password=token)
    broker.receive_data(conn, client.data_to_send(now()), now())
    for _, data in broker.flush(now()):
        client.receive_data(data, now())
    for event in client.events():
        if isinstance(event, ConnectionAccepted):
            print(f"{name}: accepted")
        elif isinstance(event, ConnectionRefused):
            print(f"{name}: refused, {event.reason_code.name}")
