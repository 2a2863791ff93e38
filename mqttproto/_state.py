"""Connection lifecycle: states, inputs and the transition table; and the
fields a connection needs only in a phase of its life (:class:`RareField`).

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
from typing import Any, ClassVar, Generic, TypeVar, overload

__all__ = ["TRANSITIONS", "ConnectionState", "Input", "Rare", "RareField", "transition"]

T = TypeVar("T")


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


# -- fields of a phase -------------------------------------------------------------


class Rare:
    """The fields of an object that hold something other than their defaults
    only in a phase of its life (around the CONNECT, at its end) or on a few
    of them: kept in one object of a subclass of this, made by the first
    that is set and dropped once all are back to their defaults, so that an
    idle connection pays one slot for them all. A subclass lists its fields
    and their defaults (None, True, False or a small int: compared by
    identity) in ``DEFAULTS`` and as its ``__slots__``; the owner has a
    ``_rare`` slot and a :class:`RareField` per field."""

    __slots__ = ()

    DEFAULTS: ClassVar[dict[str, object]] = {}

    def __init__(self) -> None:
        for name, value in self.DEFAULTS.items():
            setattr(self, name, value)

    def idle(self) -> bool:
        """Whether every field holds its default."""
        return all(getattr(self, name) is value for name, value in self.DEFAULTS.items())


class RareField(Generic[T]):
    """A field of the owner kept in its ``_rare`` object (see :class:`Rare`):
    read from it (the default without one), written into one made on demand."""

    __slots__ = ("empty", "holder", "name")

    def __init__(self, holder: type[Rare]) -> None:
        self.holder = holder
        #: What an owner without a ``_rare`` object reads: the defaults.
        self.empty = holder()
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, owner: None, cls: type) -> RareField[T]: ...

    @overload
    def __get__(self, owner: Any, cls: type) -> T: ...

    def __get__(self, owner: Any, cls: type) -> T | RareField[T]:
        if owner is None:
            return self
        value: T = getattr(owner._rare or self.empty, self.name)
        return value

    def __set__(self, owner: Any, value: T) -> None:
        rare = owner._rare
        if rare is None:
            if value is getattr(self.empty, self.name):
                return  # a default written over the default (a close resets them)
            rare = owner._rare = self.holder()
        setattr(rare, self.name, value)
        if rare.idle():
            owner._rare = None
