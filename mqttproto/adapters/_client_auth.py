"""MQTT 5 enhanced authentication for the client adapters [MQTT-4.12].

:class:`EnhancedAuth` is the part of
:class:`~mqttproto.adapters._client_core.ClientCore` that runs the AUTH
exchanges of one client, over all its network connections:

- each CONNECT carries the Authentication Method and the initial
  Authentication Data (fresh for every connection when the data is given as
  a function), so a reconnect runs the whole exchange again;
- each challenge (AUTH 0x18, :class:`~mqttproto.events.AuthChallenged`) is
  handed to the application's *authenticator*, whose answer goes back in an
  AUTH 0x18 [MQTT-4.12.0-3]. A plain answer is sent at once; an awaitable
  one is given to the adapter (:attr:`EnhancedAuth.run_async`), which awaits
  it in a task and hands the result back through
  :meth:`EnhancedAuth.answer` or :meth:`EnhancedAuth.answer_failed`;
- :meth:`EnhancedAuth.reauthenticate` starts a re-authentication (AUTH 0x19
  [MQTT-4.12.1-1]) and returns the :class:`Completion` that its result
  (:class:`~mqttproto.events.Reauthenticated`) or its failure completes.

Every answer carries the number of the challenge it answers: an answer that
comes back after its connection ended, or after it was already given up on,
is dropped instead of being sent on a newer connection.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .._state import ConnectionState
from ..client import ClientConnection
from ..enums import ProtocolVersion, ReasonCode
from ..errors import LocalProtocolError
from ..events import AuthChallenged, Disconnected, Reauthenticated
from ._client_types import AuthenticationError, ClientError, Completion, ConnectionLostError

__all__ = [
    "AsyncAuthenticator",
    "AuthenticationData",
    "EnhancedAuth",
    "SyncAuthenticator",
]

#: Answers a challenge with the Authentication Data of the client's AUTH
#: (the threads client's kind: it runs on a worker thread).
SyncAuthenticator = Callable[[AuthChallenged], bytes | None]
#: The asyncio and trio clients' kind: a plain function or a coroutine function.
AsyncAuthenticator = Callable[[AuthChallenged], bytes | Awaitable[bytes | None] | None]
#: The Authentication Data of CONNECT and of a re-authentication's first AUTH:
#: bytes, None, or a function called for each exchange (fresh data each time).
AuthenticationData = bytes | Callable[[], bytes | None] | None

_LIVE = (ConnectionState.CONNECTING, ConnectionState.CONNECTED)


def _reason(code: ReasonCode) -> str:
    return f"{getattr(code, 'name', code)} (0x{int(code):02X})"


class EnhancedAuth:
    """The enhanced-authentication state of one client (see the module docstring).

    :param conn: the client's connection, shared with the core.
    :param method: the Authentication Method; None: no enhanced authentication.
    :param data: the initial Authentication Data (see :data:`AuthenticationData`).
    :param authenticator: answers each challenge; None: a challenge fails.
    :param fail_connect: called with the error when the exchange of a CONNECT
        fails on this side (the core fails the connection attempt with it).
    """

    def __init__(
        self,
        conn: ClientConnection,
        *,
        method: str | None,
        data: AuthenticationData,
        authenticator: AsyncAuthenticator | None,
        fail_connect: Callable[[BaseException], object],
    ) -> None:
        if method is None and (data is not None or authenticator is not None):
            raise ValueError("authentication_data and authenticator need an authentication_method")
        if method is not None and conn.version != ProtocolVersion.MQTT_5_0:
            raise ValueError("enhanced authentication (authentication_method) needs MQTT 5")
        self.conn = conn
        self.method = method
        self.authenticator = authenticator
        self._data = data
        self._fail_connect = fail_connect
        #: Set by the adapter: ``run_async(number, awaitable)`` awaits an
        #: authenticator's answer and calls :meth:`answer` or :meth:`answer_failed`.
        self.run_async: Callable[[int, Awaitable[bytes | None]], object] | None = None
        self._challenges = 0
        #: The number of the challenge waiting for our answer, if one is.
        self._waiting: int | None = None
        self._reauth: Completion[Reauthenticated] | None = None

    # -- CONNECT -----------------------------------------------------------------

    def connect_arguments(self) -> dict[str, Any]:
        """The arguments of :meth:`ClientConnection.connect` for a new connection."""
        self._waiting = None
        if self.method is None:
            return {}
        return {"authentication_method": self.method, "authentication_data": self._initial()}

    def _initial(self) -> bytes | None:
        data = self._data
        return data() if callable(data) else data

    # -- challenges --------------------------------------------------------------

    def challenged(self, event: AuthChallenged) -> None:
        """The server sent AUTH 0x18: ask the authenticator for the answer."""
        self._challenges += 1
        number = self._waiting = self._challenges
        authenticator = self.authenticator
        if authenticator is None:
            self._fail(
                number,
                AuthenticationError(
                    "the server sent an authentication challenge and this client has no"
                    " authenticator"
                ),
            )
            return
        try:
            answer = authenticator(event)
        except Exception as exc:
            self.answer_failed(number, exc)
            return
        if inspect.isawaitable(answer):
            if self.run_async is None:
                if inspect.iscoroutine(answer):
                    answer.close()
                self._fail(
                    number, AuthenticationError("this client's authenticator must not be async")
                )
                return
            self.run_async(number, answer)
            return
        self.answer(number, answer)

    def answer(self, number: int, data: object) -> None:
        """The authenticator's answer to challenge *number*: send it in AUTH 0x18."""
        if number != self._waiting or self.conn.state not in _LIVE:
            return
        if isinstance(data, (bytearray, memoryview)):
            data = bytes(data)
        if data is not None and not isinstance(data, bytes):
            self._fail(
                number,
                AuthenticationError(
                    f"the authenticator returned {type(data).__name__}, not bytes or None"
                ),
            )
            return
        self._waiting = None
        try:
            self.conn.auth(data)
        except LocalProtocolError as exc:
            # Data too long for a packet, for example.
            self._waiting = number
            self._fail(number, AuthenticationError(f"cannot answer the challenge: {exc}"))

    def answer_failed(self, number: int, error: BaseException) -> None:
        """The authenticator raised *error* instead of answering challenge *number*."""
        failure = AuthenticationError(f"the authenticator failed: {error!r}")
        failure.__cause__ = error
        self._fail(number, failure)

    def _fail(self, number: int, error: AuthenticationError) -> None:
        if number != self._waiting:
            return
        self._waiting = None
        reauth, self._reauth = self._reauth, None
        if reauth is not None:
            reauth.set_error(error)
        else:
            self._fail_connect(error)
        conn = self.conn
        if conn.state in _LIVE:
            # "The Client can close the Network Connection at any point in this
            # process. It MAY send a DISCONNECT packet before doing so" (MQTT 5.0
            # section 4.12): there is no AUTH that says "I give up".
            conn.disconnect(
                ReasonCode.UNSPECIFIED_ERROR,
                reason_string="the client could not answer the authentication challenge",
            )

    # -- re-authentication -------------------------------------------------------

    def reauthenticate(
        self,
        authentication_data: bytes | None,
        *,
        reason_string: str | None,
        user_properties: Iterable[tuple[str, str]],
    ) -> Completion[Reauthenticated]:
        """Send AUTH 0x19 [MQTT-4.12.1-1]; the completion gets the result.

        ``authentication_data`` None sends the client's initial data, as in
        CONNECT.

        :raises ClientError: no authentication method, not connected, or a
            re-authentication is already under way.
        """
        if self.method is None:
            raise ClientError("reauthenticate() needs the client's authentication_method")
        if self.conn.state is not ConnectionState.CONNECTED:
            raise ClientError("reauthenticate() needs a connection; the client is not connected")
        if self._reauth is not None:
            raise ClientError("a re-authentication is already under way")
        data = self._initial() if authentication_data is None else authentication_data
        try:
            self.conn.auth(data, reason_string=reason_string, user_properties=user_properties)
        except LocalProtocolError as exc:
            raise ClientError(f"cannot re-authenticate: {exc}") from exc
        completion: Completion[Reauthenticated] = Completion()
        self._reauth = completion
        return completion

    def reauthenticated(self, event: Reauthenticated) -> None:
        """AUTH 0x00 while connected: the re-authentication succeeded."""
        reauth, self._reauth = self._reauth, None
        if reauth is not None:
            reauth.set_result(event)

    # -- the end of a connection -------------------------------------------------

    def connection_ended(self, event: Disconnected) -> None:
        """A re-authentication under way fails with the connection."""
        self._waiting = None
        reauth, self._reauth = self._reauth, None
        if reauth is None:
            return
        if event.by_server:
            # [MQTT-4.12.1-2]: a failed re-authentication ends in DISCONNECT.
            error: ClientError = AuthenticationError(
                f"re-authentication failed: the server disconnected with {_reason(event.reason_code)}"
                + (f": {event.reason_string}" if event.reason_string else ""),
                event.reason_code,
            )
        else:
            error = ConnectionLostError(
                f"the connection ended during re-authentication: {_reason(event.reason_code)}",
                event.reason_code,
            )
        reauth.set_error(error)

    def close(self, error: BaseException) -> None:
        """The client is finished: a re-authentication under way gets *error*."""
        self._waiting = None
        reauth, self._reauth = self._reauth, None
        if reauth is not None:
            reauth.set_error(error)
