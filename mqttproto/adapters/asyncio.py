"""asyncio adapters: the MQTT :class:`Client` and the broker server.

- :class:`Client` (defined in ``_asyncio_client``): ``async with
  Client(host) as client:``.
- :class:`BrokerServer`, :func:`start_server` and :func:`serve` (defined in
  ``_asyncio_server``): a sans-IO :class:`~mqttproto.broker.Broker`
  served over TCP, TLS, WebSocket and Unix sockets (:class:`Listener`, one
  server can have several); see the Broker guide.

::

    server = await start_server(host="127.0.0.1", port=0)   # 0: the OS picks a port
    print("listening on", server.port)
    ...
    await server.close()        # DISCONNECT 0x8B to MQTT 5 clients, then close

or, for a process that only serves, ``await serve("127.0.0.1", 1883)`` until
it is cancelled.
"""

from __future__ import annotations

from ._asyncio_client import Client, MessageIterator
from ._asyncio_server import (
    DEFAULT_MAX_BUFFERED_OUTPUT,
    BrokerServer,
    Endpoint,
    serve,
    start_server,
)
from ._client_types import (
    AuthenticationError,
    ClientError,
    ConnectError,
    ConnectionLostError,
    PublishError,
    ReconnectPolicy,
    SubscribeError,
)
from ._listener import Listener, server_ssl_context
from ._tls_gate import TlsHandshakeStats

__all__ = [
    "DEFAULT_MAX_BUFFERED_OUTPUT",
    "AuthenticationError",
    "BrokerServer",
    "Client",
    "ClientError",
    "ConnectError",
    "ConnectionLostError",
    "Endpoint",
    "Listener",
    "MessageIterator",
    "PublishError",
    "ReconnectPolicy",
    "SubscribeError",
    "TlsHandshakeStats",
    "serve",
    "server_ssl_context",
    "start_server",
]
