"""I/O adapters: the only modules of mqttproto that open sockets or read a clock.

- :mod:`mqttproto.adapters.asyncio`: an MQTT broker server over TCP (and TLS)
  driving the sans-IO :class:`~mqttproto.broker.Broker` on an asyncio loop,
  and an asyncio MQTT ``Client``.
- :mod:`mqttproto.adapters.trio`: the same ``Client`` and broker server on
  trio (the ``trio`` extra).
- :mod:`mqttproto.adapters.threads`: a blocking ``Client``, and a broker
  server, each with one I/O thread.

Each adapter is imported explicitly (``from mqttproto.adapters.asyncio import
serve``); importing this package imports none of them.
"""

from __future__ import annotations

__all__: list[str] = []
