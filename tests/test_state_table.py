"""Every ``(state, input)`` pair of the lifecycle table, for both roles.

Both roles change state only through ``Connection._move``, fed by the one
table of ``mqttproto._state``. Here each role is put in each state and given
each input the way an application or a peer gives it (a method call, a
packet, the end of the stream, a timer), as h2's tests sweep its frames:
a pair the table has moves the connection where the table says; a pair it
lacks is refused, by a :class:`~mqttproto.LocalProtocolError` that changes
nothing when the application asked, or by a
:class:`~mqttproto.RemoteProtocolError` that ends the connection when the
peer sent it. A connection that is over ignores what the peer sends.

The table is the same for both roles; where a role is stricter on its own,
the pairs are listed in ``ROLE_REFUSES`` with the rule. A server's
CONNECTING is taken here with the client to answer an AUTH challenge (the
sub-state where the peer's AUTH and DISCONNECT are read); a move that needs
the application's turn first lets the client answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mqttproto import ClientConnection, ProtocolVersion, encode_packet
from mqttproto._state import TRANSITIONS, ConnectionState, Input
from mqttproto.enums import ReasonCode
from mqttproto.errors import LocalProtocolError, RemoteProtocolError
from mqttproto.packets import AuthPacket, ConnAckPacket, ConnectPacket, DisconnectPacket
from mqttproto.server import ServerConnection

V5 = ProtocolVersion.MQTT_5_0
S = ConnectionState
I = Input  # noqa: E741
METHOD = "SCRAM"
STATES = list(ConnectionState)
INPUTS = list(Input)


def wire(packet: Any) -> bytes:
    return encode_packet(packet, version=V5)


# -- the server role ------------------------------------------------------------------

CONNECT = wire(ConnectPacket("c", protocol_version=V5, authentication_method=METHOD))
GARBAGE = b"\x00\x00"


def drain(conn: Any) -> None:
    """Take every event, as an application does; a protocol error raises."""
    while conn.next_event() is not None:
        pass


def end_of_stream(conn: Any) -> None:
    conn.receive_eof(1.0)
    drain(conn)


def server_in(state: ConnectionState) -> ServerConnection:
    conn = ServerConnection(now=0.0)
    if state is S.IDLE:
        return conn
    conn.receive_data(CONNECT, 0.0)
    drain(conn)
    conn.auth(ReasonCode.CONTINUE_AUTHENTICATION)
    if state is S.CONNECTING:
        return conn
    client_auth(conn, ReasonCode.CONTINUE_AUTHENTICATION)
    conn.accept()
    if state is S.CONNECTED:
        return conn
    conn.close()
    drain(conn)
    assert conn.state is S.CLOSED
    return conn


def client_auth(conn: ServerConnection, code: ReasonCode) -> None:
    conn.receive_data(wire(AuthPacket(code, authentication_method=METHOD)), 1.0)
    drain(conn)


def server_input(conn: ServerConnection, move: Input) -> Callable[[], None] | None:
    """How ``move`` reaches a server (None: it is no server input)."""

    def feed(data: bytes) -> Callable[[], None]:
        def act() -> None:
            conn.receive_data(data, 1.0)
            drain(conn)

        return act

    def answering(answer: Callable[[], None]) -> Callable[[], None]:
        """An answer of the application's, after the client's AUTH if it was
        the client's turn (the table does not say whose turn it is)."""

        def act() -> None:
            if conn.state is S.CONNECTING and conn._auth_turn is False:
                client_auth(conn, ReasonCode.CONTINUE_AUTHENTICATION)
            elif conn.state is S.CONNECTED and answer == send_auth_now:
                # A server answers a re-authentication the client started.
                client_auth(conn, ReasonCode.RE_AUTHENTICATE)
            answer()

        return act

    def send_auth_now() -> None:
        conn.auth(ReasonCode.CONTINUE_AUTHENTICATION)

    def recv_auth() -> None:
        code = (
            ReasonCode.RE_AUTHENTICATE
            if conn.state is S.CONNECTED
            else (ReasonCode.CONTINUE_AUTHENTICATION)
        )
        client_auth(conn, code)

    actions: dict[Input, Callable[[], None] | None] = {
        I.SEND_CONNECT: None,
        I.RECV_CONNACK: None,
        I.RECV_CONNACK_REFUSED: None,
        I.RECV_CONNECT: feed(CONNECT),
        I.SEND_CONNACK: answering(conn.accept),
        I.SEND_CONNACK_REFUSED: answering(lambda: conn.refuse(ReasonCode.NOT_AUTHORIZED)),
        I.SEND_AUTH: answering(send_auth_now),
        I.RECV_AUTH: recv_auth,
        I.SEND_DISCONNECT: conn.disconnect,
        I.RECV_DISCONNECT: feed(wire(DisconnectPacket())),
        I.RECV_EOF: lambda: end_of_stream(conn),
        I.PROTOCOL_ERROR: feed(GARBAGE),
        I.TIMEOUT: lambda: conn.handle_timer(1e9),
    }
    return actions[move]


# -- the client role ------------------------------------------------------------------

CONNACK = wire(ConnAckPacket(False, authentication_method=METHOD))
REFUSED = wire(ConnAckPacket(False, ReasonCode.NOT_AUTHORIZED))


def client_in(state: ConnectionState) -> ClientConnection:
    conn = ClientConnection(V5)
    if state is S.IDLE:
        return conn
    conn.connect(client_id="c", authentication_method=METHOD)
    conn.data_to_send(0.0)
    if state is S.CONNECTING:
        return conn
    conn.receive_data(CONNACK, 0.0)
    drain(conn)
    if state is S.CONNECTED:
        return conn
    conn.disconnect()
    drain(conn)
    assert conn.state is S.CLOSED
    return conn


def client_input(conn: ClientConnection, move: Input) -> Callable[[], None] | None:
    """How ``move`` reaches a client (None: it is no client input)."""
    if conn.state is S.IDLE and (
        move.name.startswith("RECV_") or move in (I.PROTOCOL_ERROR, I.TIMEOUT)
    ):
        return None  # no network connection yet: no peer, no timer

    def feed(data: bytes) -> Callable[[], None]:
        def act() -> None:
            conn.receive_data(data, 1.0)
            drain(conn)

        return act

    def recv_auth() -> None:
        code = ReasonCode.CONTINUE_AUTHENTICATION
        if conn.state is S.CONNECTED:
            conn.auth()  # a re-authentication, answered by the server
            code = ReasonCode.SUCCESS
        conn.receive_data(wire(AuthPacket(code, authentication_method=METHOD)), 1.0)
        drain(conn)

    def send_auth() -> None:
        if conn.state is S.CONNECTING:
            # The client answers a challenge of the server.
            conn.receive_data(
                wire(AuthPacket(ReasonCode.CONTINUE_AUTHENTICATION, authentication_method=METHOD)),
                1.0,
            )
            drain(conn)
        conn.auth(b"answer")

    actions: dict[Input, Callable[[], None] | None] = {
        I.RECV_CONNECT: None,
        I.SEND_CONNACK: None,
        I.SEND_CONNACK_REFUSED: None,
        I.SEND_CONNECT: lambda: conn.connect(client_id="c", authentication_method=METHOD),
        I.RECV_CONNACK: feed(CONNACK),
        I.RECV_CONNACK_REFUSED: feed(REFUSED),
        I.SEND_AUTH: send_auth,
        I.RECV_AUTH: recv_auth,
        I.SEND_DISCONNECT: conn.disconnect,
        I.RECV_DISCONNECT: feed(wire(DisconnectPacket(ReasonCode.SERVER_SHUTTING_DOWN))),
        I.RECV_EOF: lambda: end_of_stream(conn),
        I.PROTOCOL_ERROR: feed(GARBAGE),
        I.TIMEOUT: lambda: conn.handle_timer(1e9),
    }
    return actions[move]


#: Pairs the table has and a role refuses on its own, and why.
ROLE_REFUSES: dict[tuple[str, ConnectionState, Input], str] = {
    # A server answers CONNECT with CONNACK before anything else, DISCONNECT
    # included [MQTT-3.2.0-1]; a client may give up with DISCONNECT.
    ("server", S.CONNECTING, I.SEND_DISCONNECT): "[MQTT-3.2.0-1]",
    ("client", S.CONNECTING, I.RECV_DISCONNECT): "[MQTT-3.2.0-1]",
}

ROLES: dict[str, tuple[Callable[[ConnectionState], Any], Callable[[Any, Input], Any]]] = {
    "server": (server_in, server_input),
    "client": (client_in, client_input),
}


def check(role: str, state: ConnectionState, move: Input) -> None:
    make, input_of = ROLES[role]
    conn = make(state)
    assert conn.state is state
    act = input_of(conn, move)
    if act is None:
        return  # not an input this role can be given
    expected = TRANSITIONS.get((state, move))
    if (role, state, move) in ROLE_REFUSES:
        expected = None
    by_peer = move.name.startswith("RECV_") or move is I.PROTOCOL_ERROR
    if expected is not None:
        if move is I.PROTOCOL_ERROR:
            with pytest.raises(RemoteProtocolError):
                act()
        elif move is I.TIMEOUT and state is S.CONNECTED and role == "client":
            act()  # a client's keep-alive first sends PINGREQ
            conn.handle_timer(2e9)
        else:
            act()
        assert conn.state is expected, (role, state, move)
    elif state is S.CLOSED and (by_peer or move in (I.RECV_EOF, I.TIMEOUT)):
        # A connection that is over ignores the peer and the clock.
        act()
        assert conn.state is S.CLOSED
    elif by_peer:
        # The peer broke the protocol: the connection ends.
        with pytest.raises(RemoteProtocolError):
            act()
        assert conn.state is S.CLOSED
    else:
        # The application asked for an illegal move: refused, nothing changes.
        with pytest.raises(LocalProtocolError):
            act()
        assert conn.state is state, (role, state, move)


@pytest.mark.parametrize("move", INPUTS, ids=lambda i: i.name)
@pytest.mark.parametrize("state", STATES, ids=lambda s: s.name)
@pytest.mark.parametrize("role", ["server", "client"])
def test_every_pair(role: str, state: ConnectionState, move: Input) -> None:
    check(role, state, move)


def _reachable() -> set[tuple[ConnectionState, ConnectionState]]:
    """Every (from, to) the table allows in one move or several."""
    pairs = {(state, state) for state in STATES}
    pairs |= {(state, after) for (state, _), after in TRANSITIONS.items()}
    while True:
        more = {(a, d) for a, b in pairs for c, d in pairs if b is c} - pairs
        if not more:
            return pairs
        pairs |= more


REACHABLE = _reachable()


def plain_actions(role: str, conn: Any) -> dict[Input, Callable[[], None]]:
    """Each input as one plain call, no preparation, then the events taken."""

    def then_drain(call: Callable[[], object]) -> Callable[[], None]:
        def act() -> None:
            try:
                call()
            finally:
                if conn.state is not S.IDLE or role == "server":
                    drain_quietly(conn)

        return act

    def feed(data: bytes) -> Callable[[], None]:
        return then_drain(lambda: conn.receive_data(data, 1.0))

    auth = wire(AuthPacket(ReasonCode.CONTINUE_AUTHENTICATION, authentication_method=METHOD))
    common: dict[Input, Callable[[], None]] = {
        I.RECV_AUTH: feed(auth),
        I.SEND_DISCONNECT: then_drain(conn.disconnect),
        I.RECV_EOF: then_drain(lambda: conn.receive_eof(1.0)),
        I.PROTOCOL_ERROR: feed(GARBAGE),
        I.TIMEOUT: then_drain(lambda: conn.handle_timer(1e9)),
    }
    if role == "server":
        return common | {
            I.RECV_CONNECT: feed(CONNECT),
            I.SEND_CONNACK: then_drain(conn.accept),
            I.SEND_CONNACK_REFUSED: then_drain(lambda: conn.refuse(ReasonCode.NOT_AUTHORIZED)),
            I.SEND_AUTH: then_drain(lambda: conn.auth(ReasonCode.CONTINUE_AUTHENTICATION)),
            I.RECV_DISCONNECT: feed(wire(DisconnectPacket())),
        }
    return common | {
        I.SEND_CONNECT: then_drain(
            lambda: conn.connect(client_id="c", authentication_method=METHOD)
        ),
        I.RECV_CONNACK: feed(CONNACK),
        I.RECV_CONNACK_REFUSED: feed(REFUSED),
        I.SEND_AUTH: then_drain(lambda: conn.auth(b"answer")),
        I.RECV_DISCONNECT: feed(wire(DisconnectPacket(ReasonCode.SERVER_SHUTTING_DOWN))),
    }


def drain_quietly(conn: Any) -> None:
    while True:
        try:
            if conn.next_event() is None:
                return
        except RemoteProtocolError:
            continue


@given(
    role=st.sampled_from(["server", "client"]),
    moves=st.lists(st.sampled_from(INPUTS), min_size=1, max_size=8),
)
def test_sequences_of_inputs_follow_the_table(role: str, moves: list[Input]) -> None:
    """Any sequence of inputs, each a plain call followed by taking the
    events: a refused call changes nothing, and every change of state is one
    the table allows, in one move or (when what the client sent waited for
    the application's answer) in several."""
    conn: Any = ServerConnection(now=0.0) if role == "server" else ClientConnection(V5)
    actions = plain_actions(role, conn)
    for move in moves:
        act = actions.get(move)
        if act is None:
            continue
        before = conn.state
        try:
            act()
        except LocalProtocolError:
            assert conn.state is before, (role, before, move)
            continue
        except RemoteProtocolError:
            assert conn.state is S.CLOSED
            continue
        assert (before, conn.state) in REACHABLE, (role, before, move, conn.state)


# -- a second CONNECT that is itself unreadable -----------------------------------------

# A CONNECT naming protocol level 0: read alone, it is refused with an unknown
# level; after a first CONNECT it is a Protocol Error [MQTT-3.1.0-2].
UNKNOWN_LEVEL = b"\x10\x0d\x00\x04MQTT\x00\x02\x00\x0a\x00\x01c"


@pytest.mark.parametrize(
    ("version", "moment", "expected"),
    [
        # During an authentication exchange, 5.0: a refusing CONNACK, Protocol Error.
        (ProtocolVersion.MQTT_5_0, "challenged", b"\x20\x03\x00\x82\x00"),
        # After CONNACK, 5.0: DISCONNECT Protocol Error.
        (ProtocolVersion.MQTT_5_0, "accepted", b"\xe0"),
        # Sent before the application answered: read once it has (after CONNACK).
        (ProtocolVersion.MQTT_5_0, "waiting", b"\xe0"),
        # 3.1.1 closes without a word.
        (ProtocolVersion.MQTT_3_1_1, "accepted", b""),
        (ProtocolVersion.MQTT_3_1_1, "waiting", b""),
    ],
)
def test_second_connect_with_an_unknown_level_is_a_protocol_error(
    version: ProtocolVersion, moment: str, expected: bytes
) -> None:
    method = METHOD if moment == "challenged" else None
    first = ConnectPacket("c", protocol_version=version, authentication_method=method)
    conn = ServerConnection(now=0.0)
    conn.receive_data(encode_packet(first, version=version), 0.0)
    drain(conn)
    if moment == "challenged":
        conn.auth(authentication_data=b"challenge")
    elif moment == "accepted":
        conn.accept()
    conn.data_to_send(0.0)
    with pytest.raises(RemoteProtocolError) as caught:
        conn.receive_data(UNKNOWN_LEVEL, 0.0)
        if moment == "waiting":
            drain(conn)
            conn.accept()
            conn.data_to_send(0.0)
        drain(conn)
    assert caught.value.reason_code == ReasonCode.PROTOCOL_ERROR
    sent = conn.data_to_send(0.0)
    assert sent.startswith(expected) and (expected or sent == b"")
    if expected == b"\xe0":
        assert sent[2] == ReasonCode.PROTOCOL_ERROR
    assert conn.state is ConnectionState.CLOSED
    assert conn.version == version
