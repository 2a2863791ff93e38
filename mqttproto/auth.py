"""Authentication and authorization hooks for the broker.

The broker asks an :class:`Authenticator` whether a connecting client may
connect (and drives MQTT 5 enhanced authentication through it), and an
:class:`Authorizer` whether a connected client may publish to a topic,
subscribe to a topic filter, or receive a message. Both are plain objects with
no I/O: the broker calls them synchronously while it handles a packet. An
authenticator whose answer takes time (a password hash) returns a
:class:`DeferredAuthResult`, which the broker servers compute on a worker
thread while the event loop serves everyone else.

Provided implementations:

- :class:`AllowAll`: accepts every client and allows everything.
- :class:`PasswordAuthenticator`: usernames and passwords from a
  :class:`PasswordFile` (scrypt or PBKDF2 hashes, mosquitto's ``$7$`` included).
- :class:`IdentityAuthenticator`: only usernames the transport verified (TLS
  client certificates), for a broker without a password file.
- :class:`ChallengeResponseAuthenticator`: a small MQTT 5 enhanced-authentication
  method (HMAC-SHA256 over a server nonce), a real multi-step AUTH exchange.
- :class:`AclAuthorizer`: mosquitto-style ACL files (:class:`AclFile`).

The reason codes follow MQTT 5.0 section 3.2.2.2 (CONNACK) and 4.12 (enhanced
authentication); for MQTT 3.1/3.1.1 the broker maps them to CONNACK return
codes with :meth:`~mqttproto.enums.ReasonCode.to_connack_return_code` (0x86 →
4 "bad user name or password", 0x87 → 5 "not authorized").
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Protocol

import attrs

from ._acl import Access, AclAuthorizer, AclFile, AclRule, filter_includes
from ._passwords import PasswordFile, hash_password, verify_password
from .enums import ProtocolVersion, ReasonCode

__all__ = [
    "HMAC_SHA256_METHOD",
    "Access",
    "AclAuthorizer",
    "AclFile",
    "AclRule",
    "AllowAll",
    "AuthResult",
    "Authenticator",
    "Authorizer",
    "ChallengeResponseAuthenticator",
    "ConnectInfo",
    "DeferredAuthResult",
    "IdentityAuthenticator",
    "PasswordAuthenticator",
    "PasswordFile",
    "filter_includes",
    "hash_password",
    "hmac_sha256_response",
    "verify_password",
]


@attrs.frozen
class ConnectInfo:
    """What the broker knows about a connecting (or re-authenticating) client.

    :ivar client_id: the client identifier (the one the server assigned, if the
        CONNECT carried none).
    :ivar username: the User Name, or ``None`` if the CONNECT had none.
    :ivar password: the Password (binary data in MQTT), or ``None``.
    :ivar protocol_version: the version the client connected with.
    :ivar authentication_method: MQTT 5 Authentication Method, or ``None``
        (always ``None`` for 3.1/3.1.1, which have no enhanced authentication).
    :ivar authentication_data: MQTT 5 Authentication Data from the CONNECT.
    :ivar username_verified: the transport established :attr:`username`
        (a verified TLS client certificate's subject CN, see the ``username``
        argument of :meth:`Broker.open_connection
        <mqttproto.broker.Broker.open_connection>`); :attr:`password` is then
        ``None``. :class:`PasswordAuthenticator` accepts such a client without
        a password, as mosquitto's ``use_identity_as_username`` does.
    """

    client_id: str
    username: str | None
    # Kept out of repr so that logging a ConnectInfo does not log secrets.
    password: bytes | None = attrs.field(repr=False)
    protocol_version: ProtocolVersion
    authentication_method: str | None = None
    authentication_data: bytes | None = attrs.field(default=None, repr=False)
    username_verified: bool = attrs.field(default=False, kw_only=True)


def _check_result_code(
    instance: AuthResult, attribute: attrs.Attribute[ReasonCode], value: ReasonCode
) -> None:
    if value not in (ReasonCode.SUCCESS, ReasonCode.CONTINUE_AUTHENTICATION) and value < 0x80:
        raise ValueError(
            f"an AuthResult is SUCCESS, CONTINUE_AUTHENTICATION or a failure "
            f"(>= 0x80), not {value!r}"
        )


@attrs.frozen
class AuthResult:
    """An :class:`Authenticator`'s answer.

    :ivar reason_code: ``SUCCESS`` (connect, or finish a re-authentication);
        ``CONTINUE_AUTHENTICATION`` (send an AUTH packet with
        :attr:`authentication_data` and wait for the client's AUTH); or a failure
        code (0x80 and up), which the broker sends in CONNACK, or in DISCONNECT
        when a re-authentication fails [MQTT-4.12.1-2], and then closes.
    :ivar authentication_data: the challenge (with ``CONTINUE_AUTHENTICATION``)
        or final server data (with ``SUCCESS``) of enhanced authentication.
    :ivar reason_string: a human-readable reason for the client (MQTT 5 only).
    """

    reason_code: ReasonCode = attrs.field(
        default=ReasonCode.SUCCESS, converter=ReasonCode, validator=_check_result_code
    )
    authentication_data: bytes | None = attrs.field(default=None, repr=False)
    reason_string: str | None = None

    @classmethod
    def accept(
        cls, authentication_data: bytes | None = None, reason_string: str | None = None
    ) -> AuthResult:
        """Success: the client is authenticated."""
        return cls(ReasonCode.SUCCESS, authentication_data, reason_string)

    @classmethod
    def reject(
        cls, code: ReasonCode = ReasonCode.NOT_AUTHORIZED, reason_string: str | None = None
    ) -> AuthResult:
        """Failure with *code* (0x80 or above); ``NOT_AUTHORIZED`` (0x87) by default.

        :raises ValueError: if *code* is not a failure code.
        """
        if code < 0x80:
            raise ValueError(f"reject() needs a failure reason code (>= 0x80), not {code!r}")
        return cls(code, None, reason_string)

    @classmethod
    def challenge(cls, authentication_data: bytes, reason_string: str | None = None) -> AuthResult:
        """Continue enhanced authentication: send *authentication_data* in an AUTH."""
        return cls(ReasonCode.CONTINUE_AUTHENTICATION, authentication_data, reason_string)

    @property
    def accepted(self) -> bool:
        """Whether the client is authenticated."""
        return self.reason_code is ReasonCode.SUCCESS

    @property
    def continues(self) -> bool:
        """Whether the exchange goes on with an AUTH challenge."""
        return self.reason_code is ReasonCode.CONTINUE_AUTHENTICATION


class DeferredAuthResult:
    """An :class:`AuthResult` that takes time to compute, computed later.

    An authenticator returns one instead of an :class:`AuthResult` when its
    answer costs time, such as a password hash (tens of milliseconds) or a
    question to another service. The broker then holds the connection (the
    CONNECT, or the AUTH packet, is answered when the result is in) and hands
    *compute* out as an :class:`~mqttproto.broker.AuthenticationJob`; the
    broker servers run it on a worker thread, so the event loop keeps
    serving every other client meanwhile (see
    :meth:`Broker.authentication_jobs <mqttproto.broker.Broker.authentication_jobs>`).

    Read as an :class:`AuthResult` (:attr:`reason_code`, :attr:`accepted`, ...)
    it computes the result on first use, on the reader's thread, so code that
    calls an authenticator directly keeps working.

    :param compute: returns the :class:`AuthResult`. It runs on any thread,
        concurrently with the broker and with other computations: it must only
        use what it was given (capture the credentials and hashes when the
        DeferredAuthResult is made), never the authenticator's mutable state.
        It must not block for long: the connect timeout keeps running.
    """

    __slots__ = ("_compute", "_result")

    def __init__(self, compute: Callable[[], AuthResult]) -> None:
        self._compute = compute
        self._result: AuthResult | None = None

    def compute(self) -> AuthResult:
        """Call *compute* and return its result (computed again on each call)."""
        result = self._compute()
        if not isinstance(result, AuthResult):
            raise TypeError(f"a deferred authentication returned {result!r}, not an AuthResult")
        return result

    def result(self) -> AuthResult:
        """The result, computed on the first call and kept."""
        if self._result is None:
            self._result = self.compute()
        return self._result

    @property
    def reason_code(self) -> ReasonCode:
        return self.result().reason_code

    @property
    def authentication_data(self) -> bytes | None:
        return self.result().authentication_data

    @property
    def reason_string(self) -> str | None:
        return self.result().reason_string

    @property
    def accepted(self) -> bool:
        return self.result().accepted

    @property
    def continues(self) -> bool:
        return self.result().continues

    def __repr__(self) -> str:
        state = "pending" if self._result is None else repr(self._result)
        return f"DeferredAuthResult({state})"


class Authenticator(Protocol):
    """Decides whether a client may connect; drives enhanced authentication.

    Implementations must not block or perform I/O; the broker calls them while
    it handles a packet. Work that takes time goes into a
    :class:`DeferredAuthResult`, which the broker servers compute on a worker
    thread. Cheap answers (a refusal that needs no secret, a verified
    certificate) may come at once, as long as their speed reveals nothing
    (an unknown username must not be refused faster than a wrong password).
    """

    def authenticate(self, info: ConnectInfo) -> AuthResult | DeferredAuthResult:
        """Answer a CONNECT.

        An authenticator that does not support ``info.authentication_method``
        (when it is not ``None``) should reject with ``BAD_AUTHENTICATION_METHOD``
        (0x8C) [MQTT-4.12.0-1].
        """
        ...

    def continue_authentication(
        self, info: ConnectInfo, authentication_data: bytes | None
    ) -> AuthResult | DeferredAuthResult:
        """Answer an AUTH packet of an enhanced-authentication exchange.

        Called for each AUTH the client sends, during the CONNECT exchange or a
        re-authentication (AUTH with reason ``RE_AUTHENTICATE``, 0x19). No
        per-connection object is passed back in: an authenticator that needs to
        remember a challenge keys it on ``info.client_id``.
        """
        ...


class Authorizer(Protocol):
    """Decides what a connected client may do. No I/O, no blocking."""

    def may_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        """Whether the client may publish to the topic name *topic*."""
        ...

    def may_subscribe(self, client_id: str, username: str | None, topic_filter: str) -> bool:
        """Whether the client may subscribe to *topic_filter* (may be ``$share/...``)."""
        ...

    def may_receive(self, client_id: str, username: str | None, topic: str) -> bool:
        """Whether a message published to *topic* may be delivered to the client."""
        ...


_NO_METHOD = "no enhanced authentication method is supported"


class AllowAll:
    """Authenticator and authorizer that accept every client and allow everything.

    It supports no enhanced authentication method, so a CONNECT that names one is
    refused with ``BAD_AUTHENTICATION_METHOD`` (0x8C) [MQTT-4.12.0-1].
    """

    def authenticate(self, info: ConnectInfo) -> AuthResult:
        if info.authentication_method is not None:
            return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD, _NO_METHOD)
        return AuthResult.accept()

    def continue_authentication(
        self, info: ConnectInfo, authentication_data: bytes | None
    ) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD, _NO_METHOD)

    def may_publish(self, client_id: str, username: str | None, topic: str) -> bool:
        return True

    def may_subscribe(self, client_id: str, username: str | None, topic_filter: str) -> bool:
        return True

    def may_receive(self, client_id: str, username: str | None, topic: str) -> bool:
        return True


class PasswordAuthenticator:
    """Username and password authentication against a :class:`PasswordFile`.

    :param passwords: a :class:`PasswordFile`, or a mapping of username to
        *encoded hash* (as :func:`hash_password` returns; never plain text).
    :param allow_anonymous: whether a client without a username may connect.

    Results (MQTT 5.0 section 3.2.2.2):

    - no username: ``SUCCESS`` if *allow_anonymous*, else ``NOT_AUTHORIZED``
      (0x87); a password without a username (possible in MQTT 5) is refused with
      ``BAD_USER_NAME_OR_PASSWORD`` (0x86), since there is nobody to check it for;
    - a username the transport verified (:attr:`ConnectInfo.username_verified`,
      a TLS client certificate): ``SUCCESS`` without a password;
    - unknown username, missing or wrong password: ``BAD_USER_NAME_OR_PASSWORD``
      (0x86), the same code and the same work for each (see
      :meth:`PasswordFile.verify`), so neither reveals which usernames exist;
    - an authentication method: ``BAD_AUTHENTICATION_METHOD`` (0x8C)
      [MQTT-4.12.0-1].

    The answers that need a password hash (every CONNECT with a username
    the transport did not verify, known or not) come as a
    :class:`DeferredAuthResult`, so a broker server computes them off its
    event loop; the others come at once.
    """

    def __init__(
        self, passwords: PasswordFile | Mapping[str, str], *, allow_anonymous: bool
    ) -> None:
        self.passwords = (
            passwords if isinstance(passwords, PasswordFile) else PasswordFile(passwords)
        )
        self.allow_anonymous = allow_anonymous

    def authenticate(self, info: ConnectInfo) -> AuthResult | DeferredAuthResult:
        if info.authentication_method is not None:
            return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD, _NO_METHOD)
        if info.username is None:
            if info.password is not None:
                return AuthResult.reject(
                    ReasonCode.BAD_USER_NAME_OR_PASSWORD, "a password needs a username"
                )
            if self.allow_anonymous:
                return AuthResult.accept()
            return AuthResult.reject(ReasonCode.NOT_AUTHORIZED, "a username is required")
        if info.username_verified:
            # The transport proved the identity (a client certificate).
            return AuthResult.accept()
        # A missing password is checked as an empty one so it costs the same
        # time. The checker holds the hashes to compute, so it can run on a
        # worker thread while the file changes.
        checker = self.passwords.checker(info.username)
        return DeferredAuthResult(
            functools.partial(_password_result, checker, info.password or b"", info.password)
        )

    def continue_authentication(
        self, info: ConnectInfo, authentication_data: bytes | None
    ) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD, _NO_METHOD)


def _password_result(
    checker: Callable[[bytes], bool], password: bytes, given: bytes | None
) -> AuthResult:
    if checker(password) and given is not None:
        return AuthResult.accept()
    return AuthResult.reject(ReasonCode.BAD_USER_NAME_OR_PASSWORD)


class IdentityAuthenticator:
    """Admits the usernames the transport verified, and no others.

    For a broker whose usernames come from TLS client certificates (a
    :class:`~mqttproto.adapters.asyncio.Listener` with ``use_identity_as_username``)
    and that has no password file. Its other listeners (plain TCP,
    WebSocket, a Unix socket) would otherwise take a username typed into
    CONNECT at its word, and give the client that user's rights under the
    ACL. Results (MQTT 5.0 section 3.2.2.2):

    - a username the transport verified (:attr:`ConnectInfo.username_verified`):
      ``SUCCESS``;
    - any other username: ``NOT_AUTHORIZED`` (0x87; MQTT 3.x return code 5),
      whatever the password: no username can be proved without a certificate;
    - no username: ``SUCCESS`` if *allow_anonymous*, else ``NOT_AUTHORIZED``;
      a password without a username is refused with
      ``BAD_USER_NAME_OR_PASSWORD`` (0x86);
    - an authentication method: ``BAD_AUTHENTICATION_METHOD`` (0x8C)
      [MQTT-4.12.0-1].

    Every answer comes at once: no secret is checked, and every unverified
    username is refused alike, so the time reveals nothing.
    """

    def __init__(self, *, allow_anonymous: bool) -> None:
        self.allow_anonymous = allow_anonymous

    def authenticate(self, info: ConnectInfo) -> AuthResult:
        if info.authentication_method is not None:
            return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD, _NO_METHOD)
        if info.username is None:
            if info.password is not None:
                return AuthResult.reject(
                    ReasonCode.BAD_USER_NAME_OR_PASSWORD, "a password needs a username"
                )
            if self.allow_anonymous:
                return AuthResult.accept()
            return AuthResult.reject(ReasonCode.NOT_AUTHORIZED, "a username is required")
        if info.username_verified:
            return AuthResult.accept()
        return AuthResult.reject(
            ReasonCode.NOT_AUTHORIZED, "a username needs a verified client certificate"
        )

    def continue_authentication(
        self, info: ConnectInfo, authentication_data: bytes | None
    ) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD, _NO_METHOD)


#: The Authentication Method name of :class:`ChallengeResponseAuthenticator`.
HMAC_SHA256_METHOD = "MQTTPROTO-HMAC-SHA256"


def hmac_sha256_response(secret: bytes, challenge: bytes) -> bytes:
    """The client's answer to a :class:`ChallengeResponseAuthenticator` challenge."""
    return hmac.new(secret, challenge, hashlib.sha256).digest()


class ChallengeResponseAuthenticator:
    """An MQTT 5 enhanced-authentication method: HMAC-SHA256 challenge-response.

    The exchange (MQTT 5.0 section 4.12, method :data:`HMAC_SHA256_METHOD`)::

        client CONNECT   method, username           (data ignored)
        server AUTH 0x18 data = nonce               (CONTINUE_AUTHENTICATION)
        client AUTH 0x18 data = HMAC-SHA256(secret, nonce)
        server CONNACK   SUCCESS, or NOT_AUTHORIZED (0x87)

    Re-authentication is the same from the client's AUTH with reason 0x19 on:
    with no challenge outstanding for the client id, an AUTH starts a new one.

    The shared secret never crosses the network; the nonce comes from *nonce*,
    a callable the caller provides (for example ``lambda: os.urandom(16)``), so
    the authenticator itself has no randomness and tests are deterministic.

    :param secrets: username → shared secret.
    :param nonce: returns a fresh, unpredictable, non-empty challenge per call.
    :param method: the Authentication Method name to answer to.
    :param max_pending: the most outstanding challenges kept; the oldest is
        dropped beyond that, so clients that never answer cannot grow memory.

    An unknown username is challenged like a known one and refused only after
    it answers, so the exchange does not reveal which usernames exist.
    """

    def __init__(
        self,
        secrets: Mapping[str, bytes],
        nonce: Callable[[], bytes],
        *,
        method: str = HMAC_SHA256_METHOD,
        max_pending: int = 10_000,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.secrets = dict(secrets)
        self.method = method
        self.max_pending = max_pending
        self._nonce = nonce
        # client id -> the expected answer (None: unknown user, never matches).
        self._pending: dict[str, bytes | None] = {}

    def authenticate(self, info: ConnectInfo) -> AuthResult:
        if info.authentication_method != self.method:
            # Includes a CONNECT without a method: this authenticator only speaks
            # its enhanced method [MQTT-4.12.0-1].
            return AuthResult.reject(
                ReasonCode.BAD_AUTHENTICATION_METHOD, f"use authentication method {self.method}"
            )
        return self._challenge(info)

    def continue_authentication(
        self, info: ConnectInfo, authentication_data: bytes | None
    ) -> AuthResult:
        if info.authentication_method != self.method:
            return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)
        if info.client_id not in self._pending:
            return self._challenge(info)
        expected = self._pending.pop(info.client_id)
        if (
            expected is not None
            and authentication_data is not None
            and hmac.compare_digest(authentication_data, expected)
        ):
            return AuthResult.accept()
        return AuthResult.reject(ReasonCode.NOT_AUTHORIZED)

    def _challenge(self, info: ConnectInfo) -> AuthResult:
        if info.username is None:
            return AuthResult.reject(ReasonCode.NOT_AUTHORIZED, "a username is required")
        nonce = self._nonce()
        if not isinstance(nonce, bytes) or not nonce:
            raise ValueError("the nonce callable must return non-empty bytes")
        secret = self.secrets.get(info.username)
        self._pending.pop(info.client_id, None)
        while len(self._pending) >= self.max_pending:
            del self._pending[next(iter(self._pending))]
        self._pending[info.client_id] = (
            None if secret is None else hmac_sha256_response(secret, nonce)
        )
        return AuthResult.challenge(nonce)
