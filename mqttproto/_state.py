"""Connection lifecycle: states, inputs and the transition table.

The table is role-agnostic: a client *sends* CONNECT where a server
*receives* it, and both land in ``CONNECTING``. Which packets each role may
send or receive in each state is the role's business (``client.py``,
``broker.py``); this module only says how the lifecycle moves.

A missing ``(state, input)`` pair is an illegal move: :func:`transition`
raises ``KeyError`` and the caller turns that into the right error for its
side (a :class:`~mqttproto.LocalProtocolError` for an API call, a
:class:`~mqttproto.RemoteProtocolError` for a packet).
"""

from __future__ import annotations

import enum

__all__ = ["TRANSITIONS", "ConnectionState", "Input", "transition"]


class ConnectionState(enum.Enum):
    """Where one network connection is in its life."""

    #: Nothing has happened yet: a client has not sent CONNECT, a server has
    #: not received it.
    IDLE = "idle"
    #: CONNECT is on its way or being answered (including an enhanced
    #: authentication exchange); CONNACK has not been sent or received.
    CONNECTING = "connecting"
    #: CONNACK accepted the connection: application messages may flow.
    CONNECTED = "connected"
    #: The connection is over; the transport should be closed once
    #: ``data_to_send`` has been flushed.
    CLOSED = "closed"


class Input(enum.Enum):
    """What can move a connection from one state to another."""

    SEND_CONNECT = "send CONNECT"
    RECV_CONNECT = "receive CONNECT"
    SEND_CONNACK = "send accepting CONNACK"
    RECV_CONNACK = "receive accepting CONNACK"
    SEND_CONNACK_REFUSED = "send refusing CONNACK"
    RECV_CONNACK_REFUSED = "receive refusing CONNACK"
    SEND_AUTH = "send AUTH"
    RECV_AUTH = "receive AUTH"
    SEND_DISCONNECT = "send DISCONNECT"
    RECV_DISCONNECT = "receive DISCONNECT"
    RECV_EOF = "end of stream"
    PROTOCOL_ERROR = "protocol error"
    TIMEOUT = "timeout"


_S = ConnectionState
_I = Input

#: ``(state, input) -> next state``. Everything absent is illegal.
TRANSITIONS: dict[tuple[ConnectionState, Input], ConnectionState] = {
    (_S.IDLE, _I.SEND_CONNECT): _S.CONNECTING,
    (_S.IDLE, _I.RECV_CONNECT): _S.CONNECTING,
    # A client object may start a new network connection after the last one
    # ended; its session carries over.
    (_S.CLOSED, _I.SEND_CONNECT): _S.CONNECTING,
    (_S.CONNECTING, _I.SEND_CONNACK): _S.CONNECTED,
    (_S.CONNECTING, _I.RECV_CONNACK): _S.CONNECTED,
    (_S.CONNECTING, _I.SEND_CONNACK_REFUSED): _S.CLOSED,
    (_S.CONNECTING, _I.RECV_CONNACK_REFUSED): _S.CLOSED,
    # Enhanced authentication [MQTT-4.12]: AUTH during CONNECT, and
    # re-authentication once connected, leave the state where it is.
    (_S.CONNECTING, _I.SEND_AUTH): _S.CONNECTING,
    (_S.CONNECTING, _I.RECV_AUTH): _S.CONNECTING,
    (_S.CONNECTED, _I.SEND_AUTH): _S.CONNECTED,
    (_S.CONNECTED, _I.RECV_AUTH): _S.CONNECTED,
    # A client may abandon an authentication exchange with DISCONNECT; a
    # server must answer CONNECT with CONNACK first [MQTT-3.2.0-1], which the
    # roles check on their own.
    (_S.CONNECTING, _I.SEND_DISCONNECT): _S.CLOSED,
    (_S.CONNECTING, _I.RECV_DISCONNECT): _S.CLOSED,
    (_S.CONNECTED, _I.SEND_DISCONNECT): _S.CLOSED,
    (_S.CONNECTED, _I.RECV_DISCONNECT): _S.CLOSED,
}
for _state in (_S.IDLE, _S.CONNECTING, _S.CONNECTED):
    for _input in (_I.RECV_EOF, _I.PROTOCOL_ERROR, _I.TIMEOUT):
        TRANSITIONS[(_state, _input)] = _S.CLOSED
del _state, _input


def transition(state: ConnectionState, event: Input) -> ConnectionState:
    """The state after ``event`` in ``state``; ``KeyError`` when it is illegal."""
    return TRANSITIONS[(state, event)]
