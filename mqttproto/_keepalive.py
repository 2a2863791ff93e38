"""Keep-alive deadline arithmetic. Times are whatever clock the caller uses.

A keep-alive of 0 turns the mechanism off [MQTT-3.1.2-10]: every function
here then returns ``None``.
"""

from __future__ import annotations

__all__ = ["ping_due", "ping_response_deadline", "receive_deadline"]

#: The server closes a connection that was silent for one and a half
#: keep-alive periods [MQTT-3.1.2-24].
SERVER_GRACE = 1.5


def ping_due(last_sent: float, keep_alive: int) -> float | None:
    """When a client must send PINGREQ if nothing else was sent [MQTT-3.1.2-23]."""
    return last_sent + keep_alive if keep_alive > 0 else None


def ping_response_deadline(
    ping_sent: float, keep_alive: int, timeout: float | None
) -> float | None:
    """When a client gives up waiting for PINGRESP (or any packet).

    ``timeout`` of ``None`` waits one whole keep-alive period, the bound the
    specification suggests for a client [MQTT-3.1.2-24 non-normative].
    """
    if keep_alive <= 0:
        return None
    return ping_sent + (keep_alive if timeout is None else timeout)


def receive_deadline(last_received: float, keep_alive: int) -> float | None:
    """When a server closes a client it has heard nothing from [MQTT-3.1.2-24]."""
    return last_received + keep_alive * SERVER_GRACE if keep_alive > 0 else None
