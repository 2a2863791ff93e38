"""The broker: :class:`Broker`, the sans-IO core of an MQTT server for many clients.

It is built on the server role (:class:`~mqttproto.server.ServerConnection`),
one per network connection, and consumes their events:

- :mod:`._core`: :class:`Broker` itself, the adapter's API, timers and
  introspection;
- :mod:`._lifecycle`: CONNECT, authentication, sessions, wills, expiry;
- :mod:`._routing`: a client's messages routed and delivered, the memory
  budget, ``$SYS``;
- :mod:`._subscriptions`: SUBSCRIBE, UNSUBSCRIBE and retained messages for
  a new subscription;
- :mod:`._auth`: deferred authentication, its bound and the failure delay;
- :mod:`._sessions`, :mod:`._message`, :mod:`._router`, :mod:`._retained`:
  what the broker keeps.
"""

from __future__ import annotations

from ._admin import SessionInfo
from ._auth import AuthenticationJob, FailedAuthentication
from ._core import Broker

__all__ = ["AuthenticationJob", "Broker", "FailedAuthentication", "SessionInfo"]
