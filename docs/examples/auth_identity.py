"""Admit only usernames the transport proved: IdentityAuthenticator.

The sans-IO Broker and three clients, wired together in memory. On a TLS
listener with use_identity_as_username the server passes the verified
certificate's name to open_connection(username=...): alice connects that
way. mallory types "alice" into CONNECT on a plain listener, and a third
client has no username at all; with allow_anonymous=False both are refused.
"""

from __future__ import annotations

import time

from mqttproto import Broker, BrokerConfig, ClientConnection
from mqttproto.auth import IdentityAuthenticator
from mqttproto.events import ConnectionAccepted, ConnectionRefused

authenticator = IdentityAuthenticator(allow_anonymous=False)
broker = Broker(BrokerConfig(), authenticator=authenticator)
clients: dict[int, tuple[str, ClientConnection]] = {}


def now() -> float:
    return time.monotonic()


def connect(name: str, certificate_name: str | None, username: str | None) -> None:
    conn = broker.open_connection(now(), peer=f"memory/{name}", username=certificate_name)
    client = ClientConnection()
    client.connect(client_id=name, username=username)
    clients[conn] = (name, client)


connect("alice (certificate)", certificate_name="alice", username=None)
connect("mallory (typed alice)", certificate_name=None, username="alice")
connect("anonymous", certificate_name=None, username=None)
for conn, (_, client) in clients.items():
    broker.receive_data(conn, client.data_to_send(now()), now())
for conn, data in broker.flush(now()):
    clients[conn][1].receive_data(data, now())
for name, client in clients.values():
    for event in client.events():
        if isinstance(event, ConnectionAccepted):
            print(f"{name}: accepted")
        elif isinstance(event, ConnectionRefused):
            print(f"{name}: refused, {event.reason_code.name}")
