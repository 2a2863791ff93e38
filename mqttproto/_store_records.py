"""The records a :class:`~mqttproto.store.SessionStore` keeps, and its error.

Records are plain frozen attrs classes holding packets: the broker builds
them from its sessions (``Session.snapshot``) and a store encodes them as it
likes (:class:`~mqttproto.store.SQLiteStore` writes each message with
:func:`~mqttproto.encode_packet`, MQTT 5, so every property is kept).

Every time in a record (``expires_at``, ``will_due``) is on the *broker's*
clock, the monotonic ``now`` it is driven with. A store that outlives the
process converts them to wall-clock deadlines when it writes and back to the
new process's clock when it loads, so that time spent stopped counts.
"""

from __future__ import annotations

import attrs

from .enums import QoS, RetainHandling
from .errors import MQTTError
from .packets import PublishPacket, Will

__all__ = [
    "RetainedMessage",
    "StoreError",
    "StoredMessage",
    "StoredSession",
    "StoredSubscription",
]


class StoreError(MQTTError):
    """A store could not be opened, read or written: a corrupt or foreign
    file, a schema newer than this version knows, a directory that is
    missing or read-only, a full disk. The message names the file."""


@attrs.frozen
class StoredSubscription:
    """One subscription of a session, with its options."""

    topic_filter: str
    qos: QoS = QoS.AT_MOST_ONCE
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: RetainHandling = RetainHandling.SEND_ON_SUBSCRIBE
    subscription_identifier: int | None = None


@attrs.frozen
class StoredMessage:
    """A message on its way to a session: queued, or in flight with ``packet_id``.

    ``packet`` is the PUBLISH as it goes to this client (granted QoS, retain
    flag and subscription identifiers applied; the message expiry interval as
    it was received). ``released`` marks a QoS 2 flow past PUBREC, whose
    PUBREL is what goes again on resume.
    """

    packet: PublishPacket
    expires_at: float | None = None
    packet_id: int | None = None
    released: bool = False


@attrs.frozen
class RetainedMessage:
    """A retained message of a topic; it expires at ``expires_at`` (None: never)."""

    packet: PublishPacket
    expires_at: float | None = None

    @property
    def topic(self) -> str:
        return self.packet.topic

    @property
    def payload(self) -> bytes:
        return self.packet.payload

    @property
    def qos(self) -> QoS:
        return self.packet.qos


@attrs.frozen
class StoredSession:
    """A snapshot of one session.

    ``session_expiry_interval`` is in seconds (0xFFFFFFFF: never);
    ``expires_at`` is None while the client is connected.
    ``awaiting_release`` holds the QoS 2 packet ids received from the client
    whose PUBREL has not arrived (exactly-once de-duplication). ``username``
    is the identity that owns the session (the authenticated username, or
    the one a client certificate established; None: anonymous): a CONNECT
    with the same client identifier by another identity never resumes it.
    """

    client_id: str
    session_expiry_interval: int
    expires_at: float | None = None
    subscriptions: tuple[StoredSubscription, ...] = ()
    inflight: tuple[StoredMessage, ...] = ()
    queued: tuple[StoredMessage, ...] = ()
    awaiting_release: tuple[int, ...] = ()
    will: Will | None = None
    will_due: float | None = None
    username: str | None = None
