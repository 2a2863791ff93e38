"""A username established by the transport (``Broker.open_connection(username=...)``).

The asyncio server passes a verified TLS client certificate's subject CN this
way (``use_identity_as_username``); here the core is driven with a fake clock.
"""

from __future__ import annotations

from helpers import V5, V311, BrokerHarness

from mqttproto.auth import AclAuthorizer, AclFile, AuthResult, ConnectInfo, PasswordAuthenticator
from mqttproto.enums import QoS, ReasonCode
from mqttproto.events import ConnectionAccepted, ConnectionRefused, SubscribeAcknowledged
from mqttproto.packets import Subscription


class Recording:
    """Accepts everyone and remembers what it was shown."""

    def __init__(self) -> None:
        self.seen: list[ConnectInfo] = []

    def authenticate(self, info: ConnectInfo) -> AuthResult:
        self.seen.append(info)
        return AuthResult.accept()

    def continue_authentication(
        self, info: ConnectInfo, authentication_data: bytes | None
    ) -> AuthResult:
        return AuthResult.reject(ReasonCode.BAD_AUTHENTICATION_METHOD)


def test_identity_replaces_the_connect_username_and_drops_the_password() -> None:
    recording = Recording()
    harness = BrokerHarness(authenticator=recording)
    client = harness.client("c1", V311)
    events = client.connect(identity="device-7", username="mallory", password=b"pw")
    assert any(isinstance(e, ConnectionAccepted) for e in events)
    (info,) = recording.seen
    assert (info.username, info.password, info.username_verified) == ("device-7", None, True)
    (session,) = harness.broker.sessions()
    assert session.username == "device-7"


def test_without_identity_the_connect_username_is_used_unverified() -> None:
    recording = Recording()
    harness = BrokerHarness(authenticator=recording)
    harness.connected("c1", V5, username="alice", password=b"pw")
    (info,) = recording.seen
    assert (info.username, info.password, info.username_verified) == ("alice", b"pw", False)


def test_password_authenticator_admits_a_verified_identity_without_a_password() -> None:
    authenticator = PasswordAuthenticator({}, allow_anonymous=False)
    harness = BrokerHarness(authenticator=authenticator)
    verified = harness.client("cert", V5)
    assert any(isinstance(e, ConnectionAccepted) for e in verified.connect(identity="device-7"))
    # The same name typed into CONNECT is not in the (empty) password file.
    typed = harness.client("typed", V5)
    refused = [e for e in typed.connect(username="device-7") if isinstance(e, ConnectionRefused)]
    assert [e.reason_code for e in refused] == [ReasonCode.BAD_USER_NAME_OR_PASSWORD]


def test_the_authorizer_sees_the_identity() -> None:
    acl = AclFile.parse("user device-7\ntopic read devices/7/#\n")
    harness = BrokerHarness(authorizer=AclAuthorizer(acl))
    client = harness.client("c1", V5)
    assert any(
        isinstance(e, ConnectionAccepted) for e in client.connect(identity="device-7", username="x")
    )
    client.conn.subscribe(
        [
            Subscription("devices/7/cmd", QoS.AT_LEAST_ONCE),
            Subscription("devices/8/cmd", QoS.AT_LEAST_ONCE),
        ]
    )
    harness.pump()
    (ack,) = [e for e in client.take() if isinstance(e, SubscribeAcknowledged)]
    assert list(ack.reason_codes) == [ReasonCode.GRANTED_QOS_1, ReasonCode.NOT_AUTHORIZED]
